"""Training with text-aware items: ``nextbehavior train --items PATH [--cold-items F]``.

Items get a text from their side file (title, genres, ...); the offline sentence encoder
(``stream.text_encoder``, the same ONNX path ``items add`` uses at serving time) embeds it;
items without training events get a row from a learned projection of that vector
(:mod:`~nextbehavior.model.text_items`), trained next to the finished ID model and calibrated
(:mod:`~nextbehavior.model.text_side`). With ``cold_fraction`` > 0 a seeded share of items is
held out of training entirely (:mod:`~nextbehavior.model.cold_split`), and the ID model, trained
on the same split, is saved as the ID-only reference in ``<out>/id_only``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nextbehavior.model.checkpoint import CURVE_FILE, save_checkpoint
from nextbehavior.model.cold_split import (
    ID_ONLY_DIR,
    choose_cold_items,
    cold_warm_report,
    training_without,
    without_targets,
)
from nextbehavior.model.config import ModelConfig
from nextbehavior.model.curve import plot_curve
from nextbehavior.model.evaluate import evaluate_report
from nextbehavior.model.ranker import TorchRanker
from nextbehavior.model.sequences import (
    Split,
    Vocab,
    Windows,
    build_sequences,
    build_vocab,
    make_split,
    training_windows,
)
from nextbehavior.model.table import EventTable
from nextbehavior.model.text_items import ItemText, text_vectors
from nextbehavior.model.text_side import (
    SideConfig,
    calibrate_cold_bias,
    holdout_items,
    scored_states,
    train_text_side,
    with_id_model,
)
from nextbehavior.model.train import FitResult, TrainConfig, fit, set_threads
from nextbehavior.model.transformer import BehaviorTransformer
from nextbehavior.stream.catalogue import item_texts, read_items

log = logging.getLogger(__name__)

TEXT_KEYS = ("text_dim", "id_dropout", "text_neighbors", "text_aux", "text_in_warm")


@dataclass(frozen=True)
class TextOptions:
    """Where item texts come from and how the cold-item evaluation is set up."""

    items_path: Path
    encoder_dir: Path
    text_fields: list[str] | None = None  # None: the item file's default text fields
    items_format: str = "auto"
    id_field: str | None = None
    cold_fraction: float = 0.0
    cold_seed: int = 0
    id_dropout: float = 0.1  # share of warm items scored text-only at each step (pseudo-cold)
    text_neighbors: int = 20  # a text-only item borrows the IDs of this many similar items
    text_aux: float = 0.5  # weight of the all-items text-only scoring loss
    text_in_warm: bool = False  # joint training: warm rows also add their projected text
    side_epochs: int = 20  # text-side epochs on the ID model's frozen states
    cold_tolerance: float = 0.0  # calibration: validation NDCG@10 it may give up for cold rows
    id_baseline: bool = True  # with cold items: also train the ID-only reference
    catalogue_items: bool = True  # side-file items absent from the log join the vocabulary


def load_item_text(vocab_items: list[str], opts: TextOptions) -> tuple[ItemText, list[str]]:
    """Text vectors for ``vocab_items`` (+ catalogue-only items) -> (ItemText, full item list).

    ``ItemText.warm`` is all False here; the caller marks the items that have training events."""
    from nextbehavior.export.text_encoder import ensure_text_encoder
    from nextbehavior.stream.text_encoder import TextEncoder

    catalogue = read_items(opts.items_path, opts.items_format, opts.id_field)
    texts = item_texts(catalogue, opts.text_fields)
    items = list(vocab_items)
    if opts.catalogue_items:
        known = set(items)
        items += [i for i in texts if i not in known]
    info = ensure_text_encoder(opts.encoder_dir)
    encoder = TextEncoder(opts.encoder_dir)
    vectors, has = text_vectors(items, texts, encoder.encode, info.dim)
    missing = len(items) - 1 - int(has.sum())
    if missing:
        log.warning("%d of %d items have no text in %s", missing, len(items) - 1, opts.items_path)
    meta = {
        "encoder": info.describe(),
        "items_file": str(opts.items_path),
        "items_format": catalogue.format,
        "text_fields": list(opts.text_fields or catalogue.default_fields),
        "id_field": opts.id_field,
    }
    warm = np.zeros(len(items), dtype=np.bool_)
    return ItemText(vectors, warm, has, meta), items


def _metrics(
    result: FitResult, report: dict[str, Any], cfg: ModelConfig, tc: TrainConfig, threads: int
) -> dict[str, Any]:
    train_seconds = [h["train_seconds"] for h in result.history]
    return {
        **report,
        "best_epoch": result.best_epoch,
        "epochs_run": len(result.history),
        "seconds": round(result.seconds, 2),
        "seconds_per_epoch": round(float(np.mean(train_seconds)), 2),
        "history": result.history,
        "config": cfg.to_dict(),
        "train_config": asdict(tc) | {"threads": threads},
    }


def _report(ranker: TorchRanker, split: Split, cold: list[str]) -> dict[str, Any]:
    report = evaluate_report(ranker, split)
    if cold:
        report.update(cold_warm_report(ranker, split, cold))
    return report


def train_with_text(
    table: EventTable,
    out_dir: str | Path,
    opts: TextOptions,
    model_options: dict[str, Any] | None = None,
    tc: TrainConfig | None = None,
) -> dict[str, Any]:
    """Train a text-aware model (and, with cold items, the ID-only reference); write the
    checkpoint(s); return the text-aware model's metrics (``id_only`` inside when trained).

    Default: the ID model is trained first (it is the ID-only reference with cold items) and
    the text side is trained next to it and calibrated (:mod:`~nextbehavior.model.text_side`),
    so warm items are served exactly as the ID-only model serves them. ``text_in_warm``: one
    joint training of IDs and texts (warm rows add their projected text), then calibration."""
    tc = tc or TrainConfig()
    threads = set_threads(tc.threads)
    out = Path(out_dir)
    split = make_split(build_sequences(table), tc.split)
    base_vocab = build_vocab(table)
    cold = choose_cold_items(base_vocab.items[1:], opts.cold_fraction, opts.cold_seed)
    item_text, items = load_item_text(base_vocab.items, opts)
    vocab = Vocab(items, base_vocab.event_types)
    train_split = training_without(split, cold)  # windows never hold a cold event
    select_split = without_targets(split, cold)  # nor do model selection and calibration
    options = {
        "id_dropout": opts.id_dropout if opts.text_in_warm else 0.0,
        "text_neighbors": opts.text_neighbors,
        "text_aux": opts.text_aux if opts.text_in_warm else 0.0,
        "text_in_warm": opts.text_in_warm,
        **(model_options or {}),
    }
    cfg = ModelConfig(
        n_items=len(items), n_event_types=len(vocab.event_types), text_dim=item_text.dim, **options
    )
    stride = tc.stride if tc.stride is not None else max(1, cfg.max_len // 2)
    windows = training_windows(train_split, vocab, cfg.max_len, stride)
    item_text.warm[np.unique(windows.items)] = True
    item_text.warm[0] = False
    n_warm = int(item_text.warm.sum())
    if cfg.text_neighbors >= n_warm:  # tiny data: borrow from all other warm items
        cfg = replace(cfg, text_neighbors=max(0, n_warm - 1))
    log.info(
        "text-aware items: %s, %d cold held out; model %s", item_text.describe(), len(cold), cfg
    )
    holdout = holdout_items(item_text.warm, opts.cold_fraction or 0.1, tc.seed)
    data_info: dict[str, Any] = {
        **split.describe(),
        "load_report": table.report.to_dict(),
        "text": item_text.describe(),
        "cold_items": {"fraction": opts.cold_fraction, "seed": opts.cold_seed, "items": cold},
    }
    id_only: dict[str, Any] | None = None
    if opts.text_in_warm:
        result = _fit_selecting_on_seen(select_split, vocab, cfg, tc, windows, item_text)
        side: dict[str, Any] = {"mode": "joint"}
    else:
        held = set(cold)
        id_vocab = Vocab([i for i in base_vocab.items if i not in held], base_vocab.event_types)
        id_result = _fit_id_model(select_split, train_split, id_vocab, model_options, tc)
        if cold and opts.id_baseline:
            id_only = _save_id_only(
                id_result, split, id_vocab, cold, tc, threads, out / ID_ONLY_DIR, data_info
            )
        torch.manual_seed(tc.seed)
        model = BehaviorTransformer(cfg)
        item_text.install(model)
        with_id_model(id_result.model, id_vocab.items, model, items)
        model.to(tc.device)
        side = _train_side(model, windows, item_text.warm & ~holdout, opts, tc)
        result = replace(id_result, model=model.eval())
    side["calibration"] = calibrate_cold_bias(
        result.model, select_split, items, vocab.event_types, holdout,
        tolerance=opts.cold_tolerance,
    )  # fmt: skip
    ranker = TorchRanker(result.model, vocab.items, vocab.event_types, device=tc.device)
    metrics = _metrics(result, _report(ranker, split, cold), cfg, tc, threads)
    metrics["text_side"] = side
    if cold:
        metrics["cold_items"] = {
            "fraction": opts.cold_fraction,
            "seed": opts.cold_seed,
            "n": len(cold),
            "chance_hit@10": 10 / (len(items) - 1),
        }
        if opts.id_baseline:
            splits = (split, train_split, select_split)
            metrics["id_only"] = id_only or _train_id_only(
                splits, base_vocab, cold, model_options, tc, threads, out / ID_ONLY_DIR, data_info
            )
    save_checkpoint(out, result.model, vocab.items, vocab.event_types, metrics, data_info)
    plot_curve(result.history, out / CURVE_FILE, result.best_epoch)
    return metrics


def _train_side(
    model: BehaviorTransformer, windows: Windows, candidates: Any, opts: TextOptions,
    tc: TrainConfig,
) -> dict[str, Any]:  # fmt: skip
    """The text side next to the finished ID model (``text_side.train_text_side``)."""
    started = time.perf_counter()
    states, targets = scored_states(model, windows)
    sc = SideConfig(
        epochs=opts.side_epochs, pseudo_cold=opts.id_dropout, text_aux=opts.text_aux, seed=tc.seed
    )
    cand = torch.from_numpy(np.asarray(candidates)).to(states.device)
    losses = train_text_side(model, states, targets, cand, sc)
    seconds = time.perf_counter() - started
    log.info("text side: %d epochs on %d positions, %.0f s", sc.epochs, len(targets), seconds)
    return {"mode": "side", "epochs": sc.epochs, "losses": losses, "seconds": round(seconds, 1)}


def _fit_id_model(
    select_split: Split, train_split: Split, vocab: Vocab,
    model_options: dict[str, Any] | None, tc: TrainConfig,
) -> FitResult:  # fmt: skip
    """The ID model on the items of ``vocab`` (no cold item), selected on ``select_split``."""
    options = {k: v for k, v in (model_options or {}).items() if k not in TEXT_KEYS}
    cfg = ModelConfig(n_items=len(vocab.items), n_event_types=len(vocab.event_types), **options)
    stride = tc.stride if tc.stride is not None else max(1, cfg.max_len // 2)
    windows = training_windows(train_split, vocab, cfg.max_len, stride)
    log.info("ID model (the ID-only reference with cold items): %s", cfg)
    return fit(select_split, vocab, cfg, tc, windows=windows)


def _save_id_only(
    result: FitResult, split: Split, vocab: Vocab, cold: list[str], tc: TrainConfig,
    threads: int, sub: Path, data_info: dict[str, Any],
) -> dict[str, Any]:  # fmt: skip
    """Evaluate and save the ID model as the ID-only reference (``<out>/id_only``)."""
    ranker = TorchRanker(result.model, vocab.items, vocab.event_types, device=tc.device)
    report = _report(ranker, split, cold)
    metrics = _metrics(result, report, result.model.cfg, tc, threads)
    info = {k: v for k, v in data_info.items() if k != "text"}
    save_checkpoint(sub, result.model, vocab.items, vocab.event_types, metrics, info)
    plot_curve(result.history, sub / CURVE_FILE, result.best_epoch)
    keep = ("test", "test_cold", "test_warm", "n_items", "best_epoch", "seconds")
    return {k: report.get(k, metrics.get(k)) for k in keep}


def _fit_selecting_on_seen(
    split: Split, vocab: Vocab, cfg: ModelConfig, tc: TrainConfig, windows: Any, text: ItemText
) -> FitResult:
    """``fit`` whose validation ranks only items with training events, like the ID-only model:
    model selection then picks the epoch that serves warm items best, and cold rows (which
    grow stronger with training) cannot stop training early by crowding the validation lists.
    """
    text.hide_unseen = True  # ItemText.install passes it on to the model fit builds
    try:
        result = fit(split, vocab, cfg, tc, windows=windows, item_text=text)
    finally:
        text.hide_unseen = False
    assert result.model.item_text is not None
    result.model.item_text.hide_unseen = False  # evaluation and serving rank every item
    return result


def _train_id_only(
    splits: tuple[Split, Split, Split],
    base_vocab: Vocab,
    cold: list[str],
    model_options: dict[str, Any] | None,
    tc: TrainConfig,
    threads: int,
    sub: Path,
    data_info: dict[str, Any],
) -> dict[str, Any]:
    """The ID-only reference (joint mode): it never saw a cold item, so its vocabulary lacks
    them."""
    split, train_split, select_split = splits
    held = set(cold)
    vocab = Vocab([i for i in base_vocab.items if i not in held], base_vocab.event_types)
    result = _fit_id_model(select_split, train_split, vocab, model_options, tc)
    return _save_id_only(result, split, vocab, cold, tc, threads, sub, data_info)
