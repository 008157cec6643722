"""The torch model as an evaluation ranker: masked full-catalogue top-k plus type probabilities."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

from nextbehavior.model.metrics import F32, I64, KS
from nextbehavior.model.transformer import BehaviorTransformer


def masked_scores(
    model: BehaviorTransformer, item_ids: torch.Tensor, event_types: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Last-position (item logits with padding at -inf, type probabilities without padding)."""
    item_logits, type_logits, _ = model(item_ids, event_types)  # (B, V), (B, n_types)
    item_logits[:, 0] = float("-inf")
    type_logits[:, 0] = float("-inf")
    return item_logits, torch.softmax(type_logits, dim=-1)


class TorchRanker:
    """Ranks with a :class:`BehaviorTransformer` (eval mode, no grad) on ``device``."""

    def __init__(
        self,
        model: BehaviorTransformer,
        items: Sequence[str],
        event_types: Sequence[str],
        *,
        device: str | torch.device = "cpu",
        k: int = max(KS),
    ) -> None:
        self.model = model
        self.device = torch.device(device)
        self.item_index: Mapping[str, int] = {name: i for i, name in enumerate(items)}
        self.type_index: Mapping[str, int] = {name: i for i, name in enumerate(event_types)}
        self.max_len: int = model.cfg.max_len
        self.k = min(k, len(items) - 1)

    @torch.no_grad()
    def rank(self, item_ids: I64, event_types: I64) -> tuple[I64, F32 | None]:
        was_training = self.model.training
        self.model.eval()
        try:
            x = torch.from_numpy(np.ascontiguousarray(item_ids)).to(self.device)
            t = torch.from_numpy(np.ascontiguousarray(event_types)).to(self.device)
            logits, type_probs = masked_scores(self.model, x, t)
            top = torch.topk(logits, self.k, dim=-1).indices  # (B, k)
            return top.cpu().numpy().astype(np.int64), type_probs.float().cpu().numpy()
        finally:
            self.model.train(was_training)
