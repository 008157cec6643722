"""History weights: how much each past event drove the newest position's prediction.

Method: **norm-weighted attention rollout with the residual stream** (Abnar & Zuidema 2020
rollout; edges weighted by the norm of what they carry, as in Kobayashi et al. 2020 and
GlobEnc/ALTI). In block ``l`` the newest state is ``x_i + sum_h sum_j a_hij f_h(x_j)`` plus a
per-position feed-forward, where ``f_h(x_j) = W_o,h v_hj`` is what head ``h`` moves from event
``j``. So event ``j`` feeds position ``i`` by ``sum_h a_hij * ||f_h(x_j)||`` and position ``i``
keeps itself by ``||x_i||`` (the residual). Each row of that mixing matrix is normalized and the
rows are chained through the blocks (``r = m_L[-1] @ M_(L-1) ... @ M_1``): one weight per
history position, 0 on padding, summing to 1.

Why this one (measured with ``bench/explain.py``; faithfulness = how much of the top-10 changes
when the top-weighted event is removed, :mod:`nextbehavior.model.faithfulness`):

- *Last-block attention* alone ignores the residual: the newest event reaches the output mostly
  by its own residual stream, not by attention. On ML-100K it put the newest event first in 3%
  of histories, although removing that event changes the top-10 by ~59% (a random event: 5%);
  its top-weighted event moved the top-10 by 10%, ours by 59% (the leave-one-out best: 60%).
- *Plain rollout* (residual fixed at 0.5) over-weights the residual: on a one-block model whose
  answer depends only on one planted earlier purchase it ranked the newest event first every
  time (cue found 0%; ours 100%). Weighting by norms lets the model say how much each path
  carries.
- *Gradient x input* needs autograd (no ONNX inference graph has it); in trials it was no more
  faithful (ML-100K: 56% vs 59%) and picked the newest event on a planted-cue model where the
  cue alone decides.
- *Leave-one-out occlusion* is faithful by construction but costs T forward passes per row
  (50x at max_len 50); it is the yardstick, not the method.

Cost in the served graph: explicit attention in the earlier blocks (the same arithmetic as
SDPA), per-head value norms via a (d/h, d/h) Gram matrix (``B*T*d*d/h``), the (B, T, T) mixing
of each earlier block and one vector-matrix product per block. ML-100K, full-length histories,
one CPU thread: 10% more CPU time per sequence at batch 64, 21% at batch 1
(``bench/explain.py``), hence opt-in (``export --explain``). The
exact per-edge norm ``||sum_h a_hij f_h(x_j)||`` would cost ``B*T*T*d``; its per-head upper
bound, used here, chose the same events in our trials.
Not covered: the optional repeat bias (``ModelConfig.repeat_bias``, off by default), which adds
logits straight from history items without attention.
"""

from __future__ import annotations

import math
from typing import cast

import torch
from torch import Tensor

from nextbehavior.model.transformer import BehaviorTransformer, Block, attention_mask

EPS = 1e-6
"""Added to every residual norm: an all-padding row keeps itself instead of dividing 0 by 0."""


def value_norms(block: Block, v: Tensor) -> Tensor:
    """(B, h, T, d/h) values -> (B, h, T) norms of ``f_h(x_j) = W_h v_hj``, what head h moves
    from j, as ``sqrt(v^T (W_h^T W_h) v)``: a (d/h, d/h) Gram matrix instead of a (d, d/h)
    projection, half the work at two heads."""
    nh, dh = v.shape[1], v.shape[3]
    w = block.attn.proj.weight.view(-1, nh, dh).transpose(0, 1)  # (h, d, d/h): head h's columns
    gram = w.transpose(1, 2) @ w  # (h, d/h, d/h)
    squared = ((v @ gram) * v).sum(-1)  # (B, h, T)
    return squared.clamp_min(0).sqrt()


def mixing(att: Tensor, norms: Tensor, resid: Tensor) -> Tensor:
    """Row-normalized mixing (B, Q, T) of Q query rows over T keys.

    ``att`` (B, h, Q, T) attention probabilities, ``norms`` (B, h, T) value norms, ``resid``
    (B, Q, T) the residual norm ``||x_i||`` on each query's own column, 0 elsewhere."""
    mix: Tensor = (att * norms[:, :, None, :]).sum(1) + resid  # (B, Q, T)
    return mix / mix.sum(-1, keepdim=True)


def own_column(x: Tensor, queries: Tensor) -> Tensor:
    """(B, Q, T): ``||x_q|| + EPS`` at (q, position of q), 0 elsewhere. ``x`` (B, T, d)."""
    t = x.shape[1]
    norm = x[:, queries].norm(dim=-1) + EPS  # (B, Q)
    onehot = queries[:, None] == torch.arange(t, device=x.device)[None, :]  # (Q, T)
    return norm[:, :, None] * onehot[None].to(x.dtype)  # (B, Q, T)


def traced_block(block: Block, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """``block(x, mask)`` in eval mode with explicit attention -> (output (B, T, d), mixing
    matrix (B, T, T)). Same arithmetic as :class:`Block`, so the output is the model's."""
    attn = block.attn
    b, t, d = x.shape
    nh = attn.n_heads
    q, k, v = attn.qkv(block.ln1(x)).split(d, dim=2)  # 3 x (B, T, d)
    q, k, v = (z.reshape(b, t, nh, d // nh).transpose(1, 2) for z in (q, k, v))  # (B, h, T, d/h)
    att = (q @ k.transpose(-2, -1)) / math.sqrt(d // nh)  # (B, h, T, T)
    att = att.masked_fill(~mask, float("-inf")).softmax(dim=-1)
    y = (att @ v).transpose(1, 2).reshape(b, t, d)  # (B, T, d)
    mix = mixing(att, value_norms(block, v), own_column(x, torch.arange(t, device=x.device)))
    x_out = x + attn.proj(y)  # (B, T, d)
    return x_out + block.mlp(block.ln2(x_out)), mix


@torch.no_grad()
def history_weights(model: BehaviorTransformer, item_ids: Tensor, event_types: Tensor) -> Tensor:
    """(B, T) weight of each history position for the newest position's prediction (eval mode).

    The reference on the full-sequence path (every block, every query); the served graph
    (``export.shim``) computes the same for the newest query only."""
    model = model.baked().eval()
    item_ids, event_types, order = model.read(item_ids, event_types)  # unreadable: dropped
    t = item_ids.shape[1]
    pos = torch.arange(t - 1, -1, -1, device=item_ids.device).clamp(max=model.cfg.max_len - 1)
    x = model.item_emb(item_ids) * math.sqrt(model.cfg.d_model)  # (B, T, d)
    x = (x + model.type_emb(event_types) + model.pos_emb(pos)[None]) * (item_ids != 0)[..., None]
    mask = attention_mask(item_ids)  # (B, 1, T, T)
    rollout: Tensor | None = None
    for block in model.blocks:
        x, mix = traced_block(cast(Block, block), x, mask)  # (B, T, d), (B, T, T)
        rollout = mix if rollout is None else mix @ rollout  # (B, T, T)
    assert rollout is not None
    weights = rollout[:, -1]  # (B, T)
    # back to the input columns (a dropped event weighs 0)
    return weights if order is None else torch.zeros_like(weights).scatter(1, order, weights)
