"""Text-aware item representations: ID embedding + learned projection of a frozen text vector.

``table[i] = warm[i] * id_emb[i] + proj(text[i])`` (row 0, padding, stays 0). ``text`` holds the
sentence-encoder vectors of the items' texts (frozen, a buffer: the checkpoint carries it in
``model.pt``); ``warm`` marks items that had training interactions. A cold item (no
interactions) has no trained ID embedding, so its representation is its projected text alone;
``id_dropout`` trains that path: each step a random share of warm items is scored and embedded
through their text only, so text alone must place an item near the histories that lead to it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor, nn

from nextbehavior.model.config import ModelConfig

F32 = npt.NDArray[np.float32]


class TextItemTable(nn.Module):
    """Fuses the ID embedding table with projected text vectors into the final item table."""

    text: Tensor
    warm: Tensor

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.id_dropout = cfg.id_dropout
        self.proj = nn.Linear(cfg.text_dim, cfg.d_model)
        self.register_buffer("text", torch.zeros(cfg.n_items, cfg.text_dim))  # (V, text_dim)
        self.register_buffer("warm", torch.ones(cfg.n_items))  # (V,) 1 = trained ID embedding

    def forward(self, id_weight: Tensor) -> Tensor:
        """(V, d) ID embeddings -> (V, d) item table (ID dropout in training mode)."""
        return self.fuse(id_weight, drop=self.training)

    def fuse(self, id_weight: Tensor, drop: bool) -> Tensor:
        gate = self.warm.to(id_weight.dtype)  # (V,)
        if drop and self.id_dropout > 0:
            keep = torch.rand(gate.shape, device=gate.device) >= self.id_dropout
            gate = gate * keep.to(gate.dtype)
        table = id_weight * gate[:, None] + self.proj(self.text.to(id_weight.dtype))  # (V, d)
        real = torch.ones_like(gate)
        real[0] = 0.0  # padding row stays zero
        return table * real[:, None]

    def mask_unseen(self, logits: Tensor, items: Tensor | None = None) -> Tensor:
        """Training objective only: items without training events (cold, or new) did not exist
        at training time, so they are no candidates; their logits (columns of ``logits``, or
        the columns that ``items`` name) become -inf. Otherwise softmax would teach the text
        path that these very texts never come next."""
        seen = self.warm > 0  # (V,)
        if items is not None:
            seen = seen[items]
        return logits.masked_fill(~seen, float("-inf"))

    def projection(self) -> tuple[F32, F32]:
        """(weight (d, text_dim), bias (d,)) as float32 arrays: what ``items add`` applies."""
        return (
            self.proj.weight.detach().float().cpu().numpy(),
            self.proj.bias.detach().float().cpu().numpy(),
        )


@dataclass
class ItemText:
    """Text vectors for a vocabulary, plus which items are warm; installed into a model."""

    vectors: F32  # (V, text_dim), row 0 = padding (zeros), zeros for items without text
    warm: npt.NDArray[np.bool_]  # (V,)
    has_text: npt.NDArray[np.bool_]  # (V,)
    info: dict[str, Any] = field(default_factory=dict)  # encoder, fields, source file

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def install(self, model: nn.Module) -> None:
        """Copy the vectors and the warm mask into ``model.item_text`` (shapes must match)."""
        table = getattr(model, "item_text", None)
        if not isinstance(table, TextItemTable):
            raise ValueError("the model has no text item table (config text_dim is 0)")
        with torch.no_grad():
            table.text.copy_(torch.from_numpy(self.vectors))
            table.warm.copy_(torch.from_numpy(self.warm.astype(np.float32)))

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
