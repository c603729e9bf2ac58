"""How `nncli explain` shows an image classifier's explanations: per image a PNG of the input as the model saw it
(resized, cropped) next to each method's heatmap overlaid on it (green: pushes towards the prediction, red: away from
it, as for words), one HTML page with every image, and a summary in the terminal."""

from __future__ import annotations

import base64
import html
import io

import numpy as np

from nncli.evaluate.explain_views import page, print_summary

SHOWN_SIDE = 160        # small inputs are enlarged (nearest neighbour) to about this side
CAPTION = 14


def seen_image(processor, x: np.ndarray) -> np.ndarray:
    """pixel_values (3, H, W) back to the 8-bit RGB (H, W, 3) image the model saw: normalisation and rescaling undone."""
    v = x.astype(np.float64)
    if getattr(processor, "do_normalize", False):
        v = v * np.asarray(processor.image_std).reshape(3, 1, 1) + np.asarray(processor.image_mean).reshape(3, 1, 1)
    v = v / float(getattr(processor, "rescale_factor", 1 / 255)) if getattr(processor, "do_rescale", True) else v
    return np.clip(v.transpose(1, 2, 0) + 0.5, 0, 255).astype(np.uint8)


def overlay(rgb: np.ndarray, heat: np.ndarray) -> np.ndarray:
    """The heatmap over a dimmed grey copy of the image: opacity grows with |score| relative to the image's peak."""
    grey = rgb.mean(-1, keepdims=True) * 0.6
    peak = float(np.abs(heat).max()) or 1.0
    alpha = np.clip(np.abs(heat) / peak, 0, 1)[..., None]
    colour = np.where(heat[..., None] >= 0, np.array([0.0, 200.0, 0.0]), np.array([230.0, 0.0, 0.0]))
    return np.clip(grey * (1 - alpha) + colour * alpha, 0, 255).astype(np.uint8)


def panels_png(processor, x: np.ndarray, heats: dict[str, np.ndarray]) -> bytes:
    """One PNG: the input, then one overlay per method, each captioned."""
    from PIL import Image, ImageDraw

    rgb = seen_image(processor, x)
    h, w = rgb.shape[:2]
    scale = max(1, SHOWN_SIDE // max(h, w))
    tiles = [("input", rgb)] + [(m, overlay(rgb, v)) for m, v in heats.items()]
    sheet = Image.new("RGB", (len(tiles) * (w * scale + 4), h * scale + CAPTION), "white")
    draw = ImageDraw.Draw(sheet)
    for j, (name, arr) in enumerate(tiles):
        left = j * (w * scale + 4)
        sheet.paste(Image.fromarray(arr).resize((w * scale, h * scale), Image.Resampling.NEAREST), (left, CAPTION))
        draw.text((left + 2, 1), name, fill="black")
    buf = io.BytesIO()
    sheet.save(buf, format="PNG")
    return buf.getvalue()


def to_html(report: dict, pngs: dict[str, bytes]) -> str:
    parts = [f"<p>{report['images']} image(s), input {report['input_size'][0]}x{report['input_size'][1]}, baseline "
             f"{html.escape(report['settings']['baseline'])}. Green pushes towards the prediction, red away from it.</p>"]
    if report.get("faithfulness"):
        parts.append("<h2>Faithfulness: deletion curve area (lower is better)</h2><table><tr><th>method</th>"
                     "<th>deletion AUC</th><th>random</th><th>beats random</th><th>images beating random</th></tr>")
        for m, f in report["faithfulness"].items():
            parts.append(f"<tr><td>{m}</td><td>{f['deletion_auc']:.3f}</td><td>{f['deletion_auc_random']:.3f}</td>"
                         f"<td>{'yes' if f['beats_random'] else 'no'}</td><td>{f['images_beating_random']} of "
                         f"{f['images']}</td></tr>")
        parts.append("</table>")
    for r in report["explanations"]:
        label = f", labelled {html.escape(r['label'])}" if r.get("label") else ""
        parts.append(f"<h3>{html.escape(r['image'])}: {html.escape(r['prediction'])} ({r['probability']:.3f}){label}</h3>")
        data = base64.b64encode(pngs[r["png"]]).decode("ascii")
        parts.append(f"<img alt='{html.escape(r['png'])}' src='data:image/png;base64,{data}'>")
        aucs = ", ".join(f"{m} {f['deletion_auc']:.3f} (random {f['deletion_auc_random']:.3f})"
                         for m, f in r["faithfulness"].items())
        parts.append(f"<p>deletion AUC: {aucs}</p>")
        for w in r.get("warnings", []):
            parts.append(f"<p><i>{html.escape(w)}</i></p>")
    return page(report, parts)


def render_terminal(report: dict, out) -> None:
    for r in report["explanations"][:20]:
        ig = r["details"].get("ig")
        extra = f"; ig sums to {ig['total_attribution']:.3f} of {ig['prob_minus_baseline']:.3f} (delta " \
                f"{ig['convergence_delta']:.3f})" if ig else ""
        out.print(f"{r['image']}: {r['prediction']} ({r['probability']:.3f}){extra}", markup=False)
    print_summary(report, out, lambda f: f"deletion AUC {f['deletion_auc']:.3f} (random {f['deletion_auc_random']:.3f}, "
                  f"lower is better): {'beats' if f['beats_random'] else 'does NOT beat'} random on average, "
                  f"{f['images_beating_random']} of {f['images']} images")
    if not report.get("artifacts"):
        out.print("heatmaps: pass -o DIR to write one PNG per image and explanations.html", markup=False)
