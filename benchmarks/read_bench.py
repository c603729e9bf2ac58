"""Reading delimited files: nncli's read_table vs plain pandas.read_csv (and, optionally, an older nncli reader).

    python benchmarks/read_bench.py [--repeats 5] [--old PATH_TO_OLD_tables.py]

Reads SST-2 train.tsv (67k rows, no quotes) and three TweetEval train.tsv files (emotion: no quotes; stance-feminist and
irony: standard quoting, irony with tabs inside quoted tweets) in the same process, interleaved, and reports medians
and ratios against pandas.read_csv(sep="\\t", keep_default_na=False, dtype=str). Row counts must agree. `--old` times
a previous nncli/io/tables.py (e.g. from `git show REV:nncli/io/tables.py`) beside them. Writes
benchmarks/results/read.json. Needs ../shared/data.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared" / "data"
FILES = ["sst2/train.tsv", "tweeteval/emotion/train.tsv", "tweeteval/stance-feminist/train.tsv", "tweeteval/irony/train.tsv"]


def _load(path: str):
    spec = importlib.util.spec_from_file_location("old_tables", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["old_tables"] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod.read_table


def _time(fn) -> tuple[float, int]:
    t0 = time.perf_counter()
    n = fn()
    return time.perf_counter() - t0, n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--old", help="a previous nncli/io/tables.py to time beside the current reader")
    ap.add_argument("--data", default=str(SHARED))
    ap.add_argument("--out", default=str(HERE / "results" / "read.json"))
    a = ap.parse_args()
    root = Path(a.data)
    if not (root / FILES[0]).exists():
        print(f"skipped: {root} is absent")
        return
    import pandas as pd

    from nncli.io.tables import read_table

    readers = {"pandas.read_csv": lambda p: len(pd.read_csv(p, sep="\t", keep_default_na=False, dtype=str)),
               "nncli read_table": lambda p: read_table(p).n_rows}
    if a.old:
        old = _load(a.old)
        readers["nncli read_table (old)"] = lambda p: old(p).n_rows
    results = {}
    for rel in FILES:
        path = str(root / rel)
        rows: dict[str, int | str] = {}
        for name, fn in readers.items():  # warm-up: imports, page cache; a reader that refuses the file is not timed
            try:
                rows[name] = fn(path)
            except Exception as e:
                rows[name] = f"refused: {e}"
        ok = {k: v for k, v in readers.items() if isinstance(rows[k], int)}
        times: dict[str, list[float]] = {k: [] for k in ok}
        for _ in range(a.repeats):
            for name, fn in ok.items():
                dt, rows[name] = _time(lambda fn=fn, path=path: fn(path))
                times[name].append(dt)
        med = {k: statistics.median(v) for k, v in times.items()}
        base = med["pandas.read_csv"]
        results[rel] = {"rows": rows, "median_s": med, "ratio_vs_pandas": {k: v / base for k, v in med.items()}}
        if "nncli read_table (old)" in med:
            results[rel]["new_over_old"] = med["nncli read_table"] / med["nncli read_table (old)"]
        print(f"{rel}: " + ", ".join(f"{k} {v * 1000:.1f} ms ({rows[k]} rows)" for k, v in med.items())
              + "".join(f"; {k} {v}" for k, v in rows.items() if k not in med))
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    meta = {"repeats": a.repeats, "old": a.old, "load_average": [round(x, 2) for x in os.getloadavg()]}
    Path(a.out).write_text(json.dumps({**meta, "files": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
