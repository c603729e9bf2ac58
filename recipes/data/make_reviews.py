"""Build the bundled demo data: product reviews (3 classes, imbalanced) and a shifted hotel/restaurant split.

Every sentence fragment below was written by hand for nncli; the script combines them with a fixed seed
into reviews of varied length and structure (short verdicts, single aspects, mixed pros and cons,
sarcasm, long multi-paragraph reviews) and adds the messiness of real scraped text (HTML entities,
wrapping quotes, typos, lower-case-only, repeated punctuation, non-ASCII). Run it from this folder:

    python make_reviews.py        # rewrites reviews/*.csv deterministically
"""

from __future__ import annotations

import csv
import random
from pathlib import Path

SEED = 20261123
HERE = Path(__file__).resolve().parent

PRODUCTS = {
    "electronics": ["wireless earbuds", "phone charger", "bluetooth speaker", "USB-C hub", "e-reader", "webcam", "smart watch",
                    "power bank", "HDMI cable", "noise-cancelling headphones", "mechanical keyboard", "27\" monitor"],
    "kitchen": ["kettle", "chef's knife", "air fryer", "toaster", "blender", "cast iron pan", "coffee grinder", "rice cooker",
                "set of mixing bowls", "French press", "non-stick frying pan", "stand mixer"],
    "books": ["novel", "cookbook", "biography", "travel guide", "children's picture book", "history book", "poetry collection",
              "sci-fi paperback", "self-help book", "graphic novel", "textbook", "crime thriller"],
    "clothing": ["rain jacket", "pair of jeans", "wool sweater", "running shoes", "t-shirt", "winter coat", "pair of socks",
                 "summer dress", "hiking boots", "hoodie", "belt", "pair of gloves"],
    "toys": ["building block set", "jigsaw puzzle", "remote control car", "plush bear", "board game", "wooden train set",
             "doll house", "kite", "science kit", "card game", "water gun", "art set"],
    "home": ["desk lamp", "duvet", "vacuum cleaner", "shower curtain", "bookshelf", "doormat", "set of towels", "wall clock",
             "office chair", "curtains", "laundry basket", "scented candle"],
}

POS_ASPECTS = {
    "electronics": ["The battery easily lasts two full days.", "Pairing took about ten seconds and it has never dropped since.",
                    "Sound is clear and the bass is surprisingly deep for the size.", "Charges my phone from flat to full in under an hour.",
                    "The screen is sharp and easy on the eyes at night.", "Build quality feels premium, nothing rattles.",
                    "Setup was plug and play, no drivers needed.", "The range is great, I can walk around the whole flat."],
    "kitchen": ["Boils a full litre in about three minutes.", "The blade came razor sharp and has stayed that way.",
                "Chips come out crispy without any oil.", "Cleaning takes two minutes, everything is dishwasher safe.",
                "Heats evenly, no more burnt edges.", "Grinds fine enough for espresso and coarse enough for cold brew.",
                "Feels solid and heavy in the hand.", "Makes perfect rice every single time."],
    "books": ["I could not put it down, finished it in two evenings.", "The recipes actually work and the photos are lovely.",
              "Beautifully written, the characters felt real.", "Well researched and still easy to read.",
              "My kids ask for it every night at bedtime.", "The maps and tips saved us a lot of time on the trip.",
              "The ending genuinely surprised me.", "Clear explanations with useful exercises at the end of each chapter."],
    "clothing": ["Fits true to size and the fabric is soft.", "Kept me completely dry in a proper downpour.",
                 "Warm without being bulky.", "Comfortable straight out of the box, no breaking in.",
                 "The colour is exactly as pictured.", "Washed it five times and it still looks new.",
                 "Great arch support, my knees thank me.", "The stitching is neat and strong."],
    "toys": ["Kept my daughter busy for hours.", "The pieces fit together firmly and don't fall apart.",
             "Sturdy enough to survive a toddler.", "The whole family played it three nights in a row.",
             "Instructions were clear and the kids built it themselves.", "Battery life is decent and it is really fast.",
             "Soft, cuddly and well stitched.", "Educational without feeling like homework."],
    "home": ["Bright, warm light and three brightness levels.", "So soft and warm, best sleep in months.",
             "Picks up pet hair from the carpet with one pass.", "Easy to assemble, took about twenty minutes.",
             "Absorbent and dries quickly.", "Looks more expensive than it was.", "Quiet and keeps perfect time.",
             "Comfortable for a full working day."],
}

