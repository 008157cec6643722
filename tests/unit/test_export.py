"""Export: the scoring shim, ONNX graph contract, parity, variants, the bundle and the CLI."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import onnx
import orjson
import pytest
import torch
from typer.testing import CliRunner

from nextbehavior.export import writer
from nextbehavior.export.exporter import export_onnx
from nextbehavior.export.parity import ParityReport, parity_cases, verify_parity
from nextbehavior.export.shim import ScoringShim, default_chunk, two_stage_topk
from nextbehavior.model.checkpoint import load_checkpoint
from nextbehavior.model.config import ModelConfig
from nextbehavior.model.transformer import BehaviorTransformer
from nextbehavior.stream.bundle import MANIFEST_FILE, MODEL_FILE, read_manifest
from nextbehavior.stream.cli import app


def test_two_stage_topk_matches_one_topk() -> None:
    gen = torch.Generator().manual_seed(3)
    scores = torch.randn(16, 1001, generator=gen)  # 1001: the last chunk is partial
    scores[:, 0] = float("-inf")
    for chunk in (4, 16, 32):
        values, ids = two_stage_topk(scores, 20, chunk)
        ref = scores.topk(20, dim=1)
        assert torch.equal(ids, ref.indices)
        assert torch.equal(values, ref.values)
    with pytest.raises(ValueError, match="chunks"):
        two_stage_topk(scores, 20, 512)  # only 2 chunks for k=20


def test_default_chunk_only_for_large_catalogues() -> None:
    assert default_chunk(1683, 20) is None
    chunk = default_chunk(100_001, 20)
    assert chunk == 64  # sqrt(100001 / 20) ~ 71 -> 2**6
    assert default_chunk(20_000, 1000) is not None
    assert -(-20_000 // default_chunk(20_000, 1000)) >= 1000  # type: ignore[operator]


def test_shim_equals_model_forward(tiny_checkpoint: Path) -> None:
    """The last-position-only shim gives exactly the model's answer, in eager torch too."""
    ckpt = load_checkpoint(tiny_checkpoint)
    model, cfg = ckpt.model, ckpt.config
    shim = ScoringShim(model, 10, explain=True)
    for _, items, types in parity_cases(cfg.max_len, cfg.n_items, cfg.n_event_types):
        x, t = torch.from_numpy(items), torch.from_numpy(types)
        with torch.no_grad():
            ids, scores, type_probs, weights = shim(x, t)
            logits, _, _ = model(x, t)
        logits[:, 0] = float("-inf")
        ref = logits.softmax(1).topk(10, dim=1)
        assert torch.equal(ids, ref.indices)
        torch.testing.assert_close(scores, ref.values, rtol=1e-5, atol=1e-7)
        assert torch.all(type_probs[:, 0] == 0)
        torch.testing.assert_close(type_probs.sum(1), torch.ones(len(items)))
        torch.testing.assert_close(weights.sum(1), torch.ones(len(items)))


def test_graph_contract(tiny_bundle: Path) -> None:
    """Inputs/outputs: names, dtypes, and free batch and sequence axes (INTERFACE.md)."""
    graph = onnx.load(str(tiny_bundle / MODEL_FILE)).graph
    i64, f32 = onnx.TensorProto.INT64, onnx.TensorProto.FLOAT

    def spec(values: list[onnx.ValueInfoProto]) -> dict[str, tuple[int, list[str | int]]]:
        return {
            v.name: (
                v.type.tensor_type.elem_type,
                [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim],
            )
            for v in values
        }

    manifest = read_manifest(tiny_bundle)
    inputs, outputs = spec(list(graph.input)), spec(list(graph.output))
    assert list(inputs) == ["item_ids", "event_types"]
    for _, (dtype, dims) in inputs.items():
        assert dtype == i64
        assert all(isinstance(d, str) for d in dims)  # (batch, seq) both dynamic
    assert list(outputs) == [
        "top_item_ids",
        "top_item_scores",
        "event_type_probs",
        "history_weights",
    ]
    assert outputs["top_item_ids"][0] == i64
    assert [outputs[n][0] for n in list(outputs)[1:]] == [f32, f32, f32]
    assert outputs["top_item_ids"][1][1] == manifest.top_k
    assert outputs["event_type_probs"][1][1] == len(manifest.event_types)
    assert not any(init.data_location == onnx.TensorProto.EXTERNAL for init in graph.initializer)


def test_parity_all_cases(tiny_checkpoint: Path, tiny_bundle: Path) -> None:
    model = load_checkpoint(tiny_checkpoint).model
    report = verify_parity(model, tiny_bundle / MODEL_FILE)
    assert report.ok, report.failures
    assert report.cases == 6
    assert report.rows_ids_identical == report.rows
    assert report.max_score_diff < 1e-5


def test_parity_catches_a_different_model(tiny_checkpoint: Path, tiny_bundle: Path) -> None:
    model = copy.deepcopy(load_checkpoint(tiny_checkpoint).model)
    with torch.no_grad():
        model.type_head.bias[1] += 1.0  # another model: type probabilities shift
        model.item_emb.weight[1:] = model.item_emb.weight[1:].roll(1, dims=0)
    report = verify_parity(model, tiny_bundle / MODEL_FILE)
    assert not report.ok
    assert any("top-k ids differ" in f for f in report.failures)
    assert any("behavior-type" in f for f in report.failures)


