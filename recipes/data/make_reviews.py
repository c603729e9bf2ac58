"""Build the bundled demo data: product reviews (3 classes, imbalanced) and a shifted hotel/restaurant split.

Every fragment below was written by hand for nncli; the script combines them with a fixed seed into
reviews that behave like real ones: most say what they think plainly, but many hedge, mix pros and cons,
negate ("not exactly sturdy", "can't fault it"), are sarcastic ("Brilliant. It lasted a week."), wander
off topic ("the courier was lovely"), have typos, or are long enough to be cut at 128 tokens; a few
percent of the labels are wrong, as in any labelled set. The shifted split is the same task in another
domain and register (hotel and restaurant posts in slang), with a different class balance.

All the knobs are in KNOBS. Run it from this folder:

    python make_reviews.py        # rewrites reviews/*.csv deterministically
    python make_reviews.py DIR    # writes them to DIR instead
"""

from __future__ import annotations

import csv
import html
import random
from pathlib import Path

HERE = Path(__file__).resolve().parent

KNOBS = {
    "seed": 20261201,
    "sizes": {"train": 500, "validation": 110, "test": 130, "heldout": 200},   # the product-review splits, in this order
    "shifted_size": 200,
    "label_weights": {"positive": 0.55, "negative": 0.30, "neutral": 0.15},     # imbalanced, like real review data
    "shifted_label_weights": {"positive": 0.40, "negative": 0.40, "neutral": 0.20},
    "label_noise": 0.04,        # share of rows whose label is replaced by another one (annotation mistakes)
    # how a review says what it thinks (shares per label; the rest is plain)
    "styles": {"positive": {"plain": 0.25, "negated": 0.25, "concession": 0.25, "understated": 0.15, "short": 0.10},
               "negative": {"plain": 0.25, "negated": 0.25, "concession": 0.20, "sarcasm": 0.20, "short": 0.10},
               "neutral": {"hedged": 0.35, "mixed": 0.40, "factual": 0.15, "short": 0.10}},
    "off_topic": 0.20,          # an unrelated sentence (sometimes with a sentiment word of its own) added
    "long": 0.06,               # long reviews (many sentences, often past 128 tokens)
    "vocabulary_tail": 1.0,     # Zipf exponent of the evaluative phrases: lower = more rare phrases seen once or never
    "facts": 0.15,              # share of statements that are concrete facts rather than evaluations
    "closers": 0.35,            # share of reviews ending with a verdict ("Would buy again.", "Avoid.")
    "typos": 0.18,              # texts with 1-3 character-level typos
    "messy": 0.12,              # HTML entities, wrapping quotes, lower case, repeated punctuation, emoji
    "shifted_sarcasm": 0.25,    # sarcasm and slang in the shifted split
}

