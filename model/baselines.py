"""Two reference rankers fitted on the training part of a split: most-popular and first-order
Markov (item-to-item transitions, backed off to popularity). Numpy only."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from nextbehavior.model.metrics import F32, I64
from nextbehavior.model.sequences import Split


def _train_items(split: Split, item_index: Mapping[str, int]) -> tuple[I64, I64]:
    """Vocabulary ids of all training events in sequence order, and their user positions."""
    seqs = split.seqs
    code_to_id = np.array([item_index.get(name, 0) for name in seqs.table.items], dtype=np.int64)
    starts = seqs.offsets[:-1]
    n_train = split.train_end
    users = np.repeat(np.arange(seqs.n_users), n_train)
    pos = np.arange(int(n_train.sum())) - np.repeat(np.cumsum(n_train) - n_train, n_train)
    rows = seqs.order[np.repeat(starts, n_train) + pos]
    return code_to_id[seqs.table.item[rows]], users


class PopularityRanker:
    """The same top-k for everyone: the most frequent training items."""

    max_len = 1

    def __init__(
        self, split: Split, item_index: Mapping[str, int], type_index: Mapping[str, int], k: int
    ) -> None:
        self.item_index, self.type_index = item_index, type_index
        self.k = min(k, len(item_index) - 1)
        ids, _ = _train_items(split, item_index)
        counts = np.bincount(ids, minlength=len(item_index)).astype(np.int64)
        order = np.lexsort((np.arange(len(counts)), -counts)).astype(np.int64)
        self.popular = order[order != 0]  # (V-1,) padding is never ranked

    def rank(self, item_ids: I64, event_types: I64) -> tuple[I64, F32 | None]:
        top = self.popular[: self.k]
        return np.broadcast_to(top, (item_ids.shape[0], len(top))).copy(), None


class MarkovRanker(PopularityRanker):
    """Most frequent training successors of the newest history item, then the most popular."""

    def __init__(
        self, split: Split, item_index: Mapping[str, int], type_index: Mapping[str, int], k: int
    ) -> None:
        super().__init__(split, item_index, type_index, k)
        ids, users = _train_items(split, item_index)
        same = (users[1:] == users[:-1]) & (ids[1:] != 0) & (ids[:-1] != 0)
        a, b = ids[:-1][same], ids[1:][same]
        n = len(item_index)
        pairs, counts = np.unique(a * n + b, return_counts=True)
        a, b = pairs // n, pairs % n
        pop_rank = np.full(n, n, dtype=np.int64)
        pop_rank[self.popular] = np.arange(n - 1)
        order = np.lexsort((pop_rank[b], -counts, a))  # by source, count desc, popularity
        a, b = a[order], b[order]
        nth = np.arange(len(a)) - np.searchsorted(a, a, side="left")
        keep = nth < self.k
        a, b = a[keep], b[keep]
        self.succ_ptr = np.searchsorted(a, np.arange(n + 1), side="left").astype(np.int64)
        self.succ = b.astype(np.int64)

    def rank(self, item_ids: I64, event_types: I64) -> tuple[I64, F32 | None]:
        out = np.empty((item_ids.shape[0], self.k), dtype=np.int64)
        head = self.popular[: 2 * self.k]
        for row, last in enumerate(item_ids[:, -1].tolist()):
            succ = self.succ[self.succ_ptr[last] : self.succ_ptr[last + 1]] if last else head[:0]
            fill = head[~np.isin(head, succ)][: self.k - len(succ)]
            out[row] = np.concatenate([succ, fill])
        return out, None
