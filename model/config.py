"""Model configuration: one frozen dataclass, saved inside every checkpoint."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Literal


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild :class:`~nextbehavior.model.transformer.BehaviorTransformer`."""

    n_items: int  # vocabulary size, index 0 = padding
    n_event_types: int  # vocabulary size, index 0 = padding
    max_len: int = 50
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 2
    dropout: float = 0.3
    ffn_mult: int = 4
    type_loss_weight: float = 0.5  # weight of the next-behavior-type loss next to the item loss
    loss: Literal["ce", "sampled"] = "ce"  # full softmax, or sampled softmax for huge catalogues
    n_negatives: int = 256  # sampled softmax only
    repeat_bias: bool = True  # learned logit bias for items already in the history (repeat.py)
    text_dim: int = 0  # > 0: items also carry a frozen text vector of this size (text-aware items)
    id_dropout: float = 0.0  # text-aware only: share of items trained on their text vector alone
    text_aux: float = 0.0  # text-aware only: weight of a text-only scoring loss (all items)
    text_neighbors: int = 0  # text-aware only: text-only items borrow k similar items' IDs
    text_in_warm: bool = False  # text-aware only: warm rows also add their projected text
    item_bias: bool = False  # a fixed (V,) logit bias buffer (baked text-aware: cold-row bias)

    def __post_init__(self) -> None:
        if self.d_model % self.n_heads:
            raise ValueError("d_model must be divisible by n_heads")
        if self.n_items < 2 or self.n_event_types < 2:
            raise ValueError("vocabularies need padding plus at least one entry")
        if self.text_dim < 0 or not 0.0 <= self.id_dropout < 1.0:
            raise ValueError("text_dim must be >= 0 and id_dropout in [0, 1)")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, obj: dict[str, Any]) -> ModelConfig:
        names = {f.name for f in fields(cls)}
        known = {k: v for k, v in obj.items() if k in names}
        known.setdefault("repeat_bias", False)  # configs saved before it existed had none
        return cls(**known)
