"""Ranking and type metrics on hand-checkable cases; the two baselines on a tiny split."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from nextbehavior.model.baselines import MarkovRanker, PopularityRanker
from nextbehavior.model.evaluate import evaluate_ranker
from nextbehavior.model.loaders import load_events
from nextbehavior.model.metrics import (
    MetricAccumulator,
    ranking_metrics,
    target_ranks,
    type_metrics,
)
from nextbehavior.model.sequences import build_sequences, build_vocab, leave_one_out


def test_ranks_and_ranking_metrics_by_hand() -> None:
    top = np.array([[5, 3, 9], [1, 2, 3], [7, 8, 4], [0, 0, 0]], dtype=np.int64)
    targets = np.array([5, 3, 6, 0], dtype=np.int64)  # rank 0, rank 2, absent, unknown (0)
    ranks = target_ranks(top, targets)
    assert ranks.tolist() == [0, 2, -1, -1]
    m = ranking_metrics(ranks, ks=(1, 3))
    assert m["hit@1"] == pytest.approx(1 / 4)
    assert m["hit@3"] == pytest.approx(2 / 4)
    assert m["ndcg@1"] == pytest.approx(1 / 4)
    assert m["ndcg@3"] == pytest.approx((1 + 1 / math.log2(4)) / 4)
    assert m["mrr@3"] == pytest.approx((1 + 1 / 3) / 4)


def test_type_metrics_macro_average_by_hand() -> None:
    y = np.array([1, 1, 2, 2, 3, 0], dtype=np.int64)  # the last row (type 0) is left out
    p = np.array([1, 2, 2, 2, 1, 3], dtype=np.int64)
    m = type_metrics(p, y)
    assert m["type_accuracy"] == pytest.approx(3 / 5)
    # label 1: P 1/2 R 1/2; label 2: P 2/3 R 1; label 3: P 0 (never predicted) R 0
    assert m["type_macro_precision"] == pytest.approx((1 / 2 + 2 / 3 + 0) / 3)
    assert m["type_macro_recall"] == pytest.approx((1 / 2 + 1 + 0) / 3)
    f1_2 = 2 * (2 / 3) / (2 / 3 + 1)
    assert m["type_macro_f1"] == pytest.approx((1 / 2 + f1_2 + 0) / 3)


def test_accumulator_never_predicts_the_padding_type() -> None:
    acc = MetricAccumulator()
    probs = np.array([[0.9, 0.05, 0.05], [0.8, 0.0, 0.2]], dtype=np.float32)
    acc.add(np.array([[1], [2]]), np.array([1, 1]), probs, np.array([1, 2]))
    out = acc.result(ks=(1,))
    assert out["n"] == 2 and out["hit@1"] == 0.5 and out["type_accuracy"] == 1.0


def test_baselines_on_a_tiny_split(tmp_path: Path) -> None:
    # a -> b always; c is the most popular item overall
    rows = ["u1\ta\t1\t1", "u1\tb\t1\t2", "u1\tc\t1\t3", "u1\ta\t1\t4", "u1\tb\t1\t5"]
    rows += ["u2\tc\t1\t1", "u2\tc\t1\t2", "u2\ta\t1\t3", "u2\tb\t1\t4", "u2\ta\t1\t5"]
    rows += ["u2\tb\t1\t6", "u2\tc\t1\t7"]
    path = tmp_path / "u.data"
    path.write_text("\n".join(rows) + "\n")
    table = load_events(path, progress=False)
    split = leave_one_out(build_sequences(table))
    vocab = build_vocab(table)
    pop = PopularityRanker(split, vocab.item_index, vocab.type_index, k=20)
    assert pop.k == 3  # never more than the real items; padding never ranked
    top, probs = pop.rank(np.zeros((2, 1), dtype=np.int64), np.zeros((2, 1), dtype=np.int64))
    assert probs is None and top.shape == (2, 3) and 0 not in top
    # training events: u1 a b c; u2 c c a b a -> a:3, c:3, b:2; ties by vocabulary order
    assert vocab.items == ["[PAD]", "a", "b", "c"]
    assert [vocab.items[i] for i in top[0]] == ["a", "c", "b"]
    markov = MarkovRanker(split, vocab.item_index, vocab.type_index, k=20)
    a = vocab.item_index["a"]
    top, _ = markov.rank(np.array([[0, a]]), np.array([[0, 1]]))
    assert vocab.items[top[0, 0]] == "b"  # a -> b twice in training
    # valid: u1 a b c -> a (c->a, c->c tie: a more popular); u2 c c a b a -> b: both at rank 0
    assert evaluate_ranker(markov, split, "valid", ks=(1,))["hit@1"] == 1.0
    # test: u1 ... a -> b at rank 0; u2 ... b -> c, after a (b->a, b->c tie): rank 1
    m = evaluate_ranker(markov, split, "test", ks=(1, 3))
    assert (m["n"], m["hit@1"], m["hit@3"]) == (2, 0.5, 1.0)
    assert m["mrr@3"] == pytest.approx((1 + 1 / 2) / 2)
