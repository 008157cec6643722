"""The scoring shim: what the served ONNX graph computes, on top of a trained model.

``ScoringShim(model, top_k)`` maps ``(item_ids, event_types)`` int64 (B, T), left-padded, newest
last, to the bundle's outputs (see ``nextbehavior.stream.bundle``):

- ``top_item_ids`` int64 (B, k): the k most likely next items, padding (index 0) never among them;
- ``top_item_scores`` float32 (B, k): their softmax probabilities over the whole catalogue,
  descending (``exp(logit - logsumexp(logits))``, computed for the k winners only);
- ``event_type_probs`` float32 (B, n_types): next behavior type, padding masked (prob 0);
- ``history_weights`` float32 (B, T), only with ``explain=True``: how much each history event
  drove the prediction (norm-weighted attention rollout, :mod:`nextbehavior.model.attribution`;
  0 on padding, rows sum to 1); the worker's ``because`` explanations read it.

Only the last position is scored, and in the last block only that position's query, attention
and feed-forward are computed: keys and values still come from every position, so the result is
exactly the model's (ONNX.md measured 1.2-1.7x faster in ONNX Runtime). The embedding and the
earlier blocks reuse the model's own modules; the parity check (``export.parity``) compares the
exported graph with ``BehaviorTransformer.forward`` itself, so any drift from it is caught.

For large catalogues, ``chunk`` switches to an exact two-stage top-k: the max of every chunk of
``chunk`` logits, the k best chunks, then the top k of those ``k * chunk`` candidates. The k best
items always lie in the k chunks with the largest maxima, so the answer is the same as one TopK.
"""

from __future__ import annotations

import math
from typing import cast

import torch
import torch.nn.functional as F  # noqa: N812
from torch import Tensor, nn

from nextbehavior.model.attribution import mixing, own_column, traced_block, value_norms
from nextbehavior.model.repeat import RepeatBias
from nextbehavior.model.transformer import (
    BehaviorTransformer,
    Block,
    SelfAttention,
    attention_mask,
)

TWO_STAGE_MIN_ITEMS = 20_000
"""Catalogues at least this large use the two-stage top-k by default (see ``default_chunk``)."""


def default_chunk(n_items: int, top_k: int) -> int | None:
    """Chunk size for the two-stage top-k, or None for one plain TopK (small catalogues).

    ``sqrt(V / k)`` rounded to a power of two, as measured in ONNX.md; never fewer than k chunks.
    """
    if n_items < TWO_STAGE_MIN_ITEMS:
        return None
    chunk = 2 ** round(math.log2(math.sqrt(n_items / top_k)))
    while chunk > 1 and math.ceil(n_items / chunk) < top_k:
        chunk //= 2
    return int(max(chunk, 1))