def test_two_stage_export_parity(tiny_checkpoint: Path, tmp_path: Path) -> None:
    model = load_checkpoint(tiny_checkpoint).model
    path = tmp_path / "two_stage.onnx"
    assert export_onnx(model, path, 10, chunk=4) == 4
    report = verify_parity(model, path)
    assert report.ok, report.failures


def test_repeat_bias_export_parity(tmp_path: Path) -> None:
    """A model with the learned repeat bias (optional) exports exactly too."""
    torch.manual_seed(1)
    cfg = ModelConfig(
        n_items=40, n_event_types=3, max_len=8, d_model=16, n_heads=2, n_layers=1, repeat_bias=True
    )
    model = BehaviorTransformer(cfg).eval()
    assert model.repeat is not None
    with torch.no_grad():  # the bias starts at zero: make it matter
        model.repeat.by_type.weight[1:].normal_(0, 2.0)
        model.repeat.by_recency.weight.normal_(0, 2.0)
    path = tmp_path / "repeat.onnx"
    export_onnx(model, path, 5, chunk=None)
    report = verify_parity(model, path)
    assert report.ok, report.failures


def test_manifest(tiny_bundle: Path) -> None:
    manifest = read_manifest(tiny_bundle)
    assert manifest.items == ["[PAD]", *(f"i{n}" for n in range(1, 51))]
    assert manifest.event_types == ["[PAD]", "view", "click", "cart", "purchase"]
    assert (manifest.max_len, manifest.top_k) == (12, 10)
    assert re.fullmatch(r"\d{8}T\d{6}Z-[0-9a-f]{8}", manifest.model_version)
    assert manifest.model_version.endswith(manifest.onnx_sha256[:8])
    assert manifest.created_at.endswith("Z")
    assert manifest.has_weights
    assert "train_loss" in manifest.metrics
    assert manifest.data["items"] == 50
    assert manifest.extra["variant"] == "fp32"
    assert not [p.name for p in tiny_bundle.iterdir() if p.name not in (MODEL_FILE, MANIFEST_FILE)]


def test_export_cli_verify_and_int8(tiny_checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    args = ["export", "--checkpoint", str(tiny_checkpoint), "--out", str(out), "--top-k", "5"]
    result = CliRunner().invoke(app, [*args, "--verify"])
    assert result.exit_code == 0, result.output
    summary = orjson.loads(result.stdout)
    assert summary["parity"]["ok"] is True
    assert summary["variant"] == "fp32"
    first = read_manifest(out)
    assert first.top_k == 5

    # Re-export over the same directory: int8 replaces it, and reports its agreement.
    result = CliRunner().invoke(app, [*args, "--quantize", "int8"])
    assert result.exit_code == 0, result.output
    agreement = orjson.loads(result.stdout)["agreement_vs_fp32"]
    assert agreement["k"] == 5
    assert 0.8 <= agreement["top_k_overlap"] <= 1.0
    second = read_manifest(out)
    assert second.extra["variant"] == "int8"
    assert second.onnx_sha256 != first.onnx_sha256


def test_export_fp16_agreement(tiny_checkpoint: Path, tmp_path: Path) -> None:
    manifest = writer.export_bundle(tiny_checkpoint, tmp_path / "fp16", top_k=10, fp16=True)
    agreement = manifest.extra["agreement_vs_fp32"]
    assert agreement["k"] == 10
    assert agreement["top_k_overlap"] >= 0.95
    graph = onnx.load(str(tmp_path / "fp16" / MODEL_FILE)).graph
    assert onnx.TensorProto.FLOAT16 in {i.data_type for i in graph.initializer}


def test_export_cli_fails_on_parity(
    tiny_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failed verification exits non-zero with one line, and writes no manifest."""
    failing = ParityReport(failures=["mixed, batch > 1: top-k ids differ beyond ties"])
    monkeypatch.setattr(writer, "verify_parity", lambda *a, **k: failing)
    out = tmp_path / "bundle"
    args = ["export", "--checkpoint", str(tiny_checkpoint), "--out", str(out), "--verify"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1
    assert result.stderr.strip().count("\n") == 0
    assert "parity failed" in result.stderr
    assert not (out / MANIFEST_FILE).exists()


def test_export_cli_bad_checkpoint(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["export", "--checkpoint", str(tmp_path / "nope"), "--out", str(tmp_path / "b")]
    )
    assert result.exit_code == 1
    assert "not a directory" in result.stderr


def test_export_rejects_both_variants(tiny_checkpoint: Path, tmp_path: Path) -> None:
    args = ["export", "--checkpoint", str(tiny_checkpoint), "--out", str(tmp_path)]
    result = CliRunner().invoke(app, [*args, "--fp16", "--quantize", "int8"])
    assert result.exit_code == 1
    assert "choose one" in result.stderr