NEG_ASPECTS = {
    "electronics": ["Stopped charging after three weeks.", "The left earbud keeps disconnecting.",
                    "Gets alarmingly hot while charging.", "The sound crackles at anything above half volume.",
                    "The battery drains overnight even when switched off.", "Buttons are mushy and half of them don't register.",
                    "Would not connect to my laptop at all.", "The cable frayed at the connector within a month."],
    "kitchen": ["The handle got so hot I burnt my fingers.", "Rust spots appeared after the first wash.",
                "The coating started peeling within a week.", "It leaks from the base every time.",
                "The motor smells like burning plastic.", "Blade was dull out of the box.",
                "The lid doesn't close properly so it never switches off.", "Far too loud to use in the morning."],
    "books": ["The plot drags and nothing happens for 200 pages.", "Full of typos and the binding fell apart.",
              "Half the recipes call for ingredients nobody can find.", "The translation is clumsy and hard to follow.",
              "Pages arrived creased and one chapter was printed twice.", "Outdated information, several places have closed.",
              "The characters are flat and the dialogue is cringeworthy.", "Too much filler, it could have been a blog post."],
    "clothing": ["The seams split the second time I wore it.", "Runs two sizes small.", "The colour ran in the first wash.",
                 "Gave me blisters within an hour.", "The zip broke on day three.", "Itchy and thin, nothing like the photos.",
                 "Shrunk badly even on a cold wash.", "Soaked through in light rain."],
    "toys": ["Broke within ten minutes of opening.", "Pieces were missing from the box.", "The paint chipped off straight away.",
             "Smells strongly of chemicals.", "Far too fiddly for the age on the box.", "The remote stops working beyond two metres.",
             "Sharp edges, not safe for small children.", "Batteries died after twenty minutes of play."],
    "home": ["The light flickers constantly.", "Lumpy after the first wash.", "Lost suction after a month.",
             "Screws were missing and the holes didn't line up.", "Threads pulled everywhere after one wash.",
             "Wobbles no matter how I tighten it.", "The ticking is loud enough to hear from the hall.",
             "The gas lift sinks slowly during the day."],
}

NEUTRAL_ASPECTS = ["It arrived on Tuesday as promised.", "It does what it says, nothing more.", "About what you would expect for the price.",
                   "The packaging was plain cardboard.", "It is smaller than I pictured but the size is in the listing.",
                   "I have only used it twice so far.", "It came in the grey colour option.", "Instructions are in four languages.",
                   "It replaces an older one that finally wore out.", "It is a standard model, similar to others I have owned.",
                   "Delivery took five days.", "I bought it as a gift so can't comment much on use.",
                   "It is fine for occasional use.", "Works, though I have nothing to compare it with.",
                   "Average quality, average price.", "Neither impressed nor disappointed so far.",
                   "The box says it is made from recycled materials.", "There is a one year warranty card inside."]

POS_OPEN = ["Really happy with this {p}.", "Love this {p}!", "Excellent {p}.", "Best {p} I have owned.", "Great value {p}.",
            "Bought this {p} last month and I am impressed.", "Five stars for this {p}.", "What a lovely {p}.",
            "Honestly a brilliant {p}.", "This {p} exceeded my expectations."]
NEG_OPEN = ["Very disappointed with this {p}.", "Do not buy this {p}.", "Awful {p}.", "Worst {p} I have ever bought.",
            "Returned this {p} after a week.", "This {p} is a waste of money.", "I regret buying this {p}.",
            "Poor {p}, sadly.", "Cheap in every sense.", "Save your money and skip this {p}."]
NEU_OPEN = ["Ordered this {p} for the spare room.", "It is a {p}.", "Bought the {p} on sale.", "Got this {p} last week.",
            "The {p} arrived yesterday.", "Second {p} I have bought from this brand.", "Picked up this {p} to replace an old one."]
POS_CLOSE = ["Would buy again.", "Highly recommend.", "Worth every penny.", "Already ordered another as a gift.", "No complaints at all.",
             "Ten out of ten.", "Couldn't be happier.", "Recommended to all my friends."]
NEG_CLOSE = ["Avoid.", "Sending it back.", "Still waiting for a refund.", "Customer service never replied.", "One star is generous.",
             "Never again.", "Really not worth it.", "Back in the box it goes."]