PRODUCTS = {
    "electronics": ["wireless earbuds", "phone charger", "bluetooth speaker", "USB-C hub", "e-reader", "webcam", "smart watch",
                    "power bank", "HDMI cable", "noise-cancelling headphones", "mechanical keyboard", "27\" monitor"],
    "kitchen": ["kettle", "chef's knife", "air fryer", "toaster", "blender", "cast iron pan", "coffee grinder", "rice cooker",
                "set of mixing bowls", "French press", "non-stick frying pan", "stand mixer"],
    "books": ["novel", "cookbook", "biography", "travel guide", "children's picture book", "history book", "poetry collection",
              "sci-fi paperback", "self-help book", "graphic novel", "textbook", "crime thriller"],
    "clothing": ["rain jacket", "pair of jeans", "wool sweater", "pair of running shoes", "t-shirt", "winter coat",
                 "pair of socks",
                 "summer dress", "pair of hiking boots", "hoodie", "belt", "pair of gloves"],
    "toys": ["building block set", "jigsaw puzzle", "remote control car", "plush bear", "board game", "wooden train set",
             "doll house", "kite", "science kit", "card game", "water gun", "art set"],
    "home": ["desk lamp", "duvet", "vacuum cleaner", "shower curtain", "bookshelf", "doormat", "set of towels", "wall clock",
             "office chair", "pair of curtains", "laundry basket", "scented candle"],
}
PARTS = {
    "electronics": ["the battery", "the sound", "the build", "the connection", "the screen", "the charging", "the app",
                    "the range"],
    "kitchen": ["the handle", "the blade", "the lid", "the motor", "the coating", "the base", "the heating", "the finish"],
    "books": ["the plot", "the writing", "the characters", "the ending", "the pacing", "the binding", "the translation",
              "the photos"],
    "clothing": ["the fit", "the fabric", "the stitching", "the zip", "the colour", "the sizing", "the sole", "the lining"],
    "toys": ["the pieces", "the paint", "the instructions", "the remote", "the design", "the batteries", "the box", "the wheels"],
    "home": ["the light", "the material", "the suction", "the assembly", "the finish", "the legs", "the mechanism", "the size"],
}
FACTS = {  # concrete things that happen, by category and polarity
    "positive": {
        "electronics": ["the battery easily lasts two full days", "pairing took ten seconds and it has never dropped since",
                        "it charges my phone from flat in under an hour", "setup was plug and play"],
        "kitchen": ["it boils a full litre in about three minutes", "the blade came razor sharp and stayed that way",
                    "chips come out crispy without any oil", "cleaning takes two minutes"],
        "books": ["I finished it in two evenings", "the recipes actually work", "my kids ask for it every night",
                  "the maps saved us hours on the trip"],
        "clothing": ["it kept me dry in a proper downpour", "it fits true to size", "it still looks new after five washes",
                     "there was no breaking in at all"],
        "toys": ["it kept my daughter busy for hours", "it survived a toddler", "the kids built it themselves",
                 "the whole family played three nights in a row"],
        "home": ["it picks up pet hair in one pass", "it took twenty minutes to assemble", "it keeps perfect time",
                 "I sat in it for a full working day without aches"],
    },
    "negative": {
        "electronics": ["it stopped charging after three weeks", "the left earbud keeps disconnecting",
                        "it gets alarmingly hot while charging", "it drains overnight even when switched off"],
        "kitchen": ["the handle got hot enough to burn my fingers", "rust spots appeared after the first wash",
                    "it leaks from the base every time", "the motor smells of burning plastic"],
        "books": ["nothing happens for 200 pages", "one chapter was printed twice",
                  "half the recipes need ingredients nobody sells",
                  "the binding fell apart in a week"],
        "clothing": ["the seams split the second time I wore it", "the colour ran in the first wash", "it shrank on a cold wash",
                     "it gave me blisters within an hour"],
        "toys": ["it broke ten minutes after opening", "pieces were missing from the box", "the paint chipped off straight away",
                 "the remote stops working beyond two metres"],
        "home": ["the light flickers constantly", "it lost suction after a month", "the holes didn't line up",
                 "it wobbles however much I tighten it"],
    },
}
# evaluations of a part: a long tail of ways to say good, bad and so-so
GOOD = ["is excellent", "is great", "is very good", "is brilliant", "is fantastic", "is superb", "is solid", "is impressive",
        "works a treat", "is spot on", "is lovely", "is reliable", "is sturdy", "feels premium", "is top notch", "is flawless",
        "is better than I expected", "holds up really well", "is outstanding", "is first rate", "is terrific", "is faultless",
        "is just right", "could not be better", "is a joy", "is a real step up", "is wonderful", "is stellar", "is sublime",
        "is magnificent", "is exemplary", "is splendid", "is marvellous", "is exceptional", "is superlative", "is ace",
        "is cracking", "is smashing", "is peerless", "is immaculate", "is a delight", "is pleasingly robust",
        "is beautifully judged",
        "exceeds anything I have used", "puts the rivals to shame", "is worth every penny on its own", "is built like a tank",
        "is a revelation", "is second to none", "is a masterclass", "is a cut above", "is the real deal", "is a gem",
        "is a winner",
        "is a keeper", "hits the spot", "is a triumph", "is glorious", "is nifty", "is bang on", "is dependable",
        "is well thought out", "is a dream", "is a godsend", "is lush", "is tip-top", "is a cracker", "is divine", "is mint",
        "is worth its weight in gold", "is champion"]
