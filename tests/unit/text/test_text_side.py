"""The text side next to an ID model: histories skip text-only items, the calibrated cold-row
bias and scale (useless text -> -inf), and that both reach the baked model and the ONNX graph."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from test_text_model import text_model  # same folder (rootdir-relative import)

from nextbehavior.export.exporter import export_onnx
from nextbehavior.export.parity import verify_parity
from nextbehavior.model.config import ModelConfig
from nextbehavior.model.sequences import build_sequences, build_vocab, leave_one_out
from nextbehavior.model.synthetic import SyntheticConfig, generate
from nextbehavior.model.text_items import ItemText
from nextbehavior.model.text_side import (
    calibrate_cold_bias,
    holdout_items,
    with_id_model,
)
from nextbehavior.model.train import TrainConfig, fit, set_threads
from nextbehavior.model.transformer import BehaviorTransformer
from nextbehavior.stream.item_update import BIAS_INITIALIZER, READABLE_INITIALIZER


def test_histories_skip_text_only_items() -> None:
    """A text-only item in a history is dropped, as an ID-only model skips unknown items."""
    model, _ = text_model()  # items 3, 6, 9 are text-only
    types = torch.ones(1, 6, dtype=torch.long)
    with_cold, _, _ = model(torch.tensor([[0, 1, 3, 2, 9, 4]]), types)
    kept_types = types * torch.tensor([0, 0, 0, 1, 1, 1])
    without, _, _ = model(torch.tensor([[0, 0, 0, 1, 2, 4]]), kept_types)
    torch.testing.assert_close(with_cold, without)


def test_cold_bias_and_scale_shift_only_text_only_logits() -> None:
    model, _ = text_model()
    items = torch.tensor([[0, 0, 1, 2, 4, 5]])
    base, _, _ = model(items, torch.ones_like(items))
    table = model.item_text
    assert table is not None
    table.cold_bias.fill_(-2.0)
    shifted, _, _ = model(items, torch.ones_like(items))
    diff = shifted - base
    assert torch.allclose(diff[0, [3, 6, 9]], torch.full((3,), -2.0))
    assert torch.all(diff[0, [1, 2, 4, 5, 7, 8, 10, 11]] == 0)
    table.cold_bias.fill_(float("-inf"))
    never, _, _ = model(items, torch.ones_like(items))
    assert torch.isinf(never[0, [3, 6, 9]]).all()
    torch.testing.assert_close(never[0, [1, 2, 4]], base[0, [1, 2, 4]])


def test_bias_scale_and_readable_mask_reach_the_bundle_graph(tmp_path: Path) -> None:
    model, info = text_model(neighbors=3)
    table = model.item_text
    assert table is not None
    table.cold_bias.fill_(-1.5)
    table.cold_scale.fill_(2.0)
    plain = model.baked()
    expected_bias = np.where(info.warm, 0.0, -1.5).astype(np.float32)
    np.testing.assert_array_equal(plain.item_bias.numpy(), expected_bias)
    np.testing.assert_array_equal(plain.item_readable.numpy(), info.warm)
    path = tmp_path / "model.onnx"
    export_onnx(model, path, top_k=5, explain=True)
    inits = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(path)).graph.initializer}
    np.testing.assert_array_equal(inits[BIAS_INITIALIZER], expected_bias)
    np.testing.assert_array_equal(inits[READABLE_INITIALIZER], info.warm)
    assert verify_parity(model, path).ok  # scaled, biased cold rows; histories compacted


def _trained_id_model() -> tuple[BehaviorTransformer, list[str], list[str], object]:
    table = generate(SyntheticConfig(n_users=120, n_items=20, min_events=6, max_events=10)).table()
    vocab = build_vocab(table)
    cfg = ModelConfig(n_items=len(vocab.items), n_event_types=len(vocab.event_types), max_len=8,
                      d_model=16)  # fmt: skip
    split = leave_one_out(build_sequences(table))
    set_threads(1)
    result = fit(split, vocab, cfg, TrainConfig(epochs=3, batch_size=16, progress=False))
    return result.model, vocab.items, vocab.event_types, split


def test_calibration_picks_minus_inf_for_useless_text() -> None:
    """Text rows that carry nothing (random vectors, random projection) must never be served:
    -inf keeps the ID model's validation NDCG@10, any finite offset can only lose."""
    id_model, items, types, split = _trained_id_model()
    n = len(items)
    cfg = replace_cfg(id_model.cfg, text_dim=8)
    model = BehaviorTransformer(cfg)
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(n, 8)).astype(np.float32)
    vectors[0] = 0
    warm = np.arange(n) > 0
    ItemText(vectors, warm, warm.copy()).install(model)
    with_id_model(id_model, items, model, items)
    with torch.no_grad():
        model.item_text.proj.weight.normal_(std=3.0)  # type: ignore[union-attr]
    holdout = holdout_items(warm, 0.2, 0)
    report = calibrate_cold_bias(model.eval(), split, items, types, holdout)  # type: ignore[arg-type]
    assert report["cold_bias"] == "-inf" and report["holdout_items"] == holdout.sum()
    assert report["valid_ndcg@10"] == report["valid_ndcg@10_warm_rows_only"]
    assert float(model.item_text.cold_bias) == float("-inf")  # type: ignore[union-attr]
    assert torch.equal(model.item_text.warm > 0, torch.from_numpy(warm))  # type: ignore[union-attr]
    # the warm path is the ID model: same validation logits for every warm item
    x = torch.tensor([[0, 0, 0, 1, 2, 3, 4, 5]])
    ref, _, _ = id_model.eval()(x, torch.ones_like(x))
    got, _, _ = model(x, torch.ones_like(x))
    torch.testing.assert_close(got[:, 1:], ref[:, 1:])  # column 0 is padding


def test_a_tolerance_trades_validation_ndcg_for_serving_text_rows() -> None:
    """``--cold-tolerance``: with all of validation NDCG@10 allowed to go, calibration picks
    the offset that ranks the stand-in items best, which is never -inf (it ranks none)."""
    id_model, items, types, split = _trained_id_model()
    n = len(items)
    model = BehaviorTransformer(replace_cfg(id_model.cfg, text_dim=8))
    vectors = np.random.default_rng(1).normal(size=(n, 8)).astype(np.float32)
    vectors[0] = 0
    warm = np.arange(n) > 0
    ItemText(vectors, warm, warm.copy()).install(model)
    with_id_model(id_model, items, model, items)
    holdout = holdout_items(warm, 0.2, 0)
    strict = calibrate_cold_bias(model.eval(), split, items, types, holdout)  # type: ignore[arg-type]
    loose = calibrate_cold_bias(model.eval(), split, items, types, holdout, tolerance=1.0)  # type: ignore[arg-type]
    assert loose["cold_bias"] != "-inf"
    assert loose["valid_stand_in_ndcg@10"] >= strict["valid_stand_in_ndcg@10"]
    assert loose["valid_stand_in_ndcg@10"] > 0


def replace_cfg(cfg: ModelConfig, **changes: object) -> ModelConfig:
    from dataclasses import replace

    return replace(cfg, **changes)  # type: ignore[arg-type]
