"""The torch-free Predictor on a real bundle: loading, refusals, providers, predictions."""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnx
import orjson
import pytest
from onnx import TensorProto, helper

from nextbehavior.stream.bundle import MANIFEST_FILE, MODEL_FILE, BundleError, sha256_file
from nextbehavior.stream.history import Step, encode_steps
from nextbehavior.stream.predictor import Predictor

CPU = ["CPUExecutionProvider"]


def steps(*pairs: tuple[str, str]) -> list[Step]:
    return [Step(f"e{n}", item, kind, 1000 + n) for n, (item, kind) in enumerate(pairs)]


@pytest.fixture(scope="module")
def predictor(tiny_bundle: Path) -> Predictor:
    return Predictor(tiny_bundle, providers=CPU)


@pytest.fixture
def bundle_copy(tiny_bundle: Path, tmp_path: Path) -> Path:
    out = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, out)
    return out


def edit_manifest(bundle: Path, **changes: object) -> None:
    path = bundle / MANIFEST_FILE
    obj = orjson.loads(path.read_bytes())
    obj.update(changes)
    path.write_bytes(orjson.dumps(obj))


def test_predicts_the_learned_pattern(predictor: Predictor) -> None:
    out = predictor.predict_histories(
        [
            steps(("i5", "view")),
            steps(("i7", "view"), ("i8", "click")),
            steps(("i50", "cart")),
        ]
    )
    tops = [predictor.items_of(row)[0] for row in out.top_ids]
    assert tops == ["i6", "i9", "i1"]
    assert [
        max(predictor.types_of(p).items(), key=lambda kv: kv[1])[0] for p in out.type_probs
    ] == [
        "click",
        "cart",
        "purchase",
    ]


def test_output_shapes_and_ranges(predictor: Predictor) -> None:
    k, n_types = predictor.manifest.top_k, len(predictor.manifest.event_types)
    histories = [[], steps(("i3", "view")), steps(*[(f"i{n}", "view") for n in range(1, 31)])]
    out = predictor.predict_histories(histories)
    assert out.top_ids.shape == (3, k) and out.top_ids.dtype == np.int64
    assert out.top_scores.shape == (3, k) and out.top_scores.dtype == np.float32
    assert out.type_probs.shape == (3, n_types) and out.type_probs.dtype == np.float32
    assert out.weights is not None and out.weights.shape == (3, predictor.max_len)
    assert np.all(out.top_ids >= 1) and np.all(out.top_ids < len(predictor.manifest.items))
    assert np.all(np.diff(out.top_scores, axis=1) <= 0)
    assert np.all(out.type_probs[:, 0] == 0)
    np.testing.assert_allclose(out.type_probs.sum(1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(out.weights.sum(1), 1.0, rtol=1e-5)
    assert out.weights[1, :-1].sum() == 0  # one event: all attention on it


def test_padding_to_the_longest_history_is_exact(predictor: Predictor) -> None:
    """Positions count from the newest event: width max_len and width 'longest' agree."""
    histories = [steps(("i4", "view")), steps(("i9", "cart"), ("i10", "view"), ("i11", "click"))]
    narrow = predictor.predict_histories(histories)
    assert narrow.weights is not None and narrow.weights.shape[1] == 3
    items, types = encode_steps(
        histories, predictor.item_index, predictor.type_index, predictor.max_len
    )
    wide = predictor.predict(items, types)
    np.testing.assert_array_equal(narrow.top_ids, wide.top_ids)
    np.testing.assert_allclose(narrow.top_scores, wide.top_scores, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(narrow.type_probs, wide.type_probs, rtol=1e-5, atol=1e-7)


def test_unknown_items_and_types_and_edge_batches(predictor: Predictor) -> None:
    known = predictor.predict_histories([steps(("i5", "view"))])
    mixed = predictor.predict_histories([steps(("i5", "view"), ("nope", "view"))])
    np.testing.assert_array_equal(known.top_ids, mixed.top_ids)  # unknown item skipped
    odd_type = predictor.predict_histories([steps(("i5", "wishlist"))])
    assert odd_type.top_ids.shape == known.top_ids.shape  # unknown type is valid, maps to 0
    empty = predictor.predict_histories([])
    assert empty.top_ids.shape == (0, predictor.manifest.top_k)
    too_wide = np.tile(np.arange(1, 31, dtype=np.int64), (2, 1))  # 30 > max_len columns
    cut = predictor.predict(too_wide, np.ones_like(too_wide))
    last = predictor.predict(too_wide[:, -predictor.max_len :], np.ones((2, predictor.max_len)))
    np.testing.assert_array_equal(cut.top_ids, last.top_ids)
    with pytest.raises(ValueError, match="must be"):
        predictor.predict(np.zeros((2, 3)), np.zeros((2, 4)))


def test_thread_safe(predictor: Predictor) -> None:
    rng = np.random.default_rng(0)
    batches = [rng.integers(0, 51, (8, predictor.max_len)) for _ in range(16)]
    alone = [predictor.predict(b, np.ones_like(b)).top_ids for b in batches]
    with ThreadPoolExecutor(max_workers=4) as pool:
        together = list(pool.map(lambda b: predictor.predict(b, np.ones_like(b)).top_ids, batches))
    for a, b in zip(alone, together, strict=True):
        np.testing.assert_array_equal(a, b)


def test_provider_selection_and_logging(
    tiny_bundle: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    with caplog.at_level(logging.INFO, logger="nextbehavior.stream.predictor"):
        p = Predictor(tiny_bundle, providers=["NoSuchExecutionProvider", *CPU])
    assert p.provider == "CPUExecutionProvider"
    assert "NoSuchExecutionProvider" in caplog.text  # skipped, and said so
    assert "on CPUExecutionProvider" in caplog.text  # the provider really used
    with pytest.raises(BundleError, match="none of the providers"):
        Predictor(tiny_bundle, providers=["NoSuchExecutionProvider"])
    # Default: Settings.providers, i.e. NBP_PROVIDERS (CUDA then CPU when unset).
    monkeypatch.setenv("NBP_PROVIDERS", "NoSuchExecutionProvider")
    with pytest.raises(BundleError, match="NoSuchExecutionProvider"):
        Predictor(tiny_bundle)
    monkeypatch.delenv("NBP_PROVIDERS")
    assert Predictor(tiny_bundle).provider in ("CUDAExecutionProvider", "CPUExecutionProvider")


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda b: (b / MODEL_FILE).unlink(), "model.onnx is missing"),
        (lambda b: (b / MANIFEST_FILE).unlink(), "manifest.json is missing"),
        (lambda b: (b / MODEL_FILE).open("ab").write(b"\0"), "checksum"),
        (lambda b: edit_manifest(b, format_version=99), "format_version"),
        (lambda b: edit_manifest(b, top_k=5), "columns"),
        (lambda b: edit_manifest(b, event_types=["[PAD]", "view"]), "columns"),
        (lambda b: (b / MANIFEST_FILE).write_text("{not json"), "not valid JSON"),
    ],
    ids=["no-model", "no-manifest", "tampered", "format", "top-k", "types", "json"],
)
def test_refuses_damaged_bundles(bundle_copy: Path, damage: object, reason: str) -> None:
    damage(bundle_copy)  # type: ignore[operator]
    with pytest.raises(BundleError, match=reason):
        Predictor(bundle_copy, providers=CPU)


def _graph(inputs: list[str], ids_type: int = TensorProto.INT64) -> onnx.ModelProto:
    """A small valid graph with the contract's outputs, but the given input names/dtype."""
    ins = [helper.make_tensor_value_info(n, TensorProto.INT64, ["b", "t"]) for n in inputs]
    outs = [
        helper.make_tensor_value_info("top_item_ids", ids_type, ["b", 10]),
        helper.make_tensor_value_info("top_item_scores", TensorProto.FLOAT, ["b", 10]),
        helper.make_tensor_value_info("event_type_probs", TensorProto.FLOAT, ["b", 5]),
        helper.make_tensor_value_info("history_weights", TensorProto.FLOAT, ["b", "t"]),
    ]
    nodes = [
        helper.make_node("Cast", [inputs[0]], ["f"], to=TensorProto.FLOAT),
        helper.make_node("TopK", ["f", "k"], ["top_item_scores", "i"], axis=1),
        helper.make_node("Cast", ["i"], ["top_item_ids"], to=ids_type),
        helper.make_node("Slice", ["f", "s", "e", "a"], ["event_type_probs"]),
        helper.make_node("Softmax", ["f"], ["history_weights"], axis=1),
    ]
    consts = [
        helper.make_tensor("k", TensorProto.INT64, [1], [10]),
        helper.make_tensor("s", TensorProto.INT64, [1], [0]),
        helper.make_tensor("e", TensorProto.INT64, [1], [5]),
        helper.make_tensor("a", TensorProto.INT64, [1], [1]),
    ]
    graph = helper.make_graph(nodes, "g", ins, outs, initializer=consts)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])