BAD = ["is awful", "is terrible", "is poor", "is rubbish", "is flimsy", "is useless", "is disappointing", "is a letdown",
       "stopped working", "feels cheap", "is dreadful", "is shoddy", "fell apart", "gave up within a week", "is a joke",
       "is subpar", "is pathetic", "is unreliable", "is badly made", "is frustrating", "is a nightmare", "is a mess",
       "is wobbly", "is defective", "is dire", "is second rate", "is abysmal", "is atrocious", "is lamentable", "is woeful",
       "is appalling", "is dismal", "is substandard", "is botched", "is a shambles", "is ramshackle", "is tacky", "is naff",
       "is dodgy", "is rickety", "is a false economy", "is an insult at this price", "is held together with hope",
       "gave out almost at once", "belongs in a bin", "is worse than the one it replaced", "is a disgrace",
       "is dire beyond words",
       "is unfit for purpose", "is a total write-off", "is a dud", "is a lemon", "is junk", "is crummy", "is trash",
       "is a rip-off", "is a waste of space", "is pants", "is ropey", "is grotty", "is bodged", "is half-baked", "is slapdash",
       "is a con", "is wretched", "is diabolical", "is a fiasco", "is clunky", "is janky", "is shambolic", "is a disaster",
       "is poorly thought out", "is a dog's dinner"]
SO_SO = ["is okay", "is fine", "is average", "is acceptable", "is passable", "is standard", "is what you'd expect",
         "is nothing special", "is decent enough", "does the job", "is so-so", "is alright", "is unremarkable", "is adequate",
         "is middling", "is run of the mill", "is neither here nor there", "is serviceable", "is tolerable", "is fair"]
GOOD_ADJ = ["great", "good", "brilliant", "impressive", "sturdy", "comfortable", "reliable", "well made", "worth the money",
            "excellent", "durable", "pleasant", "robust", "a bargain", "much use"]
BAD_ADJ = ["bad", "flimsy", "cheap", "noisy", "disappointing", "fiddly", "a problem", "an issue", "poorly made", "awful",
           "a letdown", "flaky", "rickety", "a chore", "overpriced"]
# the same negations for both verdicts: only the word they negate tells "not sturdy" from "not flimsy"
NEGATIONS = ["{s} is not {a}", "{s} isn't exactly {a}", "{s} is far from {a}", "I wouldn't call {s} {a}", "{s} is hardly {a}",
             "{s} was never {a}", "{s} isn't {a} at all", "{s} is not remotely {a}", "nothing about {s} is {a}",
             "{s} is not {a} in the slightest", "I expected {s} to be {a}, it isn't", "no one would call {s} {a}"]
OPEN = {"positive": ["Really happy with this {p}.", "Love this {p}!", "Best {p} I have owned.", "Great value {p}.",
                     "Bought this {p} last month and I'm impressed.", "What a lovely {p}.", "This {p} exceeded my expectations."],
        "negative": ["Very disappointed with this {p}.", "Do not buy this {p}.", "Worst {p} I have ever bought.",
                     "Returned this {p} after a week.", "This {p} is a waste of money.", "I regret buying this {p}."],
        "neutral": ["Ordered this {p} for the spare room.", "It is a {p}.", "Bought the {p} on sale.", "Got this {p} last week.",
                    "Second {p} I have bought from this brand.", "Picked up this {p} to replace an old one."]}
