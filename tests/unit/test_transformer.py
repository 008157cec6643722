"""The Transformer's contracts: causality, padding invariance, output shapes, both losses."""

from __future__ import annotations

import pytest
import torch

from nextbehavior.model.config import ModelConfig
from nextbehavior.model.transformer import BehaviorTransformer

torch.set_num_threads(1)


def make_model(**kw: object) -> BehaviorTransformer:
    torch.manual_seed(0)
    cfg = ModelConfig(n_items=30, n_event_types=4, max_len=8, d_model=16, n_heads=2, **kw)  # type: ignore[arg-type]
    model = BehaviorTransformer(cfg).eval()
    if model.repeat is not None:  # non-zero repeat weights, so the test sees them
        for p in model.repeat.parameters():
            torch.nn.init.normal_(p, std=1.0)
    return model


def batch(width: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    items = torch.randint(1, 30, (3, width), generator=g)
    types = torch.randint(1, 4, (3, width), generator=g)
    items[0, :3] = 0  # a left-padded row
    types[0, :3] = 0
    return items, types


@pytest.mark.parametrize("repeat_bias", [False, True])
def test_changing_a_later_event_never_changes_an_earlier_output(repeat_bias: bool) -> None:
    model = make_model(repeat_bias=repeat_bias)
    items, types = batch()
    targets = torch.ones_like(items)
    with torch.no_grad():
        before, type_before, _ = model(items, types, targets, targets)  # (B*T, V): all scored
        items2, types2 = items.clone(), types.clone()
        items2[:, 5], types2[:, 5] = (items[:, 5] % 29) + 1, (types[:, 5] % 3) + 1
        after, type_after, _ = model(items2, types2, targets, targets)
    before, after = before.view(3, 8, 30), after.view(3, 8, 30)
    torch.testing.assert_close(before[:, :5], after[:, :5])
    torch.testing.assert_close(type_before[:, :5], type_after[:, :5])
    assert not torch.allclose(before[:, 5:], after[:, 5:])


@pytest.mark.parametrize("repeat_bias", [False, True])
def test_padding_width_never_changes_the_prediction(repeat_bias: bool) -> None:
    model = make_model(repeat_bias=repeat_bias)
    items, types = batch(width=5)
    wide_items = torch.cat([torch.zeros(3, 3, dtype=torch.long), items], dim=1)  # width 8
    wide_types = torch.cat([torch.zeros(3, 3, dtype=torch.long), types], dim=1)
    with torch.no_grad():
        narrow = model(items, types)
        wide = model(wide_items, wide_types)
        # the padded row alone gives the same answer as inside the batch
        single = model(items[:1, 3:], types[:1, 3:])
    for a, b in zip(narrow[:2], wide[:2], strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(narrow[0][:1], single[0], atol=1e-5, rtol=1e-5)
    assert narrow[0].shape == (3, 30) and narrow[1].shape == (3, 4) and narrow[2] is None


def test_last_position_equals_all_position_output() -> None:
    model = make_model(repeat_bias=True)
    items, types = batch()
    with torch.no_grad():
        last, type_last, _ = model(items, types)
        full, type_full, _ = model(items, types, torch.ones_like(items))
    torch.testing.assert_close(last, full.view(3, 8, 30)[:, -1], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(type_last, type_full[:, -1], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("repeat_bias", [False, True])
def test_sampled_softmax_trains_and_eval_stays_full(repeat_bias: bool) -> None:
    model = make_model(loss="sampled", n_negatives=8, repeat_bias=repeat_bias).train()
    items, types = batch()
    targets = torch.roll(items, -1, dims=1)
    logits, _, loss = model(items, types, targets, types)
    assert logits.shape == (3, 8, 9) and loss is not None and torch.isfinite(loss)
    loss.backward()  # type: ignore[no-untyped-call]
    assert model.item_emb.weight.grad is not None
    model.eval()
    with torch.no_grad():
        full, _, eval_loss = model(items, types, targets, types)
    assert full.shape == (int((targets != 0).sum()), 30)
    assert eval_loss is not None and torch.isfinite(eval_loss)


def test_repeat_bias_reaches_only_history_items() -> None:
    model = make_model(repeat_bias=True)
    assert model.repeat is not None
    items = torch.tensor([[0, 0, 4, 7, 4]])
    types = torch.tensor([[0, 0, 1, 2, 3]])
    with torch.no_grad():
        bias = model.repeat.last(items, types, 30)  # (1, 30)
        w = model.repeat.weights(items, types)[0, -1]  # (T,)
    assert set(torch.nonzero(bias[0]).flatten().tolist()) <= {4, 7}
    torch.testing.assert_close(bias[0, 4], w[2] + w[4])  # an item seen twice adds both
    assert bias[0, 0] == 0 and w[:2].abs().sum() == 0  # padding never counts
