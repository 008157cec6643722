"""A GPT/SASRec-style causal Transformer over behavior sequences.

Input: item ids and behavior-type ids, left-padded with 0, newest last. Positions are counted
from the newest event (newest = 0), so a row means the same whatever the padded width.
Two heads: next item (tied to the item embedding) and next behavior type.
"""

from __future__ import annotations

import math
from dataclasses import replace

import torch
import torch.nn.functional as F  # noqa: N812
from torch import Tensor, nn

from nextbehavior.model.config import ModelConfig
from nextbehavior.model.repeat import RepeatBias
from nextbehavior.model.text_items import TextItemTable


def attention_mask(item_ids: Tensor) -> Tensor:
    """Bool (B, 1, T, T): causal AND (key is real OR key is the query), so no row is all-masked."""
    t = item_ids.shape[1]
    causal = torch.ones(t, t, dtype=torch.bool, device=item_ids.device).tril()  # (T, T)
    real = (item_ids != 0)[:, None, None, :]  # (B, 1, 1, T)
    eye = torch.eye(t, dtype=torch.bool, device=item_ids.device)  # (T, T)
    return causal & (real | eye)  # (B, 1, T, T)


def compact_history(
    item_ids: Tensor, event_types: Tensor, readable: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """Drop the events whose item is not ``readable`` ((V,) bool) from left-padded rows, as if
    they had never been encoded (an ID-only model skips items it does not know): the others
    keep their order and move right. -> (item_ids, event_types, order), where output column p
    holds input column ``order[:, p]`` (dropped events become padding on the left)."""
    t = item_ids.shape[1]
    ar = torch.arange(t, device=item_ids.device)
    keep = readable[item_ids] & (item_ids != 0)  # (B, T)
    order = torch.argsort(ar + keep.to(ar.dtype) * t, dim=1)  # unique keys: kept last, in order
    kept = keep.gather(1, order).to(item_ids.dtype)  # (B, T)
    return item_ids.gather(1, order) * kept, event_types.gather(1, order) * kept, order


class SelfAttention(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.n_heads = cfg.n_heads
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model)
        self.dropout = cfg.dropout

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(x).split(d, dim=2)  # 3 x (B, T, d)
        q, k, v = (z.view(b, t, self.n_heads, d // self.n_heads).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(  # (B, h, T, d/h)
            q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0
        )
        return self.proj(y.transpose(1, 2).reshape(b, t, d))  # (B, T, d)


class Block(nn.Module):
    """Pre-norm Transformer block."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.d_model)
        self.attn = SelfAttention(cfg)
        self.ln2 = nn.LayerNorm(cfg.d_model)
        self.mlp = nn.Sequential(
            nn.Linear(cfg.d_model, cfg.ffn_mult * cfg.d_model),
            nn.GELU(),
            nn.Linear(cfg.ffn_mult * cfg.d_model, cfg.d_model),
            nn.Dropout(cfg.dropout),
        )
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        x = x + self.drop(self.attn(self.ln1(x), mask))  # (B, T, d)
        return x + self.mlp(self.ln2(x))  # (B, T, d)


class BehaviorTransformer(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.item_emb = nn.Embedding(cfg.n_items, cfg.d_model, padding_idx=0)
        self.type_emb = nn.Embedding(cfg.n_event_types, cfg.d_model, padding_idx=0)
        self.pos_emb = nn.Embedding(cfg.max_len, cfg.d_model)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.ln_f = nn.LayerNorm(cfg.d_model)
        self.type_head = nn.Linear(cfg.d_model, cfg.n_event_types)
        # text-aware items (optional): the item table fuses IDs with projected text vectors
        self.item_text = TextItemTable(cfg) if cfg.text_dim > 0 else None
        self.repeat = RepeatBias(cfg) if cfg.repeat_bias else None
        self.apply(self._init)
        if cfg.item_bias:  # a baked text model: cold-row logit offsets, items read in histories
            self.register_buffer("item_bias", torch.zeros(cfg.n_items))
            self.register_buffer("item_readable", torch.ones(cfg.n_items, dtype=torch.bool))

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, std=0.02)
            if m.padding_idx is not None:
                with torch.no_grad():
                    m.weight[m.padding_idx].zero_()

    def item_table(self) -> Tensor:
        """(V, d) item representations: the ID embedding, fused with text when configured."""
        w = self.item_emb.weight
        return w if self.item_text is None else self.item_text(w)

    def logit_bias(self) -> Tensor | None:
        """(V,) fixed logit offsets per item, or None: a text model's calibrated bias of its
        text-only (cold) rows, or a baked model's ``item_bias`` buffer."""
        if self.item_text is not None:
            return self.item_text.logit_bias()
        bias: Tensor | None = getattr(self, "item_bias", None)
        return bias

    def readable(self) -> Tensor | None:
        """(V,) bool: items a history may hold (text models: warm items only; the others are
        dropped from histories, :func:`compact_history`), or None: every item."""
        if self.item_text is not None:
            return self.item_text.warm > 0
        readable: Tensor | None = getattr(self, "item_readable", None)  # bool: one initializer
        return readable

    def read(self, item_ids: Tensor, event_types: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        """Histories as the model reads them: :func:`compact_history` when some items are not
        readable -> (item_ids, event_types, order or None)."""
        readable = self.readable()
        if readable is None:
            return item_ids, event_types, None
        return compact_history(item_ids, event_types, readable)

    def baked(self) -> BehaviorTransformer:
        """This model with its item table computed once into a plain ID embedding (text_dim 0)
        and the cold-row bias into ``item_bias``: what export serves. Same outputs in eval mode;
        ``self`` when there is no text."""
        if self.item_text is None:
            return self
        cfg = replace(self.cfg, text_dim=0, id_dropout=0.0, item_bias=True)
        plain = BehaviorTransformer(cfg).to(self.item_emb.weight)
        state = {k: v for k, v in self.state_dict().items() if not k.startswith("item_text.")}
        with torch.no_grad():
            state["item_emb.weight"] = self.item_text.fuse(self.item_emb.weight, drop=False)
            state["item_bias"] = self.item_text.logit_bias().to(self.item_emb.weight)
            state["item_readable"] = self.item_text.warm > 0
        plain.load_state_dict(state)
        return plain.eval()

    def hidden(self, item_ids: Tensor, event_types: Tensor, table: Tensor | None = None) -> Tensor:
        """(B, T) ids -> (B, T, d) states; position t sees events 0..t only.

        ``table``: the (V, d) item table to embed with (default: :meth:`item_table`)."""
        t = item_ids.shape[1]
        pos = torch.arange(t - 1, -1, -1, device=item_ids.device).clamp(max=self.cfg.max_len - 1)
        if table is None and self.item_text is None:
            emb = self.item_emb(item_ids)  # (B, T, d)
        else:
            emb = F.embedding(item_ids, self.item_table() if table is None else table)
        x = emb * math.sqrt(self.cfg.d_model)  # (B, T, d)
        x = x + self.type_emb(event_types) + self.pos_emb(pos)[None]  # (B, T, d)
        x = self.drop(x * (item_ids != 0).unsqueeze(-1))
        mask = attention_mask(item_ids)  # (B, 1, T, T)
        for block in self.blocks:
            x = block(x, mask)
        return self.ln_f(x)  # (B, T, d)

    def item_logits(self, h: Tensor, table: Tensor | None = None) -> Tensor:
        """(..., d) -> (..., n_items), tied to the item table (default: :meth:`item_table`),
        plus :meth:`logit_bias`."""
        logits = h @ (self.item_table() if table is None else table).T
        bias = self.logit_bias()
        return logits if bias is None else logits + bias.to(logits.dtype)

    def sampled_loss(
        self,
        h: Tensor,
        target_items: Tensor,
        table: Tensor | None = None,
        history: tuple[Tensor, Tensor] | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Sampled softmax: each target against ``n_negatives`` items drawn uniformly (shared by
        the batch; uniform sampling needs no log-q correction). -> ((B, T, 1 + K) logits, loss)."""
        neg = torch.randint(1, self.cfg.n_items, (self.cfg.n_negatives,), device=h.device)  # (K,)
        w = self.item_table() if table is None else table
        pos = (h * w[target_items]).sum(-1, keepdim=True)  # (B, T, 1)
        neg_logits = h @ w[neg].T  # (B, T, K)
        if self.repeat is not None and history is not None:
            pos = pos + self.repeat.at(*history, target_items[..., None])  # (B, T, 1)
            neg_logits = neg_logits + self.repeat.at(*history, neg)  # (B, T, K)
        neg_logits = neg_logits.masked_fill(neg == target_items[..., None], float("-inf"))
        if self.item_text is not None:
            neg_logits = self.item_text.mask_unseen(neg_logits, neg)  # (B, T, K)
        logits = torch.cat([pos, neg_logits], dim=-1)  # (B, T, 1 + K)
        labels = torch.where(target_items == 0, -100, 0)  # the positive is column 0
        loss = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100)
        return logits, loss

    def forward(
        self,
        item_ids: Tensor,
        event_types: Tensor,
        target_items: Tensor | None = None,
        target_types: Tensor | None = None,
    ) -> tuple[Tensor, Tensor, Tensor | None]:
        """Training: targets (B, T) give every position's next event (0 = not scored) ->
        (item logits (N, V) of the N scored positions in row-major order, or (B, T, 1 + K) with
        ``loss="sampled"`` in train mode; type logits (B, T, n_types); loss).

        Inference (no targets): last position only -> ((B, n_items), (B, n_types), None); items
        that are not :meth:`readable` are dropped from the histories first (training windows
        never hold them).
        """
        if target_items is None:
            item_ids, event_types, _ = self.read(item_ids, event_types)
        # text-aware: the (V, d) item table; ID dropout (training) on the scored side only, so
        # the history encoder always reads items as served
        table = None if self.item_text is None else self.item_table()
        table_in = table
        if self.item_text is not None and self.training:
            table_in = self.item_text.fuse(self.item_emb.weight, drop=False)
        h = self.hidden(item_ids, event_types, table_in)  # (B, T, d)
        if target_items is None:
            last = h[:, -1]  # (B, d)
            logits = self.item_logits(last, table)  # (B, V)
            if self.item_text is not None and self.item_text.hide_unseen:
                logits = self.item_text.mask_unseen(logits)  # model selection: as ID-only
            if self.repeat is not None:
                logits = logits + self.repeat.last(item_ids, event_types, self.cfg.n_items)
            return logits, self.type_head(last), None
        type_logits = self.type_head(h)  # (B, T, n_types)
        if self.cfg.loss == "sampled" and self.training:
            logits, loss = self.sampled_loss(  # (B, T, 1 + n_negatives)
                h, target_items, table, history=(item_ids, event_types)
            )
        else:  # full softmax, computed at the scored positions only
            scored = target_items != 0  # (B, T)
            logits = self.item_logits(h[scored], table)  # (N, V)
            if self.repeat is not None:
                logits = logits + self.repeat.rows(item_ids, event_types, scored, self.cfg.n_items)
            if self.item_text is not None:
                logits = self.item_text.mask_unseen(logits)  # (N, V)
            loss = F.cross_entropy(logits, target_items[scored]) if len(logits) else h.sum() * 0
            if self.item_text is not None and self.training and len(logits):
                aux = self.item_text.text_only_loss(
                    h[scored], target_items[scored], self.item_emb.weight
                )
                loss = loss + aux
        if target_types is not None and self.cfg.type_loss_weight > 0:
            type_targets = target_types.masked_fill(target_items == 0, 0)
            type_loss = F.cross_entropy(
                type_logits.flatten(0, 1), type_targets.flatten(), ignore_index=0
            )
            if torch.isfinite(type_loss):
                loss = loss + self.cfg.type_loss_weight * type_loss
        return logits, type_logits, loss