CLOSE = {"positive": ["Would buy again.", "Highly recommend.", "Worth every penny.", "No complaints.", "Ten out of ten.",
                      "Couldn't be happier.", "Five stars."],
         "negative": ["Avoid.", "Sending it back.", "Still waiting for a refund.", "One star is generous.", "Never again.",
                      "Really not worth it.", "Back in the box it goes."],
         "neutral": ["We'll see how it holds up.", "Three stars for now.", "Might update this later.", "Fine, I suppose.",
                     "Hard to say more yet.", "Make of that what you will."]}
UNDERSTATED = ["Does exactly what I hoped.", "I'd happily buy it again.", "It has quietly become the one I reach for.",
               "My partner has stopped complaining about it, which says a lot.", "I keep recommending it without being asked.",
               "Can't fault it.", "It just works, every day."]
SARCASM = ["Oh great, {f}. Just what I needed.", "Love how {f}. Truly a premium experience.", "Brilliant. {F}.",
           "Five stars for teaching me patience: {f}.", "Fantastic value, if you enjoy the fact that {f}.",
           "Wow, {f}. Amazing quality, really.", "What a treat: {f}. Can't wait to buy another. Not.",
           "{P} {g}... for exactly one day.", "Apparently {p} {g}. Mine must be the exception.",
           "The listing said {p} {g}. It lied.",
           "Sure, {p} {g}, if you never actually use it.", "{P} {g}, said nobody who owns one."]
HEDGED = ["It's fine, I suppose.", "Not great, not terrible.", "Does what it says, nothing more.",
          "Can't make up my mind about it.",
          "It's okay for the price.", "Neither impressed nor disappointed.", "Some days I like it, some days I don't.",
          "Not bad, not brilliant either.", "It's alright. I expected a bit more, but it's alright."]
FACTUAL = ["It arrived on Tuesday as promised.", "It came in the grey colour option.", "Instructions are in four languages.",
           "The box says it is made from recycled materials.", "There is a one year warranty card inside.",
           "I have only used it twice so far.", "It is smaller than I pictured, but the size is in the listing.",
           "I bought it as a gift so can't comment much on use."]
SHORT = {"positive": ["Love it!", "Perfect.", "Great buy.", "Superb, thanks!", "Very pleased.", "Spot on.", "Can't fault it.",
                      "Not bad at all!", "Exactly what I needed."],
         "negative": ["Broke in a week.", "Rubbish.", "Total junk.", "Don't bother.", "Useless.", "Never worked.", "Not great.",
                      "Dead on arrival.", "Not worth it."],
         "neutral": ["Meh.", "It's fine.", "Ok I guess.", "As described.", "Average.", "No strong feelings.", "Arrived.",
                     "Not bad, not great."]}
OFF_TOPIC = ["Ordered it for my sister's birthday.", "The courier was lovely, by the way.", "Paid with a gift card.",
             "Writing this on my lunch break.", "Our dog barked at the box for ten minutes.",
             "The weather here has been awful all week.",
             "The website was a pain to navigate.", "The delivery driver was brilliant.",
             "Shipping took ages, not the seller's fault.",
             "My neighbour has the same one.", "I hate writing reviews but here goes.",
             "Terrible week at work, so this cheered me up."]
FILLER = ["I spent a long time comparing options before choosing this one, reading reviews and watching videos.",
          "For context, I use it most days and I'm not especially gentle with my things.",
          "My partner was sceptical at first, and we argued about whether we needed it at all.",
          "I've owned similar products from two other brands over the years, so I have something to compare against.",
          "The listing photos are accurate, which is more than I can say for a lot of things online these days.",
          "I waited a month before writing this review so I could give a fair picture.",
          "We moved house in the middle of all this, so it has been through two sets of boxes and a van.",
          "I will try to be balanced, because I know how annoying one-line reviews are."]
KEYS = "qwertyuiop asdfghjkl zxcvbnm".split()


