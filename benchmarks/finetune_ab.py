"""Old vs new nncli on finetune_bench.py's job (same data, seed and settings), interleaved: a speed regression check.

    git worktree add --detach /tmp/nncli-old 5b842d7
    python benchmarks/finetune_ab.py --old-tree /tmp/nncli-old --repeats 2

The old tree runs with PYTHONPATH pointing at it (same virtual environment), without the overrides it does not
know (`--old-drop`, default model.pooling= and train.head_init=, which it did not have: its head was the [CLS]
pooler, started at random). Prints one JSON line per run, then the medians.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import finetune_bench as fb  # noqa: E402


def one(name: str, tree: str | None, cmd: list[str]) -> dict:
    env = dict(os.environ, **({"PYTHONPATH": tree} if tree else {}))
    t0 = time.time()
    p = subprocess.run([sys.executable, "-m", "nncli", *cmd[1:]], capture_output=True, text=True, env=env, cwd="/tmp")
    if p.returncode:
        raise SystemExit(f"{name} failed (exit {p.returncode}): {p.stderr[-1500:]}")
    r = json.loads(p.stdout)
    return {"tree": name, "train_samples_per_second": r["timings"]["train_samples_per_second"],
            "dev_accuracy": r["metrics"]["validation"]["accuracy"], "process_seconds": round(time.time() - t0, 1),
            "load": round(os.getloadavg()[0], 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--old-tree", required=True, help="a checkout of the older nncli (e.g. a git worktree)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--old-drop", nargs="*", default=["model.pooling=", "train.head_init="],
                    help="override prefixes the old tree lacks")
    a = ap.parse_args()
    if not fb.SHARED.exists():
        raise SystemExit(f"skipped: no SST-2 at {fb.SHARED}")
    tmp = Path(tempfile.mkdtemp(prefix="nncli-ab-"))
    fb.make_subset(2000, 0, tmp / "train.tsv")
    job = argparse.Namespace(lr=1e-3, epochs=1.0)
    rows = []
    for rep in range(a.repeats):
        for name in (["old", "new"] if rep % 2 == 0 else ["new", "old"]):
            cmd = fb.nncli_cmd(str(tmp / "train.tsv"), str(fb.SHARED / "dev.tsv"), str(tmp / f"run-{name}"), job, a.seed, False)
            if name == "old":
                cmd = [c for c in cmd if not any(c.startswith(d) for d in a.old_drop)]
            rows.append(one(name, a.old_tree if name == "old" else None, cmd))
            print(json.dumps(rows[-1]), flush=True)
    for name in ("old", "new"):
        sps = [r["train_samples_per_second"] for r in rows if r["tree"] == name]
        print(f"{name}: median {statistics.median(sps):.1f} samples/s over {len(sps)} runs ({min(sps):.1f}-{max(sps):.1f})")


if __name__ == "__main__":
    main()
