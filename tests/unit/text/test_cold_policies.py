"""The policy arithmetic of ``bench/cold_policies.py`` (the cold-item trade-off table)."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path
from typing import Any

import numpy as np

BENCH = Path(__file__).resolve().parents[3] / "bench" / "cold_policies.py"
MISS = 10**6


def _bench() -> Any:
    spec = importlib.util.spec_from_file_location("cold_policies", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _world(cold: list[tuple[float, float]] | None = None) -> Any:
    """Items 1..11 warm (item i has logit 20 - i), 12 and 13 text-only (``cold`` logits per
    user, default 5 and 4); four users whose targets are item 10 (warm rank 10), item 12 (the
    best cold one), item 13 (the second) and item 3 (warm rank 3)."""
    logits = np.full((4, 14), -np.inf, dtype=np.float32)
    logits[:, 1:12] = 20.0 - np.arange(1, 12)
    logits[:, 12:] = np.array(cold or [(5.0, 4.0)] * 4)
    warm = np.zeros(14, dtype=np.bool_)
    warm[1:12] = True
    pool = ~warm
    pool[0] = False
    y = np.array([10, 12, 13, 3])
    return _bench().World(logits, y, warm, pool, pool[y])


def g(rank: int) -> float:
    return 1 / math.log2(rank + 2)


def test_reserved_slot_inserts_the_best_cold_item_and_pushes_warm_items_down() -> None:
    w = _world()
    every = np.ones(4, dtype=np.bool_)
    ranks, hits = w.slot(10, ~every)
    assert ranks.tolist() == [9, MISS, MISS, 2] and not hits.any()  # never: the warm ranking
    ranks, hits = w.slot(10, every)  # the 10th warm item drops out for the best cold one
    assert ranks.tolist() == [10, 9, MISS, 2] and hits.tolist() == [False, True, False, False]
    ranks, _ = w.slot(1, every)  # first place: every warm item moves down one
    assert ranks.tolist() == [10, 0, MISS, 3]
    s = w.score(*w.slot(10, every))
    assert math.isclose(s["ndcg@10"], (g(9) + g(2)) / 4)
    assert math.isclose(s["warm_ndcg@10"], g(2) / 2) and s["cold_hit@10"] == 0.5


def test_last_m_slots_and_offset() -> None:
    w = _world()
    ranks, hits = w.last(2)  # ranks 9 and 10 for the two best cold items
    assert ranks.tolist() == [MISS, 8, 9, 2] and hits.tolist() == [False, True, True, False]
    assert w.offset(100.0)[0].tolist() == [11, 0, 1, 4]  # text-only rows above every warm one
    assert w.offset(-100.0)[0].tolist() == [9, 11, 12, 2]


def test_gate_fires_where_it_converts_a_cold_target_and_never_is_a_candidate() -> None:
    bench = _bench()
    # user 1's best cold item is strong (margin 12 - 10 = 2), the others' weak (margin -5)
    w = _world([(5.0, 4.0), (12.0, 4.0), (5.0, 4.0), (5.0, 4.0)])
    gate = bench.choose_gate(w)
    margin = w.margin(10)
    assert margin[1] >= gate > margin[0]  # fires for user 1 only: a cold hit, no warm loss
    assert w.score(*w.slot(10, margin >= gate))["cold_hit@10"] == 0.5
    # every firing costs user 0's warm hit (more than 2% of warm NDCG@10): never serve
    assert bench.choose_gate(_world([(12.0, 4.0)] + [(5.0, 4.0)] * 3)) == math.inf


def test_last_readable_is_the_newest_history_item_the_mask_allows(tmp_path: Path) -> None:
    from nextbehavior.model.loaders import load_events
    from nextbehavior.model.sequences import build_sequences, leave_one_out

    # a: w1 w2 c1 | valid w3 | test w1; b: c1 c1 | valid w2 | test w3 (only a cold item before)
    log = [("a", "w1"), ("a", "w2"), ("a", "c1"), ("a", "w3"), ("a", "w1")]
    log += [("b", "c1"), ("b", "c1"), ("b", "w2"), ("b", "w3")]
    path = tmp_path / "u.data"
    path.write_text("".join(f"{u}\t{i}\t1\t{t}\n" for t, (u, i) in enumerate(log)))
    split = leave_one_out(build_sequences(load_events(path, progress=False)))
    items = ["[PAD]", "w1", "w2", "w3", "c1"]
    readable = np.array([False, True, True, True, False])
    last = _bench().last_readable(split, "valid", items, readable, 8)
    assert last.tolist() == [2, 0]  # a: c1 is skipped, w2 is the newest readable; b: none
    assert _bench().last_readable(split, "test", items, readable, 8).tolist() == [3, 2]


def test_content_only_scores_text_cosine_and_popularity() -> None:
    text = np.array([[0.0, 0.0], [2.0, 0.0], [0.0, 3.0], [1.0, 1.0]])
    cosine, popular = _bench().content_only(text, np.array([1, 2]), np.array([0.0, 5, 1, 7]))
    assert np.allclose(cosine[0], [0, 1, 0, 2**-0.5]) and np.allclose(cosine[1], [0, 0, 1, 2**-0.5])
    assert popular.shape == (2, 4) and popular[1].tolist() == [0, 5, 1, 7]
