"""ONNX Runtime static int8 of an image classifier: weights and activations in int8 (QDQ format), convolution and
linear weights per output channel, activation ranges calibrated on training images (never the held-out images the
accuracy drop is measured on).

Dynamic int8 quantizes only the weights of MatMul/Gemm and computes activation scales at run time, so a CNN's
convolutions stay fp32; static int8 fixes every activation's range ahead of time from calibration images, so the
convolutions run as int8 too. Before calibration the fp32 graph is optimised (ORT's quant_pre_process: batch-norms
folded into the convolutions, shapes inferred), so the QDQ pairs wrap the fused convolutions.

Calibration is MinMax by default: measured on the digits models (docs/quantize.md) it kept the accuracy of the fp32
model as well as percentile or entropy, and it streams (a running min and max per tensor) where the histogram methods
keep every activation of every calibration image in memory, which does not fit for a 224x224 ResNet-50 and a few
hundred images."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

CALIBRATION_METHODS = ("minmax", "percentile", "entropy")
CANDIDATE = "ort-static-int8"
PROCESSOR_FILES = ("config.json", "preprocessor_config.json", "calibration.json")


class PixelReader:
    """onnxruntime's CalibrationDataReader over preprocessed calibration images, a few at a time."""

    def __init__(self, pixels: np.ndarray, batch_size: int = 8):
        self.pixels, self.batch_size, self.at = pixels, batch_size, 0

    def get_next(self):
        if self.at >= len(self.pixels):
            return None
        batch = self.pixels[self.at:self.at + self.batch_size]
        self.at += self.batch_size
        return {"pixel_values": np.ascontiguousarray(batch, dtype=np.float32)}

    def rewind(self):
        self.at = 0


def calibration_images(train_paths: list[str], n: int, seed: int = 0) -> list[str]:
    """A seeded random sample of n training images (all of them when there are fewer)."""
    from nncli.deploy.export import sample

    return sample(train_paths, n, seed)


def build_static(onnx_dir: Path, work: Path, pixels: np.ndarray, method: str = "minmax") -> Path:
    """<work>/ort-static-int8/model.onnx (with the processor and config beside it) from <onnx_dir>/model.onnx."""
    import logging

    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if method not in CALIBRATION_METHODS:
        raise ValueError(f"calibration method must be one of {CALIBRATION_METHODS}")
    dest = work / CANDIDATE
    dest.mkdir(parents=True, exist_ok=True)
    prepared = work / "static-prepared.onnx"
    logging.getLogger("root").setLevel(logging.ERROR)        # onnxruntime.quantization logs every skipped node
    quant_pre_process(str(onnx_dir / "model.onnx"), str(prepared), skip_symbolic_shape=True)
    how = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
           "entropy": CalibrationMethod.Entropy}[method]
    extra = {"ActivationSymmetric": False, "WeightSymmetric": True}
    if method == "percentile":
        extra["CalibPercentile"] = 99.999
    quantize_static(str(prepared), str(dest / "model.onnx"), PixelReader(pixels), quant_format=QuantFormat.QDQ,
                    per_channel=True, reduce_range=False, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    calibrate_method=how, extra_options=extra)
    prepared.unlink(missing_ok=True)
    for f in PROCESSOR_FILES:
        if (onnx_dir / f).exists():
            shutil.copy2(onnx_dir / f, dest / f)
    return dest


def op_counts(path: Path) -> dict[str, int]:
    """How many convolutions/matmuls the quantized graph runs in int8 (QDQ-wrapped) and how many stay fp32."""
    import onnx

    g = onnx.load(str(path), load_external_data=False).graph
    made_by = {o: n.op_type for n in g.node for o in n.output}
    out = {"int8": 0, "fp32": 0}
    for n in g.node:
        if n.op_type in ("Conv", "MatMul", "Gemm"):
            quantized = bool(n.input) and made_by.get(n.input[0]) == "DequantizeLinear"
            out["int8" if quantized else "fp32"] += 1
    return out
