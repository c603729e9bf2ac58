"""What an evaluation gate reads besides the value: the 95% interval it decides on and the rows behind it.

Text and image evaluations share it, so `--min accuracy=0.9` means the same everywhere: the lower bound of the
interval must reach 0.9, and the report says how many rows (all evaluated rows, the robustness sample, or a slice's)
stand behind the figure.
"""

from __future__ import annotations

from nncli.evaluate.robustness import robustness_intervals
from nncli.evaluate.slices import worst_slice


def gate_inputs(res: dict, n: int) -> tuple[dict, dict]:
    """The intervals and sample sizes of res["flat"]: res["ci95"] gains the robustness and per-slice intervals."""
    flat, ci = res["flat"], dict(res.get("ci95", {}))
    sizes = {k: n for k in flat}
    if res.get("robustness"):
        ci.update(robustness_intervals(res["robustness"]))
        sizes.update({k: res["robustness"]["samples"] for k in flat if k.startswith("robustness.") or "flip_rate" in k
                      or k == "min_robust_accuracy"})
    if res.get("slices"):
        ci.update({f"slice.{s['value']}.accuracy": s["ci95_accuracy"] for s in res["slices"] if s.get("ci95_accuracy")})
        sizes.update({f"slice.{s['value']}.accuracy": s["count"] for s in res["slices"]})
        worst = worst_slice(res["slices"])
        sizes["worst_slice_accuracy"] = worst["count"]
        if worst.get("ci95_accuracy"):
            ci["worst_slice_accuracy"] = worst["ci95_accuracy"]
    if ci:
        res["ci95"] = ci
    return ci, sizes
