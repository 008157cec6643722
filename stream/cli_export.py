"""CLI command: ``export`` (checkpoint directory -> model bundle). Needs the ``train`` extra."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import orjson
import typer

from nextbehavior.stream.console import fail, setup_logging


class Quantize(StrEnum):
    int8 = "int8"


def export(
    checkpoint: Annotated[
        Path, typer.Option("--checkpoint", help="Checkpoint directory written by `train`")
    ],
    out: Annotated[Path, typer.Option("--out", help="Bundle directory to write (created)")],
    top_k: Annotated[int, typer.Option("--top-k", min=1, help="Items per prediction")] = 20,
    verify: Annotated[
        bool, typer.Option("--verify", help="Prove ONNX/torch parity; fail if it does not hold")
    ] = False,
    quantize: Annotated[
        Quantize | None, typer.Option("--quantize", help="Serve a dynamic int8 graph (CPU)")
    ] = None,
    fp16: Annotated[bool, typer.Option("--fp16", help="Serve an fp16 graph (for CUDA)")] = False,
    explain: Annotated[
        bool,
        typer.Option(
            "--explain/--no-explain",
            help="Add the history_weights output, for `worker --explain` and `explain`",
        ),
    ] = False,
    log_level: Annotated[str, typer.Option("--log-level", help="Logging level")] = "WARNING",
) -> None:
    """Export a checkpoint as a model bundle (model.onnx + manifest.json).

    Prints one JSON object on stdout: the bundle path, model_version, checksum and, with
    --verify, the parity report; with --quantize or --fp16, the top-10 agreement with fp32.
    """
    setup_logging(log_level)
    if quantize is not None and fp16:
        fail("choose one of --quantize int8 and --fp16")
    try:
        from nextbehavior.export.writer import export_bundle
    except ImportError as exc:
        fail(f"export needs the train extra (torch, onnx, onnxscript): {exc}")
    from nextbehavior.model.checkpoint import CheckpointError
    from nextbehavior.stream.bundle import BundleError

    try:
        manifest = export_bundle(
            checkpoint,
            out,
            top_k=top_k,
            verify=verify,
            quantize=quantize.value if quantize else None,
            fp16=fp16,
            explain=explain,
        )
    except (BundleError, CheckpointError, ValueError, OSError) as exc:
        fail(str(exc))
    summary = {
        "bundle": str(out),
        "model_version": manifest.model_version,
        "onnx_sha256": manifest.onnx_sha256,
        "size_bytes": (out / "model.onnx").stat().st_size,
        "items": len(manifest.items) - 1,
        "top_k": manifest.top_k,
        "variant": manifest.extra.get("variant"),
        "parity": manifest.extra.get("parity"),
        "agreement_vs_fp32": manifest.extra.get("agreement_vs_fp32"),
        "outputs": manifest.outputs,
    }
    typer.echo(orjson.dumps(summary).decode())


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    app.command("export")(export)