def two_stage_topk(scores: Tensor, k: int, chunk: int) -> tuple[Tensor, Tensor]:
    """Exact top-k of ``scores`` (B, V) via per-chunk maxima; returns (values, indices), (B, k)."""
    v = scores.shape[1]
    n_chunks = math.ceil(v / chunk)
    if n_chunks < k:
        raise ValueError(f"two-stage top-k needs at least k={k} chunks, got {n_chunks}")
    padded = F.pad(scores, (0, n_chunks * chunk - v), value=float("-inf"))  # (B, n*C)
    blocks = padded.reshape(-1, n_chunks, chunk)  # (B, n, C)
    _, best = blocks.amax(dim=2).topk(k, dim=1)  # (B, k) chunk indices
    cand = blocks.gather(1, best.unsqueeze(2).expand(-1, -1, chunk))  # (B, k, C)
    values, flat = cand.reshape(-1, k * chunk).topk(k, dim=1)  # (B, k)
    ids = best.gather(1, flat // chunk) * chunk + flat % chunk  # (B, k)
    return values, ids


def last_block(model: BehaviorTransformer) -> tuple[Block, SelfAttention]:
    """The model's last Transformer block and its attention module."""
    block = cast(Block, model.blocks[-1])
    return block, block.attn


def repeat_bias_last(rep: RepeatBias, item_ids: Tensor, event_types: Tensor) -> Tensor:
    """(B, T) bias each history event adds to its item's logit at the newest position.

    ``RepeatBias.last`` for the last row only (the age of event s is T - 1 - s), as (B, T)
    values to scatter-add onto the logits, not a (B, V) tensor."""
    t = item_ids.shape[1]
    age = (t - 1 - torch.arange(t, device=item_ids.device)).clamp(max=rep.max_len - 1)  # (T,)
    w = rep.by_type(event_types).squeeze(-1) + rep.by_recency(age).squeeze(-1)[None]  # (B, T)
    return w * (item_ids != 0)  # (B, T)


class ScoringShim(nn.Module):
    """Wraps a trained :class:`BehaviorTransformer` (eval mode, text table baked) into the graph."""

    def __init__(
        self,
        model: BehaviorTransformer,
        top_k: int,
        chunk: int | None = None,
        explain: bool = False,
    ) -> None:
        super().__init__()
        n_items = model.cfg.n_items
        if not 1 <= top_k < n_items:
            raise ValueError(f"top_k must be in [1, {n_items - 1}], got {top_k}")
        self.model = model.baked().eval()  # text-aware items: the fused table, computed once
        self.top_k = top_k
        self.chunk = chunk
        self.explain = explain

    def forward(self, item_ids: Tensor, event_types: Tensor) -> tuple[Tensor, ...]:
        m = self.model
        # text-aware: items without an ID row (text-only) are dropped from the histories
        item_ids, event_types, order = m.read(item_ids, event_types)  # (B, T) x2, (B, T) | None
        h, weights = self._last_hidden(item_ids, event_types)  # (B, d), (B, T) | None
        # = m.item_logits(h); F.linear exports as one Gemm (transB) over the stored table, where
        # `h @ W.T` adds a Transpose that ONNX Runtime folds into a second copy of the table.
        # A baked text model's item_bias (the cold rows' calibrated offset) is the Gemm's C.
        logits = F.linear(h, m.item_table(), m.logit_bias()).float()  # (B, V)
        if m.repeat is not None:  # learned bias for items already in the history
            bias = repeat_bias_last(m.repeat, item_ids, event_types).to(logits.dtype)  # (B, T)
            logits = logits.scatter_add(1, item_ids, bias)  # (B, V)
        logits[:, 0] = float("-inf")  # padding is never a recommendation
        if self.chunk is None:
            top, ids = logits.topk(self.top_k, dim=1)  # (B, k)
        else:
            top, ids = two_stage_topk(logits, self.top_k, self.chunk)  # (B, k)
        scores = torch.exp(top - torch.logsumexp(logits, dim=1, keepdim=True))  # (B, k)
        type_logits = m.type_head(h).float()  # (B, n_types)
        type_logits[:, 0] = float("-inf")
        type_probs = torch.softmax(type_logits, dim=1)  # (B, n_types)
        if weights is None:
            return ids, scores, type_probs
        weights = weights.float()  # fp16 graphs: renormalize in fp32, so rows sum to 1
        if order is not None:  # back to the input columns (a dropped event weighs 0)
            weights = torch.zeros_like(weights).scatter(1, order, weights)
        return ids, scores, type_probs, weights / weights.sum(dim=1, keepdim=True)

    def _last_hidden(self, item_ids: Tensor, event_types: Tensor) -> tuple[Tensor, Tensor | None]:
        """Final state of the newest position (B, d) and, with ``explain``, its history weights
        (B, T): the newest row of the last block's mixing, rolled out through the earlier ones
        (:func:`nextbehavior.model.attribution.history_weights` on the full path)."""
        m = self.model
        t = item_ids.shape[1]
        # Mirrors BehaviorTransformer.hidden (eval mode: dropout is the identity).
        pos = torch.arange(t - 1, -1, -1, device=item_ids.device).clamp(max=m.cfg.max_len - 1)
        x = m.item_emb(item_ids) * math.sqrt(m.cfg.d_model)  # (B, T, d)
        x = x + m.type_emb(event_types) + m.pos_emb(pos)[None]  # (B, T, d)
        x = x * (item_ids != 0).unsqueeze(-1)
        mixes: list[Tensor] = []  # (B, T, T) per earlier block, with explain
        if len(m.blocks) > 1:
            mask = attention_mask(item_ids)  # (B, 1, T, T)
            for block in list(m.blocks)[:-1]:
                if self.explain:
                    x, mix = traced_block(cast(Block, block), x, mask)  # (B, T, d), (B, T, T)
                    mixes.append(mix)
                else:
                    x = block(x, mask)  # (B, T, d)
        last, attn = last_block(m)
        b, _, d = x.shape
        nh = attn.n_heads
        q, k, v = attn.qkv(last.ln1(x)).split(d, dim=2)  # 3 x (B, T, d)
        q = q[:, -1:].reshape(b, 1, nh, d // nh).transpose(1, 2)  # (B, h, 1, d/h)
        k = k.reshape(b, t, nh, d // nh).transpose(1, 2)  # (B, h, T, d/h)
        v = v.reshape(b, t, nh, d // nh).transpose(1, 2)  # (B, h, T, d/h)
        # The newest position sees every real key, and always itself (as attention_mask does).
        keys = (item_ids != 0) | (torch.arange(t, device=item_ids.device) == t - 1)  # (B, T)
        att = (q @ k.transpose(-2, -1)) / math.sqrt(d // nh)  # (B, h, 1, T)
        att = att.masked_fill(~keys[:, None, None, :], float("-inf")).softmax(dim=-1)
        y = (att @ v).transpose(1, 2).reshape(b, d)  # (B, d)
        h = x[:, -1] + attn.proj(y)  # (B, d)
        h = h + last.mlp(last.ln2(h))  # (B, d)
        if not self.explain:
            return m.ln_f(h), None
        newest = torch.arange(t - 1, t, device=item_ids.device)  # (1,)
        rollout = mixing(att, value_norms(last, v), own_column(x, newest))  # (B, 1, T)
        for mix in reversed(mixes):
            rollout = rollout @ mix  # (B, 1, T)
        return m.ln_f(h), rollout[:, 0]  # (B, d), (B, T)
