"""CLI commands: ``train`` and ``evaluate``. Torch and the model package load inside them."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer

from nextbehavior.stream.console import fail, setup_logging

FORMATS = ("auto", "recbole", "movielens", "retailrocket", "taobao", "jsonl")

DataOption = Annotated[Path, typer.Option("--data", help="Event log file")]
FormatOption = Annotated[
    str, typer.Option("--format", help=f"Log format: {', '.join(FORMATS)} (auto: by name/header)")
]


class SplitName(StrEnum):
    loo = "loo"
    temporal = "temporal"


class LossName(StrEnum):
    ce = "ce"
    sampled = "sampled"


def _check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        fail(f"unknown --format {fmt!r}; use one of {', '.join(FORMATS)}")


def _echo_json(obj: Any) -> None:
    typer.echo(orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY).decode())


def train(
    data: DataOption,
    out: Annotated[Path, typer.Option("--out", help="Checkpoint directory to write")],
    fmt: FormatOption = "auto",
    epochs: Annotated[
        int, typer.Option(min=1, help="Most epochs (cosine schedule length; early stopping)")
    ] = 40,
    max_len: Annotated[int, typer.Option("--max-len", min=1, help="Events of history")] = 50,
    device: Annotated[str, typer.Option(help="cpu, cuda or cuda:N")] = "cpu",
    seed: Annotated[int, typer.Option(help="Random seed")] = 0,
    d_model: Annotated[int, typer.Option("--d-model", min=8, help="Model width")] = 64,
    layers: Annotated[int, typer.Option(min=1, help="Transformer blocks")] = 2,
    heads: Annotated[int, typer.Option(min=1, help="Attention heads")] = 2,
    dropout: Annotated[float, typer.Option(min=0.0, max=0.9, help="Dropout")] = 0.3,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Windows/step")] = 64,
    lr: Annotated[float, typer.Option(min=0.0, help="Peak learning rate")] = 2e-3,
    weight_decay: Annotated[float, typer.Option("--weight-decay", min=0.0)] = 0.1,
    patience: Annotated[int, typer.Option(min=1, help="Epochs without gain before stop")] = 10,
    split: Annotated[SplitName, typer.Option(help="loo (leave-one-out) or temporal")] = (
        SplitName.loo
    ),
    loss: Annotated[LossName, typer.Option(help="ce (full softmax) or sampled")] = LossName.ce,
    negatives: Annotated[int, typer.Option(min=1, help="Sampled softmax negatives")] = 256,
    repeat_bias: Annotated[
        bool,
        typer.Option(
            "--repeat-bias/--no-repeat-bias",
            help="Learn a logit bias for items already in the history (by type and recency)",
        ),
    ] = True,
    threads: Annotated[
        int | None, typer.Option(min=1, help="CPU threads (default: the free CPUs, at most 8)")
    ] = None,
    max_minutes: Annotated[
        float | None, typer.Option("--max-minutes", help="Training time budget")
    ] = None,
    progress: Annotated[
        bool | None, typer.Option("--progress/--no-progress", help="Progress bars")
    ] = None,
    items: Annotated[
        Path | None,
        typer.Option("--items", help="Item side file (text-aware items): .item, u.item, CSV..."),
    ] = None,
    text_fields: Annotated[
        str | None, typer.Option("--text-fields", help="Item text fields, e.g. title,genres")
    ] = None,
    items_format: Annotated[str, typer.Option("--items-format", help="auto, recbole, ...")] = (
        "auto"
    ),
    cold_items: Annotated[
        float,
        typer.Option("--cold-items", min=0.0, max=0.9, help="Hold out this share of items"),
    ] = 0.0,
    id_dropout: Annotated[
        float, typer.Option("--id-dropout", min=0.0, max=0.9, help="Text-only training share")
    ] = 0.1,
    id_baseline: Annotated[
        bool, typer.Option("--id-baseline/--no-id-baseline", help="With --cold-items")
    ] = True,
    cold_tolerance: Annotated[
        float,
        typer.Option(
            "--cold-tolerance",
            min=0.0,
            max=1.0,
            help="Share of validation NDCG@10 that may be given up to serve text-only items",
        ),
    ] = 0.0,
    encoder: Annotated[
        Path | None, typer.Option("--encoder", help="Text encoder dir (NBP_TEXT_ENCODER)")
    ] = None,
    log_level: Annotated[str, typer.Option("--log-level")] = "INFO",
) -> None:
    """Train the sequence model on an event log; write a checkpoint with metrics.json.

    With ``--items``, items also carry their text (a pretrained sentence encoder, offline):
    items without interactions can be predicted; ``--cold-items F`` holds a seeded share F of
    items out of training and trains an ID-only reference on the same split (``<out>/id_only``).
    Text-only items are served only when that does not lower validation NDCG@10, unless
    ``--cold-tolerance S`` allows giving up a share S of it for them (new-item exposure).

    Prints a one-line JSON summary (test and validation metrics, baselines) on stdout.
    """
    setup_logging(log_level)
    _check_format(fmt)
    if cold_items > 0 and items is None:
        fail("--cold-items needs --items: held-out items are ranked from their text")
    try:
        from nextbehavior.model.loaders import load_events
        from nextbehavior.model.train import TrainConfig, check_device
        from nextbehavior.model.train import train as run_training
    except ImportError as exc:
        fail(f"train needs the train extra (pip install 'nextbehavior[train]'): {exc}")
    try:
        check_device(device)
    except ValueError as exc:
        fail(str(exc))
    model_options = {
        "max_len": max_len,
        "d_model": d_model,
        "n_layers": layers,
        "n_heads": heads,
        "dropout": dropout,
        "loss": loss.value,
        "n_negatives": negatives,
        "repeat_bias": repeat_bias,
    }
    tc = TrainConfig(
        epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay,
        patience=patience, seed=seed, device=device, threads=threads, split=split.value,
        max_minutes=max_minutes, progress=progress,
    )  # fmt: skip
    try:
        table = load_events(data, fmt, progress=progress)
        if items is None:
            metrics = run_training(table, out, model_options, tc)
        else:
            metrics = _train_with_text(
                table, out, model_options, tc, items, text_fields, items_format, cold_items,
                id_dropout, id_baseline, encoder, cold_tolerance,
            )  # fmt: skip
    except (OSError, ValueError) as exc:
        fail(str(exc))
    keys = ("hit@10", "ndcg@10", "mrr@10")
    base = metrics["baselines"]
    _echo_json(
        {
            "checkpoint": str(out),
            "best_epoch": metrics["best_epoch"],
            "epochs_run": metrics["epochs_run"],
            "seconds": metrics["seconds"],
            "valid": {k: metrics["valid"][k] for k in keys},
            "test": {k: metrics["test"][k] for k in keys},
            "baselines_test": {name: {k: b["test"][k] for k in keys} for name, b in base.items()},
            **{part: metrics[part] for part in _TEXT_PARTS if part in metrics},
        }
    )


_TEXT_PARTS = ("n_items", "test_cold", "test_warm", "cold_items", "id_only")


def _train_with_text(
    table: Any, out: Path, model_options: dict[str, Any], tc: Any, items: Path,
    text_fields: str | None, items_format: str, cold: float, id_dropout: float,
    id_baseline: bool, encoder: Path | None, cold_tolerance: float,
) -> dict[str, Any]:  # fmt: skip
    from nextbehavior.model.text_train import TextOptions, train_with_text
    from nextbehavior.stream.catalogue import parse_text_fields
    from nextbehavior.stream.settings import get_settings

    opts = TextOptions(
        items_path=items, encoder_dir=encoder or get_settings().text_encoder,
        text_fields=parse_text_fields(text_fields), items_format=items_format,
        cold_fraction=cold, cold_seed=tc.seed, id_dropout=id_dropout, id_baseline=id_baseline,
        cold_tolerance=cold_tolerance,
    )  # fmt: skip
    return train_with_text(table, out, opts, model_options, tc)


def evaluate(
    data: DataOption,
    fmt: FormatOption = "auto",
    checkpoint: Annotated[
        Path | None, typer.Option("--checkpoint", help="Checkpoint directory (torch)")
    ] = None,
    bundle: Annotated[
        Path | None, typer.Option("--bundle", help="Bundle directory (ONNX Runtime, no torch)")
    ] = None,
    split: Annotated[SplitName, typer.Option(help="loo or temporal")] = SplitName.loo,
    device: Annotated[str, typer.Option(help="--checkpoint only: cpu or cuda")] = "cpu",
    baselines: Annotated[
        bool, typer.Option("--baselines/--no-baselines", help="Also score the baselines")
    ] = True,
    progress: Annotated[bool | None, typer.Option("--progress/--no-progress")] = None,
    log_level: Annotated[str, typer.Option("--log-level")] = "WARNING",
) -> None:
    """Evaluate a checkpoint or a bundle on an event log; print one JSON object on stdout.

    Same split as training (leave-one-out by default), full-catalogue ranking, history not
    masked; ``--checkpoint`` and ``--bundle`` print the same JSON for the same model.
    """
    setup_logging(log_level)
    _check_format(fmt)
    if (checkpoint is None) == (bundle is None):
        fail("give exactly one of --checkpoint DIR and --bundle DIR")
    from nextbehavior.model.evaluate import BundleRanker, Ranker, evaluate_report
    from nextbehavior.model.loaders import load_events
    from nextbehavior.model.sequences import build_sequences, make_split
    from nextbehavior.stream.bundle import BundleError

    ranker: Ranker
    try:
        if bundle is not None:
            ranker = BundleRanker(bundle)
        else:
            ranker = _checkpoint_ranker(checkpoint, device)  # type: ignore[arg-type]
        table = load_events(data, fmt, progress=progress)
        split_ = make_split(build_sequences(table), split.value)
        report = evaluate_report(ranker, split_, baselines=baselines)
        report = _cold_warm(report, ranker, split_, checkpoint, device)
    except (BundleError, OSError, ValueError) as exc:
        fail(str(exc))
    _echo_json(report)


def _cold_warm(
    report: dict[str, Any], ranker: Any, split_: Any, checkpoint: Path | None, device: str
) -> dict[str, Any]:
    """Models trained with --cold-items: test_cold/test_warm, and the ID-only reference
    (evaluated here from ``<checkpoint>/id_only``; a bundle carries its training figures)."""
    from nextbehavior.model.cold_split import ID_ONLY_DIR, add_cold_warm

    if checkpoint is None:
        manifest = ranker.predictor.manifest
        return add_cold_warm(
            report, ranker, split_, manifest.data, reference=manifest.metrics.get("id_only")
        )
    data_file = checkpoint / "data.json"
    data = orjson.loads(data_file.read_bytes()) if data_file.is_file() else {}
    ref_dir = checkpoint / ID_ONLY_DIR
    has_ref = ref_dir.is_dir() and (data.get("cold_items") or {}).get("items")
    reference = _checkpoint_ranker(ref_dir, device) if has_ref else None
    return add_cold_warm(report, ranker, split_, data, reference=reference)


def _checkpoint_ranker(checkpoint: Path, device: str) -> Any:
    try:
        from nextbehavior.model.checkpoint import load_checkpoint
        from nextbehavior.model.ranker import TorchRanker
    except ImportError as exc:
        fail(f"--checkpoint needs the train extra (torch); use --bundle without it: {exc}")
    ckpt = load_checkpoint(checkpoint, device)  # CheckpointError is a ValueError
    return TorchRanker(ckpt.model, ckpt.items, ckpt.event_types, device=device)


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    app.command("train")(train)
    app.command("evaluate")(evaluate)
