"""Training loop: seeded runs are identical, the schedule, early stopping, checkpoint round trip."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from nextbehavior.model.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from nextbehavior.model.config import ModelConfig
from nextbehavior.model.sequences import build_sequences, build_vocab, leave_one_out
from nextbehavior.model.synthetic import SyntheticConfig, generate
from nextbehavior.model.train import TrainConfig, fit, lr_factor, set_threads


@pytest.fixture(scope="module")
def small() -> tuple:  # type: ignore[type-arg]
    table = generate(SyntheticConfig(n_users=80, n_items=20, min_events=5, max_events=9)).table()
    vocab = build_vocab(table)
    cfg = ModelConfig(
        n_items=len(vocab.items), n_event_types=len(vocab.event_types), max_len=8, d_model=16
    )
    return leave_one_out(build_sequences(table)), vocab, cfg


def test_same_seed_same_model(small: tuple) -> None:  # type: ignore[type-arg]
    split, vocab, cfg = small
    set_threads(1)
    tc = TrainConfig(epochs=2, batch_size=16, progress=False, seed=7)
    a, b = fit(split, vocab, cfg, tc), fit(split, vocab, cfg, tc)
    for (name, x), (_, y) in zip(
        a.model.state_dict().items(), b.model.state_dict().items(), strict=True
    ):
        assert torch.equal(x, y), name
    assert [h["loss"] for h in a.history] == [h["loss"] for h in b.history]
    c = fit(split, vocab, cfg, TrainConfig(epochs=2, batch_size=16, progress=False, seed=8))
    assert not torch.equal(a.model.item_emb.weight, c.model.item_emb.weight)


def test_early_stopping_keeps_the_best_epoch(small: tuple) -> None:  # type: ignore[type-arg]
    split, vocab, cfg = small
    set_threads(1)
    tc = TrainConfig(epochs=30, batch_size=16, lr=0.0, warmup_steps=1, patience=2, progress=False)
    result = fit(split, vocab, cfg, tc)  # lr 0: nothing improves after epoch 1
    assert result.best_epoch == 1 and len(result.history) == 3
    assert not result.model.training


def test_warmup_then_cosine() -> None:
    assert lr_factor(0, 10, 100, 0.1) == pytest.approx(0.1)
    assert lr_factor(9, 10, 100, 0.1) == pytest.approx(1.0)
    assert lr_factor(55, 10, 100, 0.1) == pytest.approx(0.55)
    assert lr_factor(100, 10, 100, 0.1) == pytest.approx(0.1)


def test_checkpoint_round_trip(small: tuple, tmp_path: Path) -> None:  # type: ignore[type-arg]
    _, vocab, cfg = small
    from nextbehavior.model.transformer import BehaviorTransformer

    model = BehaviorTransformer(cfg).eval()
    save_checkpoint(tmp_path, model, vocab.items, vocab.event_types, {"m": 1}, {"d": 2})
    ckpt = load_checkpoint(tmp_path)
    assert ckpt.config == cfg and ckpt.items == vocab.items and not ckpt.model.training
    assert (ckpt.metrics, ckpt.data) == ({"m": 1}, {"d": 2})
    x = torch.tensor([[0, 1, 2]])
    torch.testing.assert_close(ckpt.model(x, x.clamp(max=1))[0], model(x, x.clamp(max=1))[0])
    assert not (tmp_path / "model.pt").exists()  # weights are safetensors, not a pickle
    (tmp_path / "model.safetensors").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot be loaded"):
        load_checkpoint(tmp_path)
    (tmp_path / "model.safetensors").unlink()
    (tmp_path / "model.pt").write_bytes(b"an old pickled checkpoint")  # refused, never read
    with pytest.raises(CheckpointError, match=r"model.pt \(a pickle"):
        load_checkpoint(tmp_path)