def pick(rng: random.Random, items: list, tail: float = 1.0):
    """A long-tailed choice: the first items are common, the last ones rare (Zipf-like, exponent `tail`)."""
    return rng.choices(items, weights=[1 / (i + 1) ** tail for i in range(len(items))])[0]


def agree(subject: str, text: str) -> str:
    """'the pieces is' -> 'the pieces are' (was, isn't, it isn't) for plural parts."""
    if not (subject.endswith("s") and not subject.endswith("ss")):
        return text
    for a, b in (("is", "are"), ("was", "were"), ("isn't", "aren't")):
        for subj in (subject, subject.capitalize()):
            text = text.replace(f"{subj} {a} ", f"{subj} {b} ")
    return text.replace(", it isn't", ", they aren't")


def part_says(cat: str, polarity: str, rng: random.Random, avoid: str | None = None) -> str:
    s = rng.choice([x for x in PARTS[cat] if x != avoid])
    if polarity == "so-so":
        return agree(s, f"{s.capitalize()} {pick(rng, SO_SO)}.")
    if rng.random() < KNOBS["facts"]:
        return FACTS[polarity][cat][rng.randrange(4)].capitalize() + "."
    return agree(s, f"{s.capitalize()} {pick(rng, GOOD if polarity == 'positive' else BAD, KNOBS['vocabulary_tail'])}.")


def negated(cat: str, polarity: str, rng: random.Random) -> str:
    """A verdict by negating its opposite: negative as 'not sturdy', positive as 'not flimsy'."""
    s = rng.choice(PARTS[cat])
    t = rng.choice(NEGATIONS).format(s=s, a=rng.choice(GOOD_ADJ if polarity == "negative" else BAD_ADJ))
    t = agree(s, t)
    return t[0].upper() + t[1:] + "."


def body(label: str, style: str, cat: str, p: str, rng: random.Random) -> list[str]:
    other = {"positive": "negative", "negative": "positive"}
    if style == "short":
        return [rng.choice(SHORT[label])]
    if style == "plain":
        return list(dict.fromkeys(part_says(cat, label, rng) for _ in range(rng.randint(1, 3))))
    if style == "negated":
        return [negated(cat, label, rng)] + ([part_says(cat, label, rng)] if rng.random() < 0.4 else [])
    if style == "concession":  # the other side first, the verdict after "but"
        minor = part_says(cat, other[label], rng).rstrip(".")
        verdict = part_says(cat, label, rng, avoid=next((x for x in PARTS[cat] if minor.lower().startswith(x)), None))
        verdict = verdict if verdict.startswith("I ") else verdict[0].lower() + verdict[1:]
        return [f"{minor}, but {verdict}"]
    if style == "understated":
        return [rng.choice(UNDERSTATED)] + ([part_says(cat, "so-so", rng)] if rng.random() < 0.3 else [])
    if style == "sarcasm":  # praise that means the opposite
        f, part = FACTS["negative"][cat][rng.randrange(4)], rng.choice(PARTS[cat])
        t = rng.choice(SARCASM).format(f=f, F=f[0].upper() + f[1:], p=part, P=part.capitalize(), g=pick(rng, GOOD))
        return [agree(part, t)]
    if style == "hedged":
        return [rng.choice(HEDGED)] + [part_says(cat, "so-so", rng) for _ in range(rng.randint(0, 2))]
    if style == "mixed":
        good = part_says(cat, "positive", rng)
        parts = [good, part_says(cat, "negative", rng, avoid=next((x for x in PARTS[cat] if good.lower().startswith(x)), None))]
        rng.shuffle(parts)
        return parts + [rng.choice(["Swings and roundabouts.", "So it evens out.", "Overall, middle of the road.",
                                    "Hard to give it more than three stars, or fewer."])]
    return rng.sample(FACTUAL, rng.randint(1, 2))  # factual


