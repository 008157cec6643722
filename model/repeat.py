"""A learned repeat bias: every item already in the history gets an additive logit, learned per
behavior type of that history event and per recency (how many events ago).

Behavior logs differ in how much people come back to what they saw: a viewed item is often
carted next, a rated movie is never rated again. The model learns which from the data (the
bias can be positive or negative); nothing is masked. Like the attention, it is causal: at
position t only events 0..t count, and a padded event (id 0) never does.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F  # noqa: N812
from torch import Tensor, nn

from nextbehavior.model.config import ModelConfig


class ScalarTable(nn.Module):
    """A learned scalar per index: (...) ids -> (..., 1), like a width-1 embedding. Starts at
    zero (a plain model) and, not being an ``nn.Embedding``, keeps that through the
    Transformer's weight init."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(n, 1))

    def forward(self, idx: Tensor) -> Tensor:
        return F.embedding(idx, self.weight)  # (..., 1)


class RepeatBias(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.by_type = ScalarTable(cfg.n_event_types)  # index 0: padding or an unknown type
        self.by_recency = ScalarTable(cfg.max_len)
        self.max_len = cfg.max_len

    def weights(self, item_ids: Tensor, event_types: Tensor) -> Tensor:
        """(B, T, T): bias that key event s adds to its item at query position t (0 if s > t)."""
        t = item_ids.shape[1]
        ar = torch.arange(t, device=item_ids.device)
        age = ar[:, None] - ar[None, :]  # (T, T) query - key
        causal = age >= 0
        recency = self.by_recency(age.clamp(0, self.max_len - 1)).squeeze(-1)  # (T, T)
        per_type = self.by_type(event_types).squeeze(-1)  # (B, T)
        w = per_type[:, None, :] + recency[None]  # (B, T, T)
        return w * (causal[None] & (item_ids != 0)[:, None, :])  # (B, T, T)

    def last(self, item_ids: Tensor, event_types: Tensor, n_items: int) -> Tensor:
        """(B, n_items) bias at the newest position."""
        w = self.weights(item_ids, event_types)[:, -1]  # (B, T)
        out = torch.zeros(item_ids.shape[0], n_items, dtype=w.dtype, device=w.device)
        return out.scatter_add(1, item_ids, w)  # (B, V)

    def rows(self, item_ids: Tensor, event_types: Tensor, where: Tensor, n_items: int) -> Tensor:
        """(N, n_items) bias at the N positions where ``where`` (B, T) is True, row-major."""
        b, t = item_ids.shape
        w = self.weights(item_ids, event_types)[where]  # (N, T)
        idx = item_ids[:, None, :].expand(b, t, t)[where]  # (N, T)
        out = torch.zeros(w.shape[0], n_items, dtype=w.dtype, device=w.device)
        return out.scatter_add(1, idx, w)  # (N, V)

    def at(self, item_ids: Tensor, event_types: Tensor, candidates: Tensor) -> Tensor:
        """Bias of ``candidates`` only: (B, T, K) for (B, T, K) or (K,) candidate ids."""
        w = self.weights(item_ids, event_types)  # (B, T, T)
        if candidates.dim() == 1:
            same = (item_ids[:, :, None] == candidates[None, None, :]).to(w.dtype)  # (B, T, K)
            return w @ same  # (B, T, K)
        same = (item_ids[:, None, :, None] == candidates[:, :, None, :]).to(w.dtype)  # (B,T,T,K)
        return (w[..., None] * same).sum(dim=2)  # (B, T, K)
