"""The synthetic process: seeded, exact optimum; a briefly trained model gets close to it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from nextbehavior.model.evaluate import baseline_report
from nextbehavior.model.loaders import load_events
from nextbehavior.model.sequences import build_sequences, build_vocab, leave_one_out
from nextbehavior.model.synthetic import (
    SyntheticConfig,
    generate,
    next_item_distribution,
    optimal_hit_rate,
    target_positions,
)


def test_generation_is_seeded_and_well_formed(tmp_path: Path) -> None:
    cfg = SyntheticConfig(n_users=50, n_items=20, seed=3)
    a, b = generate(cfg), generate(cfg)
    assert (a.items == b.items).all() and (a.timestamps == b.timestamps).all()
    assert not (generate(SyntheticConfig(n_users=50, n_items=20, seed=4)).items == a.items).all()
    assert (np.diff(a.timestamps, axis=1) > 0).all()  # strictly increasing per user
    path = a.write_jsonl(tmp_path / "syn.jsonl")
    table = load_events(path, progress=False)
    assert len(table) == int(a.lengths.sum()) and table.report.rows_rejected == 0
    assert set(table.event_types) == {"view", "cart", "purchase"}
    # funnel: a cart always follows a view of the same item, a purchase a cart
    for u in range(50):
        for p in range(1, int(a.lengths[u])):
            if a.types[u, p] > 0:
                assert a.items[u, p] == a.items[u, p - 1]
                assert a.types[u, p - 1] == a.types[u, p] - 1


def test_optimum_is_a_distribution_and_beats_guessing() -> None:
    log = generate(SyntheticConfig(n_users=300, seed=1))
    dist = next_item_distribution(log, target_positions(log, "test"))
    np.testing.assert_allclose(dist.sum(axis=1), 1.0, atol=1e-9)
    opt = optimal_hit_rate(log, "test", k=10)
    assert 10 / log.cfg.n_items < opt <= 1.0
    assert optimal_hit_rate(log, "test", k=log.cfg.n_items) == 1.0


@pytest.mark.slow
def test_trained_model_nears_the_optimum_and_beats_baselines() -> None:
    from nextbehavior.model.config import ModelConfig
    from nextbehavior.model.evaluate import evaluate_ranker
    from nextbehavior.model.ranker import TorchRanker
    from nextbehavior.model.train import TrainConfig, fit, set_threads

    log = generate(SyntheticConfig(seed=0))
    optimum = optimal_hit_rate(log, "test", k=10)
    table = log.table()
    split = leave_one_out(build_sequences(table))
    vocab = build_vocab(table)
    set_threads(1)  # a small model on shared cores: one thread is fastest
    cfg = ModelConfig(
        n_items=len(vocab.items), n_event_types=len(vocab.event_types),
        max_len=24, d_model=32, dropout=0.1, repeat_bias=True,
    )  # fmt: skip
    tc = TrainConfig(
        epochs=10, lr=5e-3, batch_size=64, weight_decay=0.01, warmup_steps=20, progress=False
    )
    result = fit(split, vocab, cfg, tc)
    ranker = TorchRanker(result.model, vocab.items, vocab.event_types)
    model_hr = evaluate_ranker(ranker, split, "test")["hit@10"]
    base = baseline_report(split, vocab.item_index, vocab.type_index)
    # measured 0.92-0.94 of the optimum for seeds 0-2 (Markov ~0.86, popularity ~0.43)
    assert model_hr >= 0.9 * optimum, (model_hr, optimum)
    assert model_hr > base["markov"]["test"]["hit@10"]
    assert model_hr > base["most_popular"]["test"]["hit@10"]