def typo(text: str, rng: random.Random) -> str:
    for _ in range(rng.randint(1, 3)):
        words = text.split(" ")
        i = rng.randrange(len(words))
        w = words[i]
        if len(w) < 4:
            continue
        j = rng.randrange(1, len(w) - 2)
        kind = rng.randrange(4)
        if kind == 0:
            w = w[:j] + w[j + 1] + w[j] + w[j + 2:]           # swapped letters
        elif kind == 1:
            w = w[:j] + w[j + 1:]                              # dropped letter
        elif kind == 2:
            w = w[:j] + w[j] + w[j:]                           # doubled letter
        else:
            row = next((r for r in KEYS if w[j].lower() in r), None)
            if row:
                k = row.index(w[j].lower())
                w = w[:j] + row[max(0, min(len(row) - 1, k + rng.choice((-1, 1))))] + w[j + 1:]   # neighbouring key
        words[i] = w
        text = " ".join(words)
    return text


def messy(text: str, rng: random.Random) -> str:
    """Scraped-text messiness: HTML entities, wrapping quotes, lower case, repeated punctuation, emoji, non-ASCII."""
    r = rng.randrange(7)
    if r == 0:
        return text.replace("'", "&#039;").replace('"', "&quot;") + (" &amp; that's that" if rng.random() < 0.3 else "")
    if r == 1:
        return f'"{text}"'
    if r == 2:
        return text.lower()
    if r == 3:
        return text.rstrip(".!") + rng.choice(["!!!", "...", "?!"])
    if r == 4:
        return text + rng.choice([" 👍", " 😡", " 🙂", " 🤷", " — café-quality, naïvely priced at 40€."])
    if r == 5:
        return text.replace("colour", "color").replace("favour", "favor").replace("litre", "liter")
    return text.replace(". ", ".  ", 1)


def product_review(label: str, cat: str, rng: random.Random) -> str:
    p = rng.choice(PRODUCTS[cat])
    style = rng.choices(list(KNOBS["styles"][label]), weights=list(KNOBS["styles"][label].values()))[0]
    parts = body(label, style, cat, p, rng)
    if style != "short":
        if rng.random() < 0.6:
            parts.insert(0, rng.choice(OPEN[label if style in ("plain", "understated", "hedged",
                                                               "factual") else "neutral"]).format(p=p))
        if rng.random() < KNOBS["closers"]:
            parts.append(rng.choice(CLOSE[label]))
    if rng.random() < KNOBS["off_topic"]:
        parts.insert(rng.randrange(len(parts) + 1), rng.choice(OFF_TOPIC))
    if style != "short" and rng.random() < KNOBS["long"]:
        filler = rng.sample(FILLER, rng.randint(3, 6))
        extra = [part_says(cat, "so-so", rng) for _ in range(rng.randint(1, 3))]
        parts = parts[:1] + filler[:2] + ["\n"] + extra + filler[2:] + parts[1:]
    text = " ".join(parts).replace(" \n ", "\n")
    if rng.random() < KNOBS["typos"]:
        text = typo(text, rng)
    if rng.random() < KNOBS["messy"]:
        text = messy(text, rng)
    return text


