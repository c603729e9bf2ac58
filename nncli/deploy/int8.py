"""Building int8 candidates: PyTorch dynamic int8 (applied when nncli loads the model, recorded in
quantization.json), ONNX Runtime dynamic int8 (per tensor, per channel, head in fp32) and static int8 calibrated on
training texts. The layers nncli builds for mean pooling and the classification head stay in fp32 where asked."""

from __future__ import annotations

import shutil
from pathlib import Path

TOKENIZER_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt", "vocab.json",
                   "merges.txt", "sentencepiece.bpe.model", "spiece.model", "calibration.json", "preprocessor_config.json")


def export_fp32(src: str, dest: Path) -> None:
    from nncli.deploy.export import export_onnx
    from nncli.recipe.deploy import ExportRecipe

    export_onnx(src, dest, "sequence-classification", ExportRecipe(model=src))
    if (Path(src) / "calibration.json").exists():
        shutil.copy2(Path(src) / "calibration.json", dest / "calibration.json")


def build(name: str, src: str, onnx_dir: Path | None, work: Path, calib_texts: list[str], ref) -> Path:
    dest = work / name
    dest.mkdir(parents=True, exist_ok=True)
    if name.startswith("torch-dynamic-int8"):
        import json as _json

        for f in Path(src).iterdir():
            if f.is_file():
                shutil.copy2(f, dest / f.name)
        exclude = ["classifier", "pooler", "score"] if name.endswith("head-fp32") else []
        (dest / "quantization.json").write_text(_json.dumps({"method": "torch-dynamic-int8", "modules": "torch.nn.Linear",
                                                             "exclude": exclude, "dtype": "qint8",
                                                             "note": "fp32 weights on disk; int8 applied when nncli loads "
                                                                     "the model"}))
        return dest
    import logging

    from optimum.onnxruntime import ORTQuantizer
    from optimum.onnxruntime.configuration import AutoCalibrationConfig, AutoQuantizationConfig

    logging.getLogger("optimum").setLevel(logging.ERROR)
    quantizer = ORTQuantizer.from_pretrained(onnx_dir, file_name="model.onnx")
    nodes = head_nodes(onnx_dir / "model.onnx")
    if name == "ort-dynamic-int8":
        cfg = AutoQuantizationConfig.avx512_vnni(is_static=False, per_channel=False)
        quantizer.quantize(quantization_config=cfg, save_dir=dest)
    elif name == "ort-dynamic-int8-per-channel":
        cfg = AutoQuantizationConfig.avx512_vnni(is_static=False, per_channel=True)
        quantizer.quantize(quantization_config=cfg, save_dir=dest)
    elif name == "ort-dynamic-int8-head-fp32":
        cfg = AutoQuantizationConfig.avx512_vnni(is_static=False, per_channel=True, nodes_to_exclude=nodes)
        quantizer.quantize(quantization_config=cfg, save_dir=dest)
    elif name == "ort-static-int8":
        from datasets import Dataset

        cfg = AutoQuantizationConfig.avx512_vnni(is_static=True, per_channel=True, operators_to_quantize=["MatMul"],
                                                 nodes_to_exclude=nodes)
        enc = ref.tokenizer(calib_texts, padding="max_length", truncation=True, max_length=ref.max_length)  # one shape
        keep = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc]
        ds = Dataset.from_dict({k: enc[k] for k in keep})
        calibration = AutoCalibrationConfig.percentiles(ds, percentile=99.99)
        ranges = quantizer.fit(dataset=ds, calibration_config=calibration, operators_to_quantize=cfg.operators_to_quantize,
                               onnx_augmented_model_name=str(work / "augmented.onnx"))
        quantizer.quantize(quantization_config=cfg, save_dir=dest, calibration_tensors_range=ranges)
    else:  # pragma: no cover
        raise ValueError(name)
    produced = next(dest.glob("*.onnx"))
    produced.rename(dest / "model.onnx")
    for f in TOKENIZER_FILES:
        if (onnx_dir / f).exists():
            shutil.copy2(onnx_dir / f, dest / f)
    return dest


def head_nodes(path: Path) -> list[str]:
    import onnx

    m = onnx.load(str(path), load_external_data=False)
    heads = ("classifier", "pooler", "score", "pre_classifier")
    return [n.name for n in m.graph.node if n.op_type in ("MatMul", "Gemm") and any(k in n.name for k in heads)]
