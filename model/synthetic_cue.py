"""Synthetic histories with one planted cue: the next item depends on one known earlier event.

Each history is ``length`` events (``min_len..max_len``) of uniformly random items, all
``view`` except one ``purchase`` at a uniformly random position other than the newest. The next
item is the purchased item's partner (``partner``: the item half a catalogue away), whatever
the other events are. So the purchase is the one event that drives the prediction, and an
explanation method can be scored on how often it ranks that event first.

Generation is numpy only; :func:`train_cue_model` (torch, imported inside) fits a small
:class:`~nextbehavior.model.transformer.BehaviorTransformer` to it in seconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from nextbehavior.stream.bundle import PAD_TOKEN

if TYPE_CHECKING:
    from nextbehavior.model.transformer import BehaviorTransformer

I64 = npt.NDArray[np.int64]
VIEW, PURCHASE = 1, 2
EVENT_TYPES = [PAD_TOKEN, "view", "purchase"]


@dataclass(frozen=True)
class CueConfig:
    n_items: int = 40
    min_len: int = 3  # events per history, the purchase included
    max_len: int = 12

    def items(self) -> list[str]:
        """The vocabulary: ``[PAD]``, then ``c1..cN`` (index i is item ``c{i}``)."""
        return [PAD_TOKEN, *(f"c{i}" for i in range(1, self.n_items + 1))]


@dataclass(frozen=True)
class CueRows:
    """Encoded histories (vocabulary indices, left-padded with 0, newest last)."""

    items: I64  # (N, max_len)
    types: I64  # (N, max_len) VIEW or PURCHASE, 0 on padding
    cue: I64  # (N,) column of the purchase
    target: I64  # (N,) the next item: partner of the purchased item


def partner(item: I64, n_items: int) -> I64:
    """The item that follows a purchase of ``item`` (indices 1..n_items)."""
    return (item - 1 + n_items // 2) % n_items + 1


def cue_rows(n: int, cfg: CueConfig, rng: np.random.Generator) -> CueRows:
    """``n`` seeded histories with their planted cue and next item."""
    width = cfg.max_len
    lengths = rng.integers(max(cfg.min_len, 2), width + 1, size=n)  # (N,)
    start = width - lengths  # first real column
    cols = np.arange(width)[None, :]
    real = cols >= start[:, None]  # (N, W)
    items = np.where(real, rng.integers(1, cfg.n_items + 1, size=(n, width)), 0)
    cue = start + (rng.random(n) * (lengths - 1)).astype(np.int64)  # never the newest column
    types = np.where(real, VIEW, 0)
    rows = np.arange(n)
    types[rows, cue] = PURCHASE
    target = partner(items[rows, cue], cfg.n_items)
    return CueRows(items.astype(np.int64), types.astype(np.int64), cue, target)


def train_cue_model(
    cfg: CueConfig,
    *,
    steps: int = 400,
    batch: int = 64,
    seed: int = 0,
    **model_options: Any,
) -> BehaviorTransformer:
    """A small Transformer fitted to cue histories (loss on the newest position), eval mode."""
    import torch

    from nextbehavior.model.config import ModelConfig
    from nextbehavior.model.transformer import BehaviorTransformer

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    options: dict[str, Any] = {"d_model": 32, "n_layers": 2, "n_heads": 2, "dropout": 0.0}
    options.update(model_options)
    model_cfg = ModelConfig(
        n_items=cfg.n_items + 1, n_event_types=len(EVENT_TYPES), max_len=cfg.max_len, **options
    )
    model = BehaviorTransformer(model_cfg)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(steps):
        rows = cue_rows(batch, cfg, rng)
        items, types = torch.from_numpy(rows.items), torch.from_numpy(rows.types)
        targets = torch.zeros_like(items)
        targets[:, -1] = torch.from_numpy(rows.target)  # only the newest position is scored
        _, _, loss = model(items, types, targets)
        opt.zero_grad()
        assert loss is not None
        loss.backward()
        opt.step()
    return model.eval()