NEU_CLOSE = ["We'll see how it holds up.", "Three stars for now.", "It's okay.", "Might update this later.", "Nothing special.",
             "Fine, I suppose.", "Does the job."]
SHIPPING_COMPLAINTS = ["Delivery was two days late, but that's not the product's fault.", "The box was dented when it arrived.",
                       "The courier left it in the rain.", "Shipping took ages."]
SARCASM = ["Great, another {p} that lasts exactly one week. Just what I wanted.", "Oh wonderful, the {p} broke on day two. Amazing quality.",
           "Fantastic. Truly. If you enjoy returning things, this {p} is for you.",
           "Ten stars for teaching me patience, since the {p} never actually worked."]
SHORT_POS = ["Love it!", "Perfect.", "Great buy.", "Superb, thanks!", "Does the job brilliantly.", "Very pleased.", "Spot on.",
             "Exactly what I needed."]
SHORT_NEG = ["Broke in a week.", "Rubbish.", "Total junk.", "Don't bother.", "Useless.", "Never worked.", "Very poor.", "Dead on arrival."]
SHORT_NEU = ["Meh.", "It's fine.", "Ok I guess.", "As described.", "Average.", "No strong feelings.", "Arrived."]
LONG_FILLER = ["I spent a long time comparing options before choosing this one, reading reviews and watching videos.",
               "For context, I use it most days and I'm not especially gentle with my things.",
               "My partner was sceptical at first but has come round to it.",
               "I've owned similar products from two other brands over the years, so I have something to compare against.",
               "The listing photos are accurate, which is more than I can say for a lot of things online these days.",
               "I waited a month before writing this review so I could give a fair picture."]


def noisy(text: str, rng: random.Random) -> str:
    """Real-world messiness, applied to ~12% of texts."""
    r = rng.random()
    if r < 0.025:
        return text.replace("'", "&#039;").replace("&", "&amp;", 0)
    if r < 0.04:
        return text.replace('"', "&quot;").replace("'", "&#039;") + " &amp; that's that"
    if r < 0.055:
        return f'"{text}"'
    if r < 0.07:
        return text.lower()
    if r < 0.085:
        words = text.split()
        i = rng.randrange(len(words))
        w = words[i]
        if len(w) > 4:
            j = rng.randrange(1, len(w) - 2)
            words[i] = w[:j] + w[j + 1] + w[j] + w[j + 2:]
        return " ".join(words)
    if r < 0.095:
        return text.rstrip(".!") + "!!!"
    if r < 0.105:
        return text + rng.choice([" 👍", " 😡", " 🙂", " — café-quality, naïvely priced at 40€."])
    if r < 0.115:
        return text.replace("colour", "color").replace("favour", "favor")
    return text


def product_review(label: str, cat: str, rng: random.Random) -> str:
    p = rng.choice(PRODUCTS[cat])
    style = rng.random()
    if style < 0.09:
        return rng.choice({"positive": SHORT_POS, "negative": SHORT_NEG, "neutral": SHORT_NEU}[label])
    if label == "negative" and style < 0.15:
        return rng.choice(SARCASM).format(p=p)
    opener = {"positive": POS_OPEN, "negative": NEG_OPEN, "neutral": NEU_OPEN}[label]
    closer = {"positive": POS_CLOSE, "negative": NEG_CLOSE, "neutral": NEU_CLOSE}[label]
    parts = [rng.choice(opener).format(p=p)] if rng.random() < 0.8 else []
    if label == "positive":
        parts += rng.sample(POS_ASPECTS[cat], rng.randint(1, 3))
        if rng.random() < 0.25:  # a minor complaint that does not change the verdict
            parts.append(rng.choice(SHIPPING_COMPLAINTS + [rng.choice(NEG_ASPECTS[cat]).replace(".", ", but I can live with it.")]))
    elif label == "negative":
        parts += rng.sample(NEG_ASPECTS[cat], rng.randint(1, 3))
        if rng.random() < 0.2:
            parts.insert(1, "It looked nice at first. " + rng.choice(POS_ASPECTS[cat]).replace(".", " for the first few days."))
    else:
        parts += rng.sample(NEUTRAL_ASPECTS, rng.randint(1, 2))
        if rng.random() < 0.5:  # genuinely mixed
            parts += [rng.choice(POS_ASPECTS[cat]), "On the other hand: " + rng.choice(NEG_ASPECTS[cat]).lower()]
    if rng.random() < 0.7:
        parts.append(rng.choice(closer))
    if rng.random() < 0.06:  # long review
        extra = rng.sample(LONG_FILLER, 3) + rng.sample({"positive": POS_ASPECTS, "negative": NEG_ASPECTS}.get(label, POS_ASPECTS)[cat], 2)
        parts = parts[:1] + extra[:2] + ["\n"] + parts[1:] + extra[2:]
    text = " ".join(parts).replace(" \n ", "\n")
    return noisy(text, rng)


