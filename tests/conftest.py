"""Shared fixtures: a tiny trained checkpoint and the real bundle exported from it.

The tiny model (50 items ``i1..i50``, behavior types view/click/cart/purchase, max_len 12) is
trained for a few seconds on one pattern: after item ``iN`` comes ``i(N+1)`` (``i50`` -> ``i1``),
and the types cycle view -> click -> cart -> purchase -> view. So a test can expect
``i6`` near the top after a history ending in ``i5``. torch is imported inside the fixtures
only, so tests that do not use them never load it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

TINY_ITEMS = ["[PAD]", *(f"i{n}" for n in range(1, 51))]
TINY_TYPES = ["[PAD]", "view", "click", "cart", "purchase"]
TINY_MAX_LEN = 12
TINY_TOP_K = 10


def next_tiny_item(item: str) -> str:
    """The item the tiny model learned to predict after ``item``."""
    n = int(item[1:])
    return f"i{n % 50 + 1}"


def build_tiny_checkpoint(out_dir: Path, *, steps: int = 100, seed: int = 0) -> Path:
    """Train the tiny model briefly and save it as a checkpoint directory."""
    import torch

    from nextbehavior.model.checkpoint import save_checkpoint

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny model on shared cores: one thread is several times faster
    try:
        model, final_loss = _train_tiny(steps, seed)
    finally:
        torch.set_num_threads(threads)
    metrics: dict[str, Any] = {"train_loss": final_loss, "steps": steps}
    data = {"source": "synthetic: i(N) -> i(N+1), types cycle", "items": 50, "event_types": 4}
    return save_checkpoint(out_dir, model, TINY_ITEMS, TINY_TYPES, metrics, data)


def _train_tiny(steps: int, seed: int) -> tuple[Any, float]:
    """The tiny BehaviorTransformer (eval mode) after ``steps`` Adam steps, and its last loss."""
    import torch

    from nextbehavior.model.config import ModelConfig
    from nextbehavior.model.transformer import BehaviorTransformer

    torch.manual_seed(seed)
    cfg = ModelConfig(
        n_items=len(TINY_ITEMS),
        n_event_types=len(TINY_TYPES),
        max_len=TINY_MAX_LEN,
        d_model=32,
        n_layers=2,
        n_heads=2,
        dropout=0.0,
    )
    model = BehaviorTransformer(cfg)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    t = TINY_MAX_LEN + 1
    losses: list[float] = []
    for _ in range(steps):
        start = torch.randint(0, 50, (64, 1))
        offset = torch.randint(0, 4, (64, 1))
        items = (start + torch.arange(t)) % 50 + 1  # (64, T+1)
        types = (offset + torch.arange(t)) % 4 + 1  # (64, T+1)
        lengths = torch.randint(1, t, (64, 1))  # left padding, like real short histories
        keep = torch.arange(t - 1) >= (t - 1 - lengths)  # (64, T)
        x_items = items[:, :-1] * keep
        x_types = types[:, :-1] * keep
        _, _, loss = model(x_items, x_types, items[:, 1:] * keep, types[:, 1:] * keep)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return model.eval(), losses[-1]


@pytest.fixture(autouse=True)
def _cli_logging_undone() -> Iterator[None]:
    """A CLI command run in-process (``stream.console.setup_logging``) puts a handler on the
    root logger that writes to the ``sys.stderr`` of that moment: pytest's capture, closed
    after the test. Take it off again, so that later tests do not log into a closed file."""
    root = logging.getLogger()
    before, level = set(root.handlers), root.level
    yield
    for handler in root.handlers[:]:
        if type(handler) is logging.StreamHandler and handler not in before:
            root.removeHandler(handler)
    root.setLevel(level)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkpoint directory of the tiny trained model (see the module docstring)."""
    return build_tiny_checkpoint(tmp_path_factory.mktemp("tiny") / "checkpoint")


@pytest.fixture(scope="session")
def tiny_bundle(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real bundle (model.onnx + manifest.json, top_k 10, with the ``history_weights`` output
    for explanations) exported from ``tiny_checkpoint``."""
    from nextbehavior.export.writer import export_bundle

    out = tmp_path_factory.mktemp("tiny") / "bundle"
    export_bundle(tiny_checkpoint, out, top_k=TINY_TOP_K, explain=True)
    return out
