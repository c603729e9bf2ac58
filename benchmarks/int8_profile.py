"""Where the time goes in ONNX Runtime int8 inference, and whether ORT's transformer optimizer helps.

    python benchmarks/int8_profile.py [--run /tmp/nncli-deploy-bench/run]   # after deploy_bench.py

Takes the run's fp32 ONNX export (nncli export), builds (a) plain dynamic int8 (per-tensor, QInt8 weights),
(b) ORT transformer-optimizer fusions (attention, bias-GELU, skip-layernorm) then int8, (c) the same
fusions without attention fusion, then int8; times each at batch 32 x 128 tokens (median of 10 runs,
2 threads, interleaved order across 3 rounds) and profiles plain int8's operator time shares.
Writes benchmarks/results/int8_profile.json.
"""

from __future__ import annotations

import argparse
import collections
import json
import logging
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
INT8_GEMM_OPS = ("DynamicQuantizeMatMul", "MatMulIntegerToFloat", "MatMulInteger", "DynamicQuantizeLinear")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", default="/tmp/nncli-deploy-bench/run")
    ap.add_argument("--out", default=str(HERE / "results" / "int8_profile.json"))
    a = ap.parse_args()
    logging.disable(logging.WARNING)
    import onnxruntime as ort
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    src = Path(a.run) / "onnx" / "model.onnx"
    if not src.exists():
        raise SystemExit(f"{src} missing: run benchmarks/deploy_bench.py first (it exports the model there)")
    cfg = json.loads((src.parent / "config.json").read_text())
    work = Path(tempfile.mkdtemp(prefix="nncli-int8-profile-"))
    models = {"fp32": src}
    quantize_dynamic(str(src), str(work / "int8.onnx"), weight_type=QuantType.QInt8, extra_options={"DefaultTensorType": 1})
    models["int8 (plain dynamic)"] = work / "int8.onnx"
    for name, attention in (("fused + int8", True), ("fused without attention + int8", False)):
        fo = FusionOptions("bert")
        fo.enable_attention = attention
        opt = optimize_model(str(src), model_type="bert", num_heads=cfg["num_attention_heads"], hidden_size=cfg["hidden_size"],
                             opt_level=1, optimization_options=fo)
        f = work / (name.replace(" ", "_") + ".onnx")
        opt.save_model_to_file(str(work / "opt.onnx"))
        quantize_dynamic(str(work / "opt.onnx"), str(f), weight_type=QuantType.QInt8, extra_options={"DefaultTensorType": 1})
        models[name] = f
    b, s = 32, 128
    rng = np.random.default_rng(0)
    feed = {"input_ids": rng.integers(1000, 20000, (b, s)).astype(np.int64), "attention_mask": np.ones((b, s), np.int64),
            "token_type_ids": np.zeros((b, s), np.int64)}

    def session(p, profile=False):
        so = ort.SessionOptions()
        so.intra_op_num_threads = 2
        if profile:
            so.enable_profiling = True
            so.profile_file_prefix = str(work / "prof")
        sess = ort.InferenceSession(str(p), so, providers=["CPUExecutionProvider"])
        names = {i.name for i in sess.get_inputs()}
        return sess, {k: v for k, v in feed.items() if k in names}

    times = collections.defaultdict(list)
    for _ in range(3):
        for name, p in models.items():
            sess, f = session(p)
            for _ in range(3):
                sess.run(None, f)
            for _ in range(10):
                t = time.perf_counter()
                sess.run(None, f)
                times[name].append((time.perf_counter() - t) * 1000)
            del sess
    sess, f = session(models["int8 (plain dynamic)"], profile=True)
    for _ in range(6):
        sess.run(None, f)
    events = json.loads(Path(sess.end_profiling()).read_text())
    agg = collections.Counter()
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            agg[e["args"]["op_name"]] += e["dur"]
    total = sum(agg.values())
    result = {"batch": b, "seq_len": s, "threads": 2,
              "median_ms": {k: round(statistics.median(v), 1) for k, v in times.items()},
              "int8_op_share": {k: round(v / total, 4) for k, v in agg.most_common()},
              "int8_gemm_share": round(sum(v for k, v in agg.items() if k in INT8_GEMM_OPS) / total, 4)}
    Path(a.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