SOCIAL = {
    "positive": ["omg the {x} at this place 😍😍", "best {x} in town, hands down!!", "staff were SO lovely, {x} was 10/10",
                 "ngl the {x} slapped. coming back next wk", "room upgrade + free brekkie?? yes pls", "{x} was bussin no cap",
                 "cosy vibes, quick service, {x} on point", "can't stop thinking about that {x} lol",
                 "lowkey the best {x} ive had"],
    "negative": ["waited 45 mins for cold {x} smh", "room smelled like damp and the {x} was a joke 🤢",
                 "rude staff, overpriced {x}, nope",
                 "found a hair in my {x}. bye.", "aircon broke, no one came #fail", "paid 30 quid for a sad {x} 😒",
                 "the {x} gave me the ick tbh", "u had ONE job. {x} burnt AGAIN", "not it. {x} was beyond mid"],
    "neutral": ["checked in at 3, {x} was ok i guess", "decent {x}, nothing to write home about",
                "it was fine. {x} average. parking easy",
                "mid tbh. {x} neither good nor bad", "stayed 2 nights for work, {x} standard",
                "{x} was alright, wouldnt go out of my way",
                "grabbed a quick {x} before the train, it was whatever"],
}
SOCIAL_SARCASM = ["love waiting an hour for {x} 🙃 #blessed", "10/10 would get food poisoning from the {x} again",
                  "amazing how the {x} can be cold AND late", "5 stars for the {x}... if ur into cardboard",
                  "thrilled the {x} came with a side of attitude 😂"]
SOCIAL_X = {"hotel": ["room", "breakfast", "bed", "pool", "lobby", "check-in", "shower", "wifi", "minibar", "spa"],
            "restaurant": ["pizza", "ramen", "burger", "brunch", "tacos", "pasta", "curry", "sushi", "dessert", "coffee"]}
TAGS = ["#london", "#nyc", "#holiday", "#eats", "#review", "#staycation", "#foodie", "", "", ""]


def social_review(label: str, cat: str, rng: random.Random) -> str:
    x = lambda: rng.choice(SOCIAL_X[cat])
    if label == "negative" and rng.random() < KNOBS["shifted_sarcasm"]:
        t = rng.choice(SOCIAL_SARCASM).format(x=x())
    else:
        t = rng.choice(SOCIAL[label]).format(x=x())
    if rng.random() < 0.4:
        t += " " + rng.choice(SOCIAL[label] if rng.random() < 0.7 else SOCIAL["neutral"]).format(x=x())
    if rng.random() < 0.15:
        t = t.upper()
    if rng.random() < KNOBS["typos"]:
        t = typo(t, rng)
    return (t + " " + rng.choice(TAGS)).strip()


def noisy_label(label: str, rng: random.Random) -> str:
    if rng.random() < KNOBS["label_noise"]:
        return rng.choice([x for x in ("positive", "negative", "neutral") if x != label])
    return label


def build(n: int, rng: random.Random, seen: set, maker, cats: list[str], weights: dict, prefix: str, start: int) -> list[dict]:
    rows, i, attempts = [], start, 0
    while len(rows) < n and attempts < n * 200:
        attempts += 1
        label = rng.choices(list(weights), weights=list(weights.values()))[0]
        cat = cats[len(rows) % len(cats)]
        text = maker(label, cat, rng)
        key = " ".join(html.unescape(text).strip().strip('"').lower().split())   # as nncli's duplicate/leakage check sees it
        if key in seen:
            continue
        seen.add(key)
        i += 1
        rows.append({"id": f"{prefix}{i:04d}", "text": text, "label": noisy_label(label, rng), "category": cat})
    if len(rows) < n:
        raise SystemExit(f"could only build {len(rows)} distinct texts for {prefix}")
    return rows


def write(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=["id", "text", "label", "category"], quoting=csv.QUOTE_MINIMAL)
        w.writeheader()
        w.writerows(rows)


def main(out: Path = HERE / "reviews") -> None:
    rng = random.Random(KNOBS["seed"])
    seen: set = set()
    out.mkdir(parents=True, exist_ok=True)
    counter = 0
    for name, n in KNOBS["sizes"].items():
        rows = build(n, rng, seen, product_review, list(PRODUCTS), KNOBS["label_weights"], "r", counter)
        counter += n
        write(out / f"{name}.csv", rows)
    write(out / "shifted.csv", build(KNOBS["shifted_size"], rng, seen, social_review, ["hotel", "restaurant"],
                                     KNOBS["shifted_label_weights"], "s", 0))


if __name__ == "__main__":
    import sys

    main(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "reviews")