SOCIAL = {
    "positive": ["omg the {x} at this place 😍😍 #foodie", "best {x} in town, hands down!! #weekendvibes", "staff were SO lovely, {x} was 10/10",
                 "ngl the {x} slapped. coming back next wk", "room upgrade + free brekkie?? yes pls #travel", "view from the rooftop bar 🔥🔥 {x} on point",
                 "cosy vibes, quick service, {x} was perfect #datenight", "can't stop thinking about that {x} lol"],
    "negative": ["waited 45 mins for cold {x} smh #neveragain", "room smelled like damp and the {x} was a joke 🤢", "rude staff, overpriced {x}, nope",
                 "found a hair in my {x}. bye.", "aircon broke, no one came. worst stay ever #fail", "paid 30 quid for a sad {x} 😒",
                 "booked a quiet room, got the one next to the lift. {x} also meh. avoid", "u had ONE job. {x} burnt AGAIN"],
    "neutral": ["checked in at 3, {x} was ok i guess", "decent {x}, nothing to write home about", "it was fine. {x} average. parking easy",
                "mid tbh. {x} neither good nor bad", "stayed 2 nights for work, {x} standard", "grabbed a quick {x} before the train, it was alright"],
}
SOCIAL_X = {"hotel": ["room", "breakfast", "bed", "pool", "lobby", "check-in", "shower", "wifi", "minibar", "spa"],
            "restaurant": ["pizza", "ramen", "burger", "brunch", "tacos", "pasta", "curry", "sushi", "dessert", "coffee"]}
TAGS = ["#london", "#nyc", "#holiday", "#eats", "#review", "#staycation", "", "", "", ""]


def social_review(label: str, cat: str, rng: random.Random) -> str:
    t = rng.choice(SOCIAL[label]).format(x=rng.choice(SOCIAL_X[cat]))
    if rng.random() < 0.4:
        t += " " + rng.choice(SOCIAL[label]).format(x=rng.choice(SOCIAL_X[cat]))
    if rng.random() < 0.15:
        t = t.upper()
    return (t + " " + rng.choice(TAGS)).strip()


def build(n: int, rng: random.Random, seen: set, maker, cats: list[str], weights: dict, prefix: str, start: int) -> list[dict]:
    rows = []
    i = start
    attempts = 0
    while len(rows) < n and attempts < n * 200:
        attempts += 1
        label = rng.choices(list(weights), weights=list(weights.values()))[0]
        cat = cats[len(rows) % len(cats)]
        text = maker(label, cat, rng)
        key = " ".join(text.lower().split())
        if key in seen:
            continue
        seen.add(key)
        i += 1
        rows.append({"id": f"{prefix}{i:04d}", "text": text, "label": label, "category": cat})
    if len(rows) < n:
        raise SystemExit(f"could only build {len(rows)} distinct texts for {prefix}")
    return rows


def write(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=["id", "text", "label", "category"], quoting=csv.QUOTE_MINIMAL)
        w.writeheader()
        w.writerows(rows)


def main() -> None:
    rng = random.Random(SEED)
    seen: set = set()
    weights = {"positive": 0.55, "negative": 0.30, "neutral": 0.15}
    cats = list(PRODUCTS)
    out = HERE / "reviews"
    out.mkdir(exist_ok=True)
    counter = 0
    for name, n in (("train", 500), ("validation", 110), ("test", 130), ("heldout", 200)):
        rows = build(n, rng, seen, product_review, cats, weights, "r", counter)
        counter += n
        write(out / f"{name}.csv", rows)
    write(out / "shifted.csv", build(200, rng, seen, social_review, ["hotel", "restaurant"], weights, "s", 0))


if __name__ == "__main__":
    main()