@pytest.mark.parametrize(
    ("inputs", "ids_type", "reason"),
    [
        (["items", "types"], TensorProto.INT64, "inputs are"),
        (["item_ids", "event_types"], TensorProto.INT32, "top_item_ids is tensor\\(int32\\)"),
    ],
)
def test_refuses_graphs_off_contract(
    bundle_copy: Path, inputs: list[str], ids_type: int, reason: str
) -> None:
    onnx.save(_graph(inputs, ids_type), str(bundle_copy / MODEL_FILE))
    edit_manifest(bundle_copy, onnx_sha256=sha256_file(bundle_copy / MODEL_FILE))
    with pytest.raises(BundleError, match=reason):
        Predictor(bundle_copy, providers=CPU)


def test_refuses_a_file_that_is_not_onnx(bundle_copy: Path) -> None:
    (bundle_copy / MODEL_FILE).write_bytes(b"not a model")
    edit_manifest(bundle_copy, onnx_sha256=sha256_file(bundle_copy / MODEL_FILE))
    with pytest.raises(BundleError, match="cannot load"):
        Predictor(bundle_copy, providers=CPU)


def test_predictor_path_never_imports_torch(tiny_bundle: Path) -> None:
    """Block torch outright in a fresh interpreter; load, predict, and check what got imported."""
    code = textwrap.dedent(
        f"""
        import sys
        sys.modules["torch"] = None  # any `import torch` now raises ImportError
        from nextbehavior.stream.history import Step
        from nextbehavior.stream.predictor import Predictor
        p = Predictor({str(tiny_bundle)!r}, providers=["CPUExecutionProvider"])
        out = p.predict_histories([[Step("e1", "i5", "view", 1)]])
        assert p.items_of(out.top_ids[0])[0] == "i6", out.top_ids
        loaded = [m for m in sys.modules if m.split(".")[0] in ("torch", "onnxscript")
                  or m.startswith(("nextbehavior.model", "nextbehavior.export"))]
        assert loaded == ["torch"], loaded  # only our None placeholder
        print("ok")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
