"""Checkpoint directory -> model bundle directory (``model.onnx`` first, ``manifest.json`` last).

``model_version`` is ``<created_at as YYYYmmddTHHMMSSZ>-<first 8 hex of the ONNX sha256>``:
sortable by time, and two bundles with the same version hold the same graph.
"""

from __future__ import annotations

import logging
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from nextbehavior.export.exporter import OPSET, export_onnx
from nextbehavior.export.parity import (
    ParityReport,
    random_histories,
    top_k_agreement,
    verify_parity,
)
from nextbehavior.export.variants import export_fp16, quantize_int8
from nextbehavior.stream.bundle import (
    MANIFEST_FILE,
    MODEL_FILE,
    OUTPUT_NAMES,
    WEIGHTS_OUTPUT,
    BundleError,
    Manifest,
    sha256_file,
    write_manifest,
)
from nextbehavior.stream.item_update import write_item_side

log = logging.getLogger(__name__)

AGREEMENT_K = 10


class ParityError(BundleError):
    """``verify=True`` and the exported graph does not predict what the model predicts."""


def export_bundle(
    checkpoint_dir: Path | str,
    out_dir: Path | str,
    top_k: int = 20,
    verify: bool = False,
    quantize: str | None = None,
    fp16: bool = False,
    chunk: int | str | None = "auto",
    explain: bool = False,
) -> Manifest:
    """Export the checkpoint at ``checkpoint_dir`` as a bundle in ``out_dir``; return its manifest.

    ``verify`` checks fp32 ONNX/torch parity (:mod:`export.parity`) and raises
    :class:`ParityError` before anything is written. ``quantize="int8"`` or ``fp16`` serve that
    variant instead of fp32; its top-10 agreement with the fp32 graph on random histories is
    logged and kept in ``manifest.extra``. ``chunk``: see :func:`export_onnx`. ``explain``
    adds the ``history_weights`` output, listed in ``manifest.outputs`` (``model.attribution``).
    """
    from nextbehavior.model.checkpoint import load_checkpoint

    if quantize not in (None, "int8"):
        raise ValueError(f"quantize must be None or 'int8', got {quantize!r}")
    if quantize and fp16:
        raise ValueError("choose one of quantize='int8' and fp16")
    ckpt = load_checkpoint(Path(checkpoint_dir))
    model, cfg = ckpt.model.eval(), ckpt.config
    if len(ckpt.items) != cfg.n_items or len(ckpt.event_types) != cfg.n_event_types:
        raise BundleError("checkpoint vocabularies do not match its model config")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    extra: dict[str, Any] = {
        "scores": "softmax probability over the whole catalogue",
        "opset": OPSET,
        "torch_version": torch.__version__,
        "config": cfg.to_dict(),
        "checkpoint": str(Path(checkpoint_dir).resolve()),
        "variant": "int8" if quantize else "fp16" if fp16 else "fp32",
    }
    with tempfile.TemporaryDirectory(prefix=".export-", dir=out) as tmp_name:
        tmp = Path(tmp_name)
        fp32_path = tmp / "fp32.onnx"
        used_chunk = export_onnx(model, fp32_path, top_k, chunk=chunk, explain=explain)
        extra["two_stage_topk_chunk"] = used_chunk
        if verify:
            report = verify_parity(model, fp32_path)
            extra["parity"] = report.to_dict()
            _raise_on_failure(report)
        served = fp32_path
        if fp16:
            served = tmp / "fp16.onnx"
            export_fp16(model, served, top_k, used_chunk, explain=explain)
        elif quantize:
            served = tmp / "int8.onnx"
            quantize_int8(fp32_path, served)
        if served is not fp32_path:
            k = min(AGREEMENT_K, top_k)
            items, types = random_histories(cfg.max_len, cfg.n_items, cfg.n_event_types)
            value = top_k_agreement(fp32_path, served, items, types, k=k)
            extra["agreement_vs_fp32"] = {"k": k, "top_k_overlap": value, "rows": len(items)}
            log.info("%s top-%d agreement with fp32: %.4f", extra["variant"], k, value)
        # Readers must never pair an old manifest with a new model: remove it first, write last.
        (out / MANIFEST_FILE).unlink(missing_ok=True)
        os.replace(served, out / MODEL_FILE)
    if model.item_text is not None:  # text-aware items: what `items add` needs, torch-free
        arrays = model.item_text.serving_arrays(model.item_emb.weight)
        extra["text"] = write_item_side(out, arrays, dict(ckpt.data.get("text", {})))
    sha = sha256_file(out / MODEL_FILE)
    created = datetime.now(UTC).replace(microsecond=0)
    manifest = Manifest(
        model_version=f"{created.strftime('%Y%m%dT%H%M%SZ')}-{sha[:8]}",
        created_at=created.isoformat().replace("+00:00", "Z"),
        max_len=cfg.max_len,
        top_k=top_k,
        items=list(ckpt.items),
        event_types=list(ckpt.event_types),
        onnx_sha256=sha,
        outputs=[*OUTPUT_NAMES, *([WEIGHTS_OUTPUT] if explain else [])],
        metrics=dict(ckpt.metrics),
        data=dict(ckpt.data),
        extra=extra,
    )
    write_manifest(out, manifest)
    from nextbehavior.stream.predictor import Predictor

    try:  # the served path's own checks: contract, load, warm-up
        Predictor(out, providers=["CPUExecutionProvider"])
    except BundleError:
        (out / MANIFEST_FILE).unlink(missing_ok=True)  # never leave a bundle that won't serve
        raise
    log.info("wrote bundle %s (model_version %s)", out, manifest.model_version)
    return manifest


def _raise_on_failure(report: ParityReport) -> None:
    if not report.ok:
        more = f" (+{len(report.failures) - 1} more)" if len(report.failures) > 1 else ""
        raise ParityError(f"ONNX/torch parity failed: {report.failures[0]}{more}")


def export_random_bundle(work: Path, n_items: int, *, seed: int = 0) -> Path:
    """A default-config model with random weights over ``n_items`` items (ids "1".."n-1"),
    checkpointed and exported under ``work``; the bundle directory (for timing runs, where the
    weights do not matter)."""
    from nextbehavior.model.checkpoint import save_checkpoint
    from nextbehavior.model.config import ModelConfig
    from nextbehavior.model.transformer import BehaviorTransformer

    torch.manual_seed(seed)
    model = BehaviorTransformer(ModelConfig(n_items, 2)).eval()
    items = ["[PAD]", *(str(i) for i in range(1, n_items))]
    ckpt = save_checkpoint(
        work / "checkpoint", model, items, ["[PAD]", "interaction"], {}, {"source": "random"}
    )
    export_bundle(ckpt, work / "bundle")
    return work / "bundle"
