"""Synthetic multi-behavior logs from a known process, with its Bayes-optimal next-item HR@K.

The process, per user:

- a hidden interest cluster ``z`` (uniform over ``n_clusters``) with its own peaked preference
  over all items (``pref[z]``, Dirichlet(``pref_alpha``); ``spread`` of the mass uniform), so
  clusters overlap and one item says little about the cluster, a history says much;
- a funnel: after ``view X`` comes ``cart X`` with probability ``p_cart``, after ``cart X``
  comes ``purchase X`` with ``p_purchase``; otherwise the user views a new item;
- a new item after ``X``: with probability ``successor_prob`` one of X's ``n_successors``
  fixed successors (item-to-item transitions, Dirichlet weights), else one from ``pref[z]``.

Because the process is known, :func:`optimal_hit_rate` computes the best achievable HR@K:
the posterior over ``z`` given the history, then the exact next-item distribution. Seeded,
vectorised over users (thousands of users in milliseconds). Torch-free.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt

from nextbehavior.model.table import EventTable, LoadReport, TableBuilder
from nextbehavior.stream.events import Event

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
TYPES = ("view", "cart", "purchase")
VIEW, CART, PURCHASE = 0, 1, 2
START_MS = 1_704_067_200_000  # 2024-01-01T00:00:00Z


@dataclass(frozen=True)
class SyntheticConfig:
    n_users: int = 1500
    n_items: int = 60
    n_clusters: int = 8
    n_successors: int = 2
    successor_prob: float = 0.3
    p_cart: float = 0.3
    p_purchase: float = 0.5
    pref_alpha: float = 0.1  # Dirichlet concentration of cluster preferences (small = peaked)
    spread: float = 0.05
    min_events: int = 12
    max_events: int = 24
    seed: int = 0


@dataclass
class SyntheticLog:
    """Generated sequences (users x positions, time-ordered) and the process that made them."""

    cfg: SyntheticConfig
    items: I64  # (U, L) item index 0..n_items-1; positions >= lengths are unused
    types: I64  # (U, L) index into TYPES
    timestamps: I64  # (U, L) epoch ms, strictly increasing per user
    lengths: I64  # (U,)
    cluster: I64  # (U,) hidden interest
    pref: F64  # (C, I) item preference per cluster
    successors: F64  # (I, I) successor weights per item (rows sum to 1)

    def item_name(self, i: int) -> str:
        return f"i{i:05d}"

    def user_name(self, u: int) -> str:
        return f"u{u:06d}"

    def events(self) -> Iterator[Event]:
        """All events in global time order (per-user order kept), with deterministic ids."""
        u_idx, p_idx = np.nonzero(np.arange(self.items.shape[1])[None, :] < self.lengths[:, None])
        ts = self.timestamps[u_idx, p_idx]
        for k in np.lexsort((p_idx, u_idx, ts)):
            u, p = int(u_idx[k]), int(p_idx[k])
            yield Event(
                f"syn-{u}-{p}",
                self.user_name(u),
                self.item_name(int(self.items[u, p])),
                TYPES[int(self.types[u, p])],
                int(ts[k]),
            )

    def table(self) -> EventTable:
        """The log as an event table (what a loader would return for :meth:`write_jsonl`)."""
        builder = TableBuilder(LoadReport(source="synthetic", format="synthetic"), with_ids=True)
        for row, ev in enumerate(self.events(), start=1):
            builder.report.lines_read += 1
            builder.add(ev.user_id, ev.item_id, ev.event_type, ev.timestamp, row, ev.event_id)
        return builder.build()

    def write_jsonl(self, path: str | Path) -> Path:
        """Write the log as JSON lines in the event schema, in time order."""
        out = Path(path)
        with out.open("wb") as fh:
            for ev in self.events():
                fh.write(ev.to_json() + b"\n")
        return out


def _draw(cum: F64, r: F64) -> I64:
    """Row-wise categorical draw: cum (B, K) cumulative probabilities, r (B,) uniforms."""
    return np.minimum((cum < r[:, None]).sum(axis=1), cum.shape[1] - 1).astype(np.int64)


def generate(cfg: SyntheticConfig | None = None) -> SyntheticLog:
    cfg = cfg or SyntheticConfig()
    rng = np.random.default_rng(cfg.seed)
    n_i, n_c, n_u = cfg.n_items, cfg.n_clusters, cfg.n_users
    pref = rng.dirichlet(np.full(n_i, cfg.pref_alpha), size=n_c)  # (C, I) sparse, overlapping
    pref = (1 - cfg.spread) * pref + cfg.spread / n_i
    successors = np.zeros((n_i, n_i))
    for a in range(n_i):
        others = np.delete(np.arange(n_i), a)
        chosen = rng.choice(others, size=cfg.n_successors, replace=False)
        successors[a, chosen] = rng.dirichlet(np.ones(cfg.n_successors))
    cum_pref, cum_succ = pref.cumsum(axis=1), successors.cumsum(axis=1)

    length = cfg.max_events
    lengths = rng.integers(cfg.min_events, cfg.max_events + 1, size=n_u)
    cluster = rng.integers(0, n_c, size=n_u)
    items = np.zeros((n_u, length), dtype=np.int64)
    types = np.zeros((n_u, length), dtype=np.int64)
    items[:, 0] = _draw(cum_pref[cluster], rng.random(n_u))
    for t in range(1, length):
        prev_item, prev_type = items[:, t - 1], types[:, t - 1]
        r = rng.random(n_u)
        to_cart = (prev_type == VIEW) & (r < cfg.p_cart)
        to_buy = (prev_type == CART) & (r < cfg.p_purchase)
        from_succ = rng.random(n_u) < cfg.successor_prob
        new = np.where(
            from_succ,
            _draw(cum_succ[prev_item], rng.random(n_u)),
            _draw(cum_pref[cluster], rng.random(n_u)),
        )
        stay = to_cart | to_buy
        items[:, t] = np.where(stay, prev_item, new)
        types[:, t] = np.where(to_cart, CART, np.where(to_buy, PURCHASE, VIEW))
    gaps = rng.integers(1_000, 600_000, size=(n_u, length))
    starts = START_MS + rng.integers(0, 30 * 86_400_000, size=n_u)
    timestamps = starts[:, None] + gaps.cumsum(axis=1)
    return SyntheticLog(cfg, items, types, timestamps, lengths, cluster, pref, successors)


def next_item_distribution(log: SyntheticLog, positions: I64) -> F64:
    """Exact P(item at ``positions[u]`` | user u's earlier events) for every user: (U, I)."""
    cfg, n_u = log.cfg, log.items.shape[0]
    beta = cfg.successor_prob
    loglik = np.tile(np.log(1.0 / cfg.n_clusters), (n_u, cfg.n_clusters))  # (U, C)
    loglik += np.log(log.pref[:, log.items[:, 0]]).T
    for t in range(1, log.items.shape[1]):
        active = t < positions
        is_new = (log.types[:, t] == VIEW) & active
        a, b = log.items[:, t - 1], log.items[:, t]
        step = np.log(beta * log.successors[a, b][:, None] + (1 - beta) * log.pref[:, b].T)
        loglik += np.where(is_new[:, None], step, 0.0)
    post = np.exp(loglik - loglik.max(axis=1, keepdims=True))
    post /= post.sum(axis=1, keepdims=True)  # (U, C)
    rows = np.arange(n_u)
    last_item, last_type = log.items[rows, positions - 1], log.types[rows, positions - 1]
    mix = beta * log.successors[last_item] + (1 - beta) * post @ log.pref  # (U, I)
    stay = np.where(last_type == VIEW, cfg.p_cart, np.where(last_type == CART, cfg.p_purchase, 0))
    dist = (1 - stay)[:, None] * mix
    dist[rows, last_item] += stay
    return dist


def target_positions(log: SyntheticLog, which: Literal["valid", "test"]) -> I64:
    """Leave-one-out target positions: last event (test) or the one before (valid)."""
    return log.lengths - (1 if which == "test" else 2)


def optimal_hit_rate(
    log: SyntheticLog, which: Literal["valid", "test"] = "test", k: int = 10
) -> float:
    """HR@k of the Bayes-optimal ranker on the leave-one-out ``which`` targets."""
    pos = target_positions(log, which)
    dist = next_item_distribution(log, pos)
    target = log.items[np.arange(len(pos)), pos]
    top = np.argsort(-dist, axis=1, kind="stable")[:, :k]
    return float((top == target[:, None]).any(axis=1).mean())
