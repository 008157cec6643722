"""Per-user sequences, vocabularies, train/valid/test splits and the model's training windows.

Every model input here goes through :func:`nextbehavior.stream.history.encode`, the function
the worker uses at serving time, so training and serving cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import numpy as np

from nextbehavior.model.table import I32, I64, EventTable
from nextbehavior.stream.bundle import PAD_TOKEN
from nextbehavior.stream.history import encode

SplitKind = Literal["loo", "temporal"]


@dataclass(frozen=True)
class Vocab:
    """Model vocabularies; index 0 is the padding entry ``[PAD]``."""

    items: list[str]
    event_types: list[str]

    @property
    def item_index(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.items)}

    @property
    def type_index(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.event_types)}


def build_vocab(table: EventTable) -> Vocab:
    """Items and types of ``table``, most frequent first (ties: first seen first)."""

    def ranked(codes: I32, names: list[str]) -> list[str]:
        counts = np.bincount(codes, minlength=len(names))
        order = np.lexsort((np.arange(len(names)), -counts))
        return [PAD_TOKEN, *(names[i] for i in order)]

    return Vocab(ranked(table.item, table.items), ranked(table.event_type, table.event_types))


@dataclass
class Sequences:
    """Each user's events in time order (ties keep file order), as row indices of the table."""

    table: EventTable
    order: I64  # (N,) table rows, grouped by user, each group in time order
    offsets: I64  # (U+1,) user u's rows are order[offsets[u]:offsets[u+1]]

    @property
    def n_users(self) -> int:
        return int(self.offsets.shape[0] - 1)

    def lengths(self) -> I64:
        return np.diff(self.offsets)

    def user_id(self, u: int) -> str:
        return self.table.users[int(self.table.user[self.order[self.offsets[u]]])]

    def pairs(self, u: int, start: int, end: int) -> list[tuple[str, str]]:
        """(item_id, event_type) of user ``u``'s events ``start:end`` (sequence positions)."""
        t = self.table
        rows = self.order[self.offsets[u] + start : self.offsets[u] + end]
        return [
            (t.items[i], t.event_types[k])
            for i, k in zip(t.item[rows], t.event_type[rows], strict=True)
        ]

    def event(self, u: int, pos: int) -> tuple[str, str]:
        return self.pairs(u, pos, pos + 1)[0]


def build_sequences(table: EventTable) -> Sequences:
    order = np.lexsort((table.row, table.timestamp, table.user)).astype(np.int64)
    counts = np.bincount(table.user, minlength=len(table.users))
    counts = counts[counts > 0]
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return Sequences(table, order, offsets)


@dataclass
class Split:
    """Sequence positions per user: train on ``[0, train_end)``; targets at ``valid``/``test``
    (-1: none), each predicted from all the user's earlier events."""

    seqs: Sequences
    kind: SplitKind
    train_end: I64  # (U,)
    valid: I64  # (U,)
    test: I64  # (U,)

    def targets(self, which: Literal["valid", "test"]) -> tuple[I64, I64]:
        """(users, positions) of the ``which`` targets."""
        pos = self.valid if which == "valid" else self.test
        users = np.flatnonzero(pos >= 0).astype(np.int64)
        return users, pos[users]

    def describe(self) -> dict[str, int | str]:
        return {
            "split": self.kind,
            "n_events": len(self.seqs.table),
            "n_users": self.seqs.n_users,
            "n_train_events": int(self.train_end.sum()),
            "n_valid": int((self.valid >= 0).sum()),
            "n_test": int((self.test >= 0).sum()),
        }


def leave_one_out(seqs: Sequences) -> Split:
    """Last event = test target, the one before = valid target, the rest = training.

    Users with fewer than 3 events have no targets: all their events are training."""
    n = seqs.lengths()
    has = n >= 3
    return Split(
        seqs,
        "loo",
        train_end=np.where(has, n - 2, n),
        valid=np.where(has, n - 2, -1),
        test=np.where(has, n - 1, -1),
    )


