"""Sequences, vocabularies, splits and training windows (numpy only, no torch)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nextbehavior.model.loaders import load_events
from nextbehavior.model.sequences import (
    build_sequences,
    build_vocab,
    eval_batches,
    leave_one_out,
    temporal_split,
    training_windows,
)
from nextbehavior.model.table import EventTable
from nextbehavior.stream.history import encode


def table_from(rows: list[tuple[str, str, int]], tmp_path: Path) -> EventTable:
    """(user, item, timestamp seconds) rows, in this file order, as a u.data log."""
    path = tmp_path / "u.data"
    path.write_text("".join(f"{u}\t{i}\t1\t{t}\n" for u, i, t in rows))
    return load_events(path, progress=False)


def test_time_order_with_ties_in_file_order(tmp_path: Path) -> None:
    table = table_from(
        [("a", "x3", 30), ("b", "y1", 5), ("a", "x1", 10), ("a", "x2", 10), ("a", "x0", 1)],
        tmp_path,
    )
    seqs = build_sequences(table)
    by_user = {seqs.user_id(u): seqs.pairs(u, 0, int(n)) for u, n in enumerate(seqs.lengths())}
    assert [i for i, _ in by_user["a"]] == ["x0", "x1", "x2", "x3"]
    assert [i for i, _ in by_user["b"]] == ["y1"]


def test_vocab_has_padding_first_and_frequency_order(tmp_path: Path) -> None:
    table = table_from([("a", "rare", 1), ("a", "hot", 2), ("b", "hot", 3)], tmp_path)
    vocab = build_vocab(table)
    assert vocab.items == ["[PAD]", "hot", "rare"]
    assert vocab.event_types == ["[PAD]", "interaction"]


def test_leave_one_out_never_trains_on_targets(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    rows = [(f"u{u}", f"i{rng.integers(0, 30)}", t) for u in range(6) for t in range(2 + u)]
    table = table_from(rows, tmp_path)
    seqs = build_sequences(table)
    split = leave_one_out(seqs)
    vocab = build_vocab(table)
    for u, n in enumerate(seqs.lengths().tolist()):
        if n < 3:  # too short for targets: everything is training
            assert split.valid[u] == split.test[u] == -1 and split.train_end[u] == n
        else:
            assert (split.train_end[u], split.valid[u], split.test[u]) == (n - 2, n - 2, n - 1)
    # the windows hold exactly the training events of each user (test/valid targets never)
    windows = training_windows(split, vocab, max_len=3, stride=1)
    scored = int((windows.targets != 0).sum())
    assert scored == int(np.maximum(split.train_end - 1, 0).sum())
    train_rows = {
        (seqs.user_id(u), p) for u in range(seqs.n_users) for p in range(split.train_end[u])
    }
    test_rows = {(seqs.user_id(u), int(split.test[u])) for u in range(seqs.n_users)}
    assert not train_rows & test_rows


def test_windows_score_each_target_once_with_most_history(tmp_path: Path) -> None:
    items = [f"i{k}" for k in range(12)]
    table = table_from([("a", i, t) for t, i in enumerate(items)], tmp_path)
    split = leave_one_out(build_sequences(table))  # training: i0..i9
    vocab = build_vocab(table)
    w = training_windows(split, vocab, max_len=4, stride=2)
    idx = vocab.item_index
    seen: list[tuple[str, list[str]]] = []
    for row in range(len(w)):
        for col in np.flatnonzero(w.targets[row]):
            hist = [vocab.items[j] for j in w.items[row, : col + 1] if j]
            seen.append((vocab.items[w.targets[row, col]], hist))
            assert w.targets[row, col] == w.items[row, col + 1]
    targets = sorted(t for t, _ in seen)
    assert targets == sorted(items[1:10])  # every training target exactly once
    for target, hist in seen:
        k = int(target[1:])
        assert hist == items[max(0, k - len(hist)) : k]  # the events just before it
        assert len(hist) >= min(k, 4 - 2)  # at least max_len - stride of history
    # the inputs are exactly what the serving encode gives
    first = w.items[0]
    real = [vocab.items[j] for j in first if j]
    enc, _ = encode([[(i, "interaction") for i in real]], idx, vocab.type_index, 5)
    assert (enc[0] == first).all()


def test_eval_batches_encode_history_before_target(tmp_path: Path) -> None:
    table = table_from([("a", f"i{k}", k) for k in range(6)], tmp_path)
    split = leave_one_out(build_sequences(table))
    vocab = build_vocab(table)
    idx = vocab.item_index
    ((items, _, t_items, t_types),) = eval_batches(split, "test", idx, vocab.type_index, max_len=3)
    assert [vocab.items[j] for j in items[0]] == ["i2", "i3", "i4"]
    assert vocab.items[t_items[0]] == "i5" and t_types[0] == 1
    ((items, _, t_items, _),) = eval_batches(split, "valid", idx, vocab.type_index, max_len=8)
    assert [vocab.items[j] for j in items[0] if j] == ["i0", "i1", "i2", "i3"]
    assert vocab.items[t_items[0]] == "i4"
    # an item unknown to the model's vocabulary is a target that can never be hit
    (batch,) = eval_batches(split, "test", {"[PAD]": 0, "i4": 1}, vocab.type_index, max_len=3)
    assert batch[2][0] == 0 and list(batch[0][0]) == [0, 0, 1]


def test_temporal_split_uses_global_cutoffs(tmp_path: Path) -> None:
    rows = [("a", f"a{t}", t) for t in range(10)] + [("b", f"b{t}", t) for t in range(0, 10, 3)]
    seqs = build_sequences(table_from(rows, tmp_path))
    split = temporal_split(seqs, valid_frac=0.2, test_frac=0.2)
    ts = seqs.table.timestamp
    t_valid, t_test = np.quantile(ts, [0.6, 0.8])
    for u in range(seqs.n_users):
        user_ts = ts[seqs.order[seqs.offsets[u] : seqs.offsets[u + 1]]]
        assert (user_ts[: split.train_end[u]] < t_valid).all()
        first_test = int(np.searchsorted(user_ts, t_test))
        first_valid = int(np.searchsorted(user_ts, t_valid))
        if split.test[u] >= 0:
            assert user_ts[split.test[u]] >= t_test
            assert split.test[u] == max(first_test, 1)
        else:
            assert max(first_test, 1) >= len(user_ts)
        if split.valid[u] >= 0:
            assert t_valid <= user_ts[split.valid[u]] < t_test
            assert split.valid[u] == max(first_valid, 1)
    # a user whose whole log lies in the test period: its second event is the target
    late = build_sequences(table_from([("a", "x", 1), ("c", "y", 50), ("c", "z", 51)], tmp_path))
    late_split = temporal_split(late, valid_frac=0.2, test_frac=0.4)
    assert late_split.test.tolist() == [-1, 1] and late_split.train_end.tolist() == [1, 0]
