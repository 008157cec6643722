"""Training: AdamW, warmup + cosine, early stopping on validation NDCG@10, best weights kept.

:func:`fit` trains a model on a split and returns it with its history; :func:`train` runs the
whole job on an event table (split, vocabulary, fit, final evaluation, checkpoint, plot).
"""

from __future__ import annotations

import copy
import logging
import math
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from nextbehavior.model.checkpoint import CURVE_FILE, save_checkpoint
from nextbehavior.model.config import ModelConfig
from nextbehavior.model.curve import plot_curve
from nextbehavior.model.evaluate import evaluate_ranker, evaluate_report
from nextbehavior.model.ranker import TorchRanker
from nextbehavior.model.sequences import (
    Split,
    SplitKind,
    Vocab,
    Windows,
    build_sequences,
    build_vocab,
    make_split,
    training_windows,
)
from nextbehavior.model.table import EventTable
from nextbehavior.model.text_items import ItemText
from nextbehavior.model.transformer import BehaviorTransformer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings (the model's own settings live in :class:`ModelConfig`)."""

    epochs: int = 40  # also the length of the cosine schedule
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 0.1
    warmup_steps: int = 100
    min_lr_ratio: float = 0.1  # cosine decays to lr * min_lr_ratio at the last epoch
    grad_clip: float = 1.0
    patience: int = 10  # epochs without a better validation NDCG@10 before stopping
    stride: int | None = None  # training-window stride; None = max_len // 2
    seed: int = 0
    device: str = "cpu"
    threads: int | None = None  # torch CPU threads; None = free CPUs (default_threads)
    split: SplitKind = "loo"
    max_minutes: float | None = None  # stop after this much training time
    progress: bool | None = None  # progress bars: None = when stderr is a terminal


@dataclass
class FitResult:
    model: BehaviorTransformer  # best weights, eval mode
    history: list[dict[str, Any]]
    best_epoch: int
    best_valid_ndcg: float
    seconds: float


MAX_DEFAULT_THREADS = 8


def default_threads() -> int:
    """CPUs this process may use, less those other processes keep busy (1-minute load average),
    at most 8: on a shared machine, intra-op threads fighting for busy cores run several times
    slower than fewer threads (measured on ML-100K: 8 s/epoch with 1 thread, 30-50 s with 2
    while two other trainings ran)."""
    has_affinity = hasattr(os, "sched_getaffinity")
    cpus = len(os.sched_getaffinity(0)) if has_affinity else (os.cpu_count() or 1)
    busy = int(os.getloadavg()[0]) if hasattr(os, "getloadavg") else 0
    return max(1, min(MAX_DEFAULT_THREADS, cpus - busy))


def set_threads(threads: int | None) -> int:
    """Use ``threads`` CPU threads for torch (default: :func:`default_threads`)."""
    threads = max(1, threads if threads is not None else default_threads())
    torch.set_num_threads(threads)
    return threads


def check_device(device: str) -> None:
    """Raise ValueError (one line) if ``device`` is CUDA and this torch or machine has none."""
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {device}: CUDA is not available in this torch build or machine")


def lr_factor(step: int, warmup: int, total: int, min_ratio: float) -> float:
    """Linear warmup to 1, then cosine down to ``min_ratio`` at ``total``."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def _optimizer(model: BehaviorTransformer, tc: TrainConfig) -> torch.optim.Optimizer:
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    groups = [
        {"params": decay, "weight_decay": tc.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=tc.lr, betas=(0.9, 0.98))


def fit(
    split: Split,
    vocab: Vocab,
    cfg: ModelConfig,
    tc: TrainConfig,
    windows: Windows | None = None,
    item_text: ItemText | None = None,
) -> FitResult:
    """Train on ``split``'s training events; keep the weights with the best validation NDCG@10.

    ``item_text``: the text vectors of a text-aware model (``cfg.text_dim > 0``)."""
    torch.manual_seed(tc.seed)
    rng = np.random.default_rng(tc.seed)
    device = torch.device(tc.device)
    stride = tc.stride if tc.stride is not None else max(1, cfg.max_len // 2)
    data = windows if windows is not None else training_windows(split, vocab, cfg.max_len, stride)
    if len(data) == 0:
        raise ValueError("no training sequences with at least two events")
    model = BehaviorTransformer(cfg)
    if item_text is not None:
        item_text.install(model)
    model = model.to(device)
    opt = _optimizer(model, tc)
    steps_per_epoch = math.ceil(len(data) / tc.batch_size)
    total = steps_per_epoch * tc.epochs
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: lr_factor(s, tc.warmup_steps, total, tc.min_lr_ratio)
    )
    ranker = TorchRanker(model, vocab.items, vocab.event_types, device=device)
    history: list[dict[str, Any]] = []
    best = (-1.0, 0, copy.deepcopy(model.state_dict()))
    started = time.perf_counter()
    show = tc.progress if tc.progress is not None else None
    epochs = tqdm(range(1, tc.epochs + 1), desc="epochs", file=sys.stderr, disable=_off(show))
    for epoch in epochs:
        t0 = time.perf_counter()
        model.train()
        order = rng.permutation(len(data))
        losses: list[float] = []
        bar = tqdm(
            range(steps_per_epoch), desc=f"epoch {epoch}", leave=False, file=sys.stderr,
            disable=_off(show),
        )  # fmt: skip
        for b in bar:
            idx = order[b * tc.batch_size : (b + 1) * tc.batch_size]
            x = torch.from_numpy(data.items[idx, :-1]).to(device)  # (B, T)
            t = torch.from_numpy(data.types[idx, :-1]).to(device)  # (B, T)
            y = torch.from_numpy(data.targets[idx]).to(device)  # (B, T)
            yt = torch.from_numpy(data.target_types[idx]).to(device)  # (B, T)
            _, _, loss = model(x, t, y, yt)
            assert loss is not None
            opt.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            if tc.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
            opt.step()
            sched.step()
            losses.append(float(loss.detach()))
            if b % 10 == 0:
                bar.set_postfix(loss=f"{np.mean(losses[-50:]):.4f}")
        train_s = time.perf_counter() - t0
        ndcg = evaluate_ranker(ranker, split, "valid")["ndcg@10"]
        row = {
            "epoch": epoch,
            "loss": float(np.mean(losses)),
            "valid_ndcg@10": ndcg,
            "lr": float(sched.get_last_lr()[0]),
            "train_seconds": round(train_s, 3),
            "seconds": round(time.perf_counter() - t0, 3),
        }
        history.append(row)
        if ndcg > best[0]:
            best = (ndcg, epoch, copy.deepcopy(model.state_dict()))
        epochs.set_postfix(loss=f"{row['loss']:.4f}", ndcg10=f"{ndcg:.4f}", best=f"{best[0]:.4f}")
        log.info(
            "epoch %d loss %.4f valid ndcg@10 %.4f (best %.4f @ %d) %.1fs",
            epoch, row["loss"], ndcg, best[0], best[1], row["seconds"],
        )  # fmt: skip
        elapsed = time.perf_counter() - started
        if epoch - best[1] >= tc.patience:
            log.info("early stop: no better validation NDCG@10 for %d epochs", tc.patience)
            break
        if tc.max_minutes is not None and elapsed > 60 * tc.max_minutes:
            log.info("stopping: training time budget of %.1f min spent", tc.max_minutes)
            break
    model.load_state_dict(best[2])
    model.eval()
    return FitResult(model, history, best[1], best[0], time.perf_counter() - started)


def _off(show: bool | None) -> bool | None:
    return None if show is None else not show


def train(
    table: EventTable,
    out_dir: str | Path,
    model_options: dict[str, Any] | None = None,
    tc: TrainConfig | None = None,
) -> dict[str, Any]:
    """Split ``table``, train, evaluate (with baselines), write the checkpoint; return metrics."""
    tc = tc or TrainConfig()
    threads = set_threads(tc.threads)
    seqs = build_sequences(table)
    split = make_split(seqs, tc.split)
    vocab = build_vocab(table)
    cfg = ModelConfig(
        n_items=len(vocab.items), n_event_types=len(vocab.event_types), **(model_options or {})
    )
    log.info("data: %s; model: %s; threads %d", split.describe(), cfg, threads)
    result = fit(split, vocab, cfg, tc)
    ranker = TorchRanker(result.model, vocab.items, vocab.event_types, device=tc.device)
    report = evaluate_report(ranker, split)
    train_seconds = [h["train_seconds"] for h in result.history]
    metrics: dict[str, Any] = {
        **report,
        "best_epoch": result.best_epoch,
        "epochs_run": len(result.history),
        "seconds": round(result.seconds, 2),
        "seconds_per_epoch": round(float(np.mean(train_seconds)), 2),
        "history": result.history,
        "config": cfg.to_dict(),
        "train_config": asdict(tc) | {"threads": threads},
    }
    data_info = {**split.describe(), "load_report": table.report.to_dict()}
    out = Path(out_dir)
    save_checkpoint(out, result.model, vocab.items, vocab.event_types, metrics, data_info)
    plot_curve(result.history, out / CURVE_FILE, result.best_epoch)
    return metrics
