"""Smaller or faster variants of an exported model: fp16 (for CUDA) and int8 (dynamic, for CPU).

fp16 is exported from a half-precision copy of the model: the Transformer and both heads run in
fp16, and the shim casts the logits to fp32 before masking, top-k and softmax, so the outputs
keep the contract's dtypes and the normaliser is summed in fp32.
int8 is ONNX Runtime's dynamic quantization of the fp32 graph (weights int8, activations
quantized per call), after ``quant_pre_process`` so that the tied item head, a MatMul against
a transposed embedding, is folded into a constant and quantized too (ONNX.md).
Both change the scores; callers measure their top-10 agreement with fp32 (``export.parity``).
"""

from __future__ import annotations

import copy
import logging
import tempfile
from pathlib import Path
from typing import Literal

from nextbehavior.export.exporter import export_onnx
from nextbehavior.model.transformer import BehaviorTransformer

log = logging.getLogger(__name__)

Variant = Literal["fp32", "fp16", "int8"]


def export_fp16(
    model: BehaviorTransformer, path: Path, top_k: int, chunk: int | None, explain: bool = False
) -> None:
    """Export a half-precision copy of ``model`` (fp32 inputs/outputs unchanged: int64 / fp32)."""
    half = copy.deepcopy(model).half().eval()
    export_onnx(half, path, top_k, chunk=chunk, explain=explain)


def quantize_int8(fp32_path: Path, path: Path) -> None:
    """Dynamic int8 quantization of an fp32 bundle graph (MatMul/Gemm weights)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(fp32_path), str(pre), skip_symbolic_shape=True)
        quantize_dynamic(
            str(pre),
            str(path),
            weight_type=QuantType.QInt8,
            op_types_to_quantize=["MatMul", "Gemm"],
        )
    log.info("quantized %s -> %s (int8 dynamic)", fp32_path.name, path)
