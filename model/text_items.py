"""Text-aware item representations: an item without interactions gets a row from its text.

Each item has a frozen sentence-encoder vector of its text (``text``, a buffer: the checkpoint
carries it in ``model.safetensors``); ``warm`` marks items with training events. The item table is

    table[i] = g[i] * warm_row[i] + (1 - g[i]) * cold_row[i]      (row 0, padding, stays 0)
    warm_row[i] = id_emb[i]  (+ warm_proj(text[i]) with ``text_in_warm``)
    cold_row[i] = cold_scale * (proj(text[i]) + scale * sum_j softmax(cos_ij / temp) * id_emb[j])

and the logits of text-only rows get one more scalar, ``cold_bias``. Both ``cold_scale`` and
``cold_bias`` are calibrated after training on validation (``model.text_side``): they decide how
text-only rows compete with warm rows whose ID embeddings carry popularity (bias ``-inf``:
never ranked). Text-only items are also dropped from histories (the ID model never read them).
``g = warm``, except that in joint training (``text_in_warm``) a random ``id_dropout`` share of
warm items is scored through its cold row (on the scored side only). The sum runs over the
``text_neighbors`` warm items whose texts are most similar (never the item itself): a text-only
item borrows what similar items learned from interactions. The cold path reads those ID
embeddings detached, and the auxiliary loss (``text_aux``: rank every training target among all
items by cold rows alone) sees detached states, so learning to serve cold items does not pull on
warm items' rows. Items without training events are no training candidates
(:meth:`TextItemTable.mask_unseen`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F  # noqa: N812
from torch import Tensor, nn

from nextbehavior.model.config import ModelConfig

F32 = npt.NDArray[np.float32]


class TextItemTable(nn.Module):
    """Fuses the ID embedding table with projected text vectors into the final item table."""

    text: Tensor
    warm: Tensor
    nbr_idx: Tensor
    nbr_cos: Tensor
    cold_bias: Tensor
    cold_scale: Tensor

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.id_dropout = cfg.id_dropout
        self.hide_unseen = False  # inference ranks only items with training events (selection)
        self.text_aux = cfg.text_aux
        self.proj = nn.Linear(cfg.text_dim, cfg.d_model)  # the text-only (cold) row
        self.warm_proj = nn.Linear(cfg.text_dim, cfg.d_model) if cfg.text_in_warm else None
        self.register_buffer("text", torch.zeros(cfg.n_items, cfg.text_dim))  # (V, text_dim)
        self.register_buffer("warm", torch.ones(cfg.n_items))  # (V,) 1 = trained ID embedding
        self.register_buffer("cold_bias", torch.zeros(()))  # logit offset of text-only rows
        self.register_buffer("cold_scale", torch.ones(()))  # their logit scale (calibrated)
        k = self.n_neighbors = cfg.text_neighbors
        if k:  # each item's k most text-similar warm items (never itself) and their cosines
            self.register_buffer("nbr_idx", torch.zeros(cfg.n_items, k, dtype=torch.long))
            self.register_buffer("nbr_cos", torch.zeros(cfg.n_items, k))
            self.nbr_log_temp = nn.Parameter(torch.tensor(math.log(0.05)))
            self.nbr_scale = nn.Parameter(torch.tensor(1.0))

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        # checkpoints written before the calibrated cold bias existed: no offset
        state_dict.setdefault(prefix + "cold_bias", torch.zeros(()))
        state_dict.setdefault(prefix + "cold_scale", torch.ones(()))
        super()._load_from_state_dict(state_dict, prefix, *args)

    def logit_bias(self) -> Tensor:
        """(V,): ``cold_bias`` for text-only (not warm) items, 0 for warm ones."""
        zero = torch.zeros((), dtype=self.cold_bias.dtype, device=self.cold_bias.device)
        return torch.where(self.warm > 0, zero, self.cold_bias)

    def forward(self, id_weight: Tensor) -> Tensor:
        """(V, d) ID embeddings -> (V, d) item table (ID dropout in training mode)."""
        return self.fuse(id_weight, drop=self.training)

    def fuse(self, id_weight: Tensor, drop: bool) -> Tensor:
        gate = self.warm.to(id_weight.dtype)  # (V,)
        if drop and self.id_dropout > 0:
            keep = torch.rand(gate.shape, device=gate.device) >= self.id_dropout
            gate = gate * keep.to(gate.dtype)
        text = self.text.to(id_weight.dtype)  # (V, text_dim)
        warm = id_weight if self.warm_proj is None else id_weight + self.warm_proj(text)
        cold = (self.proj(text) + self.borrowed(id_weight.detach())) * self.cold_scale  # (V, d)
        table = gate[:, None] * warm + (1 - gate)[:, None] * cold  # (V, d)
        real = torch.ones_like(gate)
        real[0] = 0.0  # padding row stays zero
        return table * real[:, None]

    def borrowed(self, id_weight: Tensor) -> Tensor:
        """(V, d): the ID embeddings of each item's text neighbours, softmax(cos / temp)-weighted
        and scaled; a text-only item borrows what similar warm items learned. 0 without."""
        if not self.n_neighbors:
            return id_weight.new_zeros(())
        w = torch.softmax(self.nbr_cos.to(id_weight.dtype) / self.nbr_log_temp.exp(), dim=1)
        return self.nbr_scale * (w[..., None] * id_weight[self.nbr_idx]).sum(1)  # (V, d)

    def text_rows(self, id_weight: Tensor) -> Tensor:
        """(V, d): every item as if cold (text alone + borrowed IDs, unscaled: what training
        fits); padding row 0."""
        dtype = id_weight.dtype
        rows = self.proj(self.text.to(dtype)) + self.borrowed(id_weight)
        real = torch.ones(rows.shape[0], 1, dtype=dtype, device=rows.device)
        real[0] = 0.0
        return rows * real

    def text_only_loss(self, h: Tensor, targets: Tensor, id_weight: Tensor) -> Tensor:
        """Auxiliary loss (weight ``text_aux``): rank the targets among all training items by
        text alone (every item as if cold). (N, d) states, (N,) targets -> scalar."""
        if self.text_aux <= 0:
            return h.sum() * 0
        # detached: this loss trains the text path to fit the states and ID embeddings the main
        # objective learns, without pulling those towards text-only scoring (warm items' cost)
        rows = self.text_rows(id_weight.detach())  # (V, d)
        logits = self.mask_unseen(h.detach() @ rows.T)  # (N, V)
        return self.text_aux * F.cross_entropy(logits, targets)

    def mask_unseen(self, logits: Tensor, items: Tensor | None = None) -> Tensor:
        """Training objective only: items without training events (cold, or new) did not exist
        at training time, so they are no candidates; their logits (columns of ``logits``, or
        the columns that ``items`` name) become -inf. Otherwise softmax would teach the text
        path that these very texts never come next."""
        seen = self.warm > 0  # (V,)
        if items is not None:
            seen = seen[items]
        return logits.masked_fill(~seen, float("-inf"))

    def serving_arrays(self, id_weight: Tensor) -> dict[str, npt.NDArray[Any]]:
        """What ``items add`` needs to compute a new (cold) item's row without torch
        (``stream.item_update.cold_rows``): the projection, the calibrated logit offset of
        text-only rows (``cold_bias``) and, with text neighbours, the warm items' text vectors
        and ID embeddings."""

        def arr(t: Tensor) -> npt.NDArray[Any]:
            return t.detach().float().cpu().numpy()

        out = {
            "weight": arr(self.proj.weight),
            "bias": arr(self.proj.bias),
            "cold_bias": arr(self.cold_bias),
            "cold_scale": arr(self.cold_scale),
        }
        if self.n_neighbors:
            pool = torch.nonzero(self.warm > 0).flatten()
            out |= {
                "k": np.array(self.n_neighbors, dtype=np.int64),
                "pool": pool.cpu().numpy().astype(np.int64),
                "keys": arr(self.text[pool]),
                "id_emb": arr(id_weight[pool]),
                "log_temp": arr(self.nbr_log_temp),
                "scale": arr(self.nbr_scale),
            }
        return out


@dataclass
class ItemText:
    """Text vectors for a vocabulary, plus which items are warm; installed into a model."""

    vectors: F32  # (V, text_dim), row 0 = padding (zeros), zeros for items without text
    warm: npt.NDArray[np.bool_]  # (V,)
    has_text: npt.NDArray[np.bool_]  # (V,)
    info: dict[str, Any] = field(default_factory=dict)  # encoder, fields, source file
    hide_unseen: bool = False  # installed models rank only warm items at inference (selection)

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def install(self, model: nn.Module) -> None:
        """Copy the vectors and the warm mask into ``model.item_text`` (shapes must match)."""
        table = getattr(model, "item_text", None)
        if not isinstance(table, TextItemTable):
            raise ValueError("the model has no text item table (config text_dim is 0)")
        table.hide_unseen = self.hide_unseen
        with torch.no_grad():
            table.text.copy_(torch.from_numpy(self.vectors))
            table.warm.copy_(torch.from_numpy(self.warm.astype(np.float32)))
            if table.n_neighbors:
                idx, cos = text_neighbors(self.vectors, self.warm, table.n_neighbors)
                table.nbr_idx.copy_(torch.from_numpy(idx))
                table.nbr_cos.copy_(torch.from_numpy(cos))

    def describe(self) -> dict[str, Any]:
        return {
            **self.info,
            "dim": self.dim,
            "n_with_text": int(self.has_text[1:].sum()),
            "n_warm": int(self.warm[1:].sum()),
        }


def text_vectors(
    items: Sequence[str], texts: Mapping[str, str], encode: Any, dim: int
) -> tuple[F32, npt.NDArray[np.bool_]]:
    """Vectors (V, dim) for vocabulary ``items`` (index 0 = padding) from ``texts`` (id -> text)
    through ``encode(list[str]) -> (N, dim)``; items without a text get a zero row."""
    has = np.array([i > 0 and name in texts for i, name in enumerate(items)], dtype=np.bool_)
    vectors = np.zeros((len(items), dim), dtype=np.float32)
    rows = np.flatnonzero(has)
    if len(rows):
        vectors[rows] = np.asarray(encode([texts[items[int(r)]] for r in rows]), dtype=np.float32)
    return vectors, has


def text_neighbors(
    vectors: F32, warm: npt.NDArray[np.bool_], k: int
) -> tuple[npt.NDArray[np.int64], F32]:
    """For every vocabulary item, the ``k`` warm items with the most similar text (cosine),
    never itself -> (indices (V, k) into the vocabulary, cosines (V, k))."""
    from nextbehavior.stream.item_update import nearest

    pool = np.flatnonzero(warm)
    if len(pool) <= k:
        raise ValueError(f"text neighbours need more than k={k} warm items, got {len(pool)}")
    idx, cos = nearest(vectors, vectors[pool], k, skip=pool)
    return pool[idx], cos