def temporal_split(seqs: Sequences, valid_frac: float = 0.1, test_frac: float = 0.1) -> Split:
    """Global time cut-offs at the (1 - valid - test) and (1 - test) quantiles of all events.

    Training: events before the first cut-off. A user's first event in the valid period is its
    valid target, its first in the test period its test target, each predicted from all the
    user's earlier events (when the user's very first event is in the period, its second one
    is the target)."""
    ts = seqs.table.timestamp
    t_valid, t_test = np.quantile(ts, [1 - valid_frac - test_frac, 1 - test_frac])
    train_end = np.zeros(seqs.n_users, dtype=np.int64)
    valid = np.full(seqs.n_users, -1, dtype=np.int64)
    test = np.full(seqs.n_users, -1, dtype=np.int64)
    for u in range(seqs.n_users):
        user_ts = ts[seqs.order[seqs.offsets[u] : seqs.offsets[u + 1]]]
        a = int(np.searchsorted(user_ts, t_valid, side="left"))
        b = int(np.searchsorted(user_ts, t_test, side="left"))
        train_end[u] = a
        if max(a, 1) < b:
            valid[u] = max(a, 1)
        if max(b, 1) < len(user_ts):
            test[u] = max(b, 1)
    return Split(seqs, "temporal", train_end, valid, test)


def make_split(seqs: Sequences, kind: SplitKind = "loo") -> Split:
    if kind == "loo":
        return leave_one_out(seqs)
    if kind == "temporal":
        return temporal_split(seqs)
    raise ValueError(f"unknown split {kind!r} (loo or temporal)")


def eval_batches(
    split: Split,
    which: Literal["valid", "test"],
    item_index: dict[str, int],
    type_index: dict[str, int],
    max_len: int,
    batch_size: int = 512,
) -> Iterator[tuple[I64, I64, I64, I64]]:
    """Encoded evaluation rows: (item_ids [B, max_len], event_types [B, max_len],
    target_items [B], target_types [B]); a target unknown to the vocabulary is 0."""
    users, positions = split.targets(which)
    seqs = split.seqs
    for lo in range(0, len(users), batch_size):
        us, ps = users[lo : lo + batch_size], positions[lo : lo + batch_size]
        hist = [
            seqs.pairs(int(u), max(0, int(p) - max_len), int(p))
            for u, p in zip(us, ps, strict=True)
        ]
        item_ids, event_types = encode(hist, item_index, type_index, max_len)
        tgt = [seqs.event(int(u), int(p)) for u, p in zip(us, ps, strict=True)]
        t_items = np.array([item_index.get(i, 0) for i, _ in tgt], dtype=np.int64)
        t_types = np.array([type_index.get(k, 0) for _, k in tgt], dtype=np.int64)
        yield item_ids, event_types, t_items, t_types


@dataclass
class Windows:
    """Training windows, GPT-style: ``items[:, :-1]`` predicts ``targets`` at every column."""

    items: I64  # (N, max_len + 1) left-padded, newest last
    types: I64  # (N, max_len + 1)
    targets: I64  # (N, max_len) next item per input column, 0 = not scored
    target_types: I64  # (N, max_len)

    def __len__(self) -> int:
        return int(self.items.shape[0])


def training_windows(
    split: Split, vocab: Vocab, max_len: int, stride: int | None = None, chunk: int = 4096
) -> Windows:
    """Windows of ``max_len + 1`` training events ending every ``stride`` events from each
    sequence's end; each target is scored once, in the window where it has the most history
    (at least ``max_len - stride`` earlier events, or all it has)."""
    stride = max_len if stride is None else max(1, min(stride, max_len))
    item_index, type_index = vocab.item_index, vocab.type_index
    width = max_len + 1
    spans: list[tuple[int, int, int, int]] = []  # (user, start, end, first scored position)
    for u, n in enumerate(split.train_end.tolist()):
        end = n
        while end >= 2:
            start = max(0, end - width)
            first = 1 if start == 0 else end - stride
            spans.append((u, start, end, first))
            if start == 0:
                break
            end -= stride
    items = np.zeros((len(spans), width), dtype=np.int64)
    types = np.zeros((len(spans), width), dtype=np.int64)
    first_col = np.zeros(len(spans), dtype=np.int64)
    for lo in range(0, len(spans), chunk):
        part = spans[lo : lo + chunk]
        hist = [split.seqs.pairs(u, s, e) for u, s, e, _ in part]
        items[lo : lo + len(part)], types[lo : lo + len(part)] = encode(
            hist, item_index, type_index, width
        )
        # target of input column c is the event at column c + 1 = position start + c + 1 - pad
        first_col[lo : lo + len(part)] = [f - s - 1 + width - (e - s) for _, s, e, f in part]
    cols = np.arange(max_len)[None, :]
    scored = (cols >= first_col[:, None]) & (items[:, :-1] != 0)
    targets = np.where(scored, items[:, 1:], 0)
    target_types = np.where(scored, types[:, 1:], 0)
    return Windows(items, types, targets, target_types)
