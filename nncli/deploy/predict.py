"""`nncli predict`: batch inference with the stored label names and calibration temperature.

PyTorch models (run directories, model directories, hub ids) and ONNX exports; the ONNX path needs only
onnxruntime and tokenizers at run time.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from nncli.core import console
from nncli.core.report import Timer
from nncli.core.atomic import atomic_write_text


def run(model: str, data: str, *, text_column="text", text_pair_column: str | None = None, output: str | None = None,
        id_column: str | None = None, batch_size: int = 64, threads: int | None = None, limit: int | None = None,
        encoding: str = "utf-8", trust_remote_code: bool = False, allow_pickle: bool = False) -> dict:
    from nncli.io.labelled import subset, check_column, to_split
    from nncli.io.tables import read_table
    from nncli.io.inference import load_classifier

    table = read_table(data, role="input", encoding=encoding)
    if id_column:
        check_column(table, id_column, "--id-column", "input")
    split, _ = to_split(table, "input", text_column, None, text_pair_column)
    for note in table.notes:
        console.warn(note)
    if split.dropped:
        console.warn(f"input: {sum(split.dropped.values())} rows with an empty text were skipped")
    if limit and limit < len(split):
        split = subset(split, list(range(limit)))
    clf = load_classifier(model, trust_remote_code=trust_remote_code, allow_pickle=allow_pickle, threads=threads)
    t = Timer()
    probs = clf.predict_proba(split.texts, split.pairs, batch_size)
    seconds = t()
    ids = split.extra.get(id_column or "id")
    lines = []
    for i, p in enumerate(probs):
        k = int(p.argmax())
        rec = {"id": ids[i] if ids is not None else i, "text": split.texts[i], "predicted": clf.label_names[k],
               "confidence": round(float(p[k]), 6), "probabilities": {n: round(float(v), 6) for n, v in zip(clf.label_names, p)}}
        lines.append(json.dumps(rec, ensure_ascii=False, default=str))
    counts = Counter(clf.label_names[int(p.argmax())] for p in probs)
    report = {"task": "predict", "status": "succeeded", "exit_code": 0, "model": model, "backend": clf.backend,
              "rows": len(split), "skipped": split.dropped, "temperature": clf.temperature,
              "predicted_distribution": dict(counts), "seconds": seconds,
              "throughput_per_second": round(len(split) / seconds, 2) if seconds else None}
    if output:
        atomic_write_text(Path(output), "\n".join(lines) + "\n")
        report["output"] = output
        console.log(f"wrote {len(lines)} predictions to {output} ({report['throughput_per_second']} texts/s, {clf.backend})")
    else:
        report["predictions"] = [json.loads(x) for x in lines]
    return report
