"""`nextbehavior worker` refuses a damaged model bundle at start: one line on stderr, exit 1,
before any broker is contacted (no broker runs here: a refusal must not depend on one)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import onnx
import orjson
import pytest
from onnx import TensorProto, helper
from typer.testing import CliRunner

from nextbehavior.stream.bundle import MANIFEST_FILE, MODEL_FILE, sha256_file
from nextbehavior.stream.cli import app

NO_BROKER = "kafka://127.0.0.1:9"  # nothing listens there


def edit_manifest(bundle: Path, **changes: object) -> None:
    path = bundle / MANIFEST_FILE
    path.write_bytes(orjson.dumps({**orjson.loads(path.read_bytes()), **changes}))


def other_inputs(bundle: Path) -> None:
    """A valid ONNX graph whose inputs are not the contract's ``item_ids``/``event_types``."""
    ins = [helper.make_tensor_value_info(n, TensorProto.INT64, ["b", "t"]) for n in ("a", "b")]
    outs = [
        helper.make_tensor_value_info("top_item_ids", TensorProto.INT64, ["b", 10]),
        helper.make_tensor_value_info("top_item_scores", TensorProto.FLOAT, ["b", 10]),
        helper.make_tensor_value_info("event_type_probs", TensorProto.FLOAT, ["b", 5]),
    ]
    nodes = [
        helper.make_node("Cast", ["a"], ["f"], to=TensorProto.FLOAT),
        helper.make_node("TopK", ["f", "k"], ["top_item_scores", "top_item_ids"], axis=1),
        helper.make_node("Slice", ["f", "s", "e", "x"], ["event_type_probs"]),
    ]
    consts = [
        helper.make_tensor(n, TensorProto.INT64, [1], [v])
        for n, v in (("k", 10), ("s", 0), ("e", 5), ("x", 1))
    ]
    graph = helper.make_graph(nodes, "g", ins, outs, initializer=consts)
    onnx.save(
        helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)]), bundle / MODEL_FILE
    )
    edit_manifest(bundle, onnx_sha256=sha256_file(bundle / MODEL_FILE))


def not_onnx(bundle: Path) -> None:
    (bundle / MODEL_FILE).write_bytes(b"#!/bin/sh\necho not a model\n")
    edit_manifest(bundle, onnx_sha256=sha256_file(bundle / MODEL_FILE))


DAMAGES: dict[str, tuple[Callable[[Path], object], str]] = {
    "missing-model": (lambda b: (b / MODEL_FILE).unlink(), "model.onnx is missing"),
    # without a manifest the directory is taken for a directory of bundles (hot reload)
    "missing-manifest": (lambda b: (b / MANIFEST_FILE).unlink(), "no servable bundle"),
    "wrong-checksum": (lambda b: (b / MODEL_FILE).open("ab").write(b"\0"), "checksum"),
    "unknown-format": (lambda b: edit_manifest(b, format_version=99), "format_version"),
    "mismatched-inputs": (other_inputs, "inputs are"),
    "not-onnx": (not_onnx, "cannot load"),
}


@pytest.fixture
def bundle_copy(tiny_bundle: Path, tmp_path: Path) -> Path:
    out = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, out)
    return out


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_worker_refuses_a_damaged_bundle(bundle_copy: Path, damage: str) -> None:
    make, reason = DAMAGES[damage]
    make(bundle_copy)
    result = CliRunner().invoke(
        app, ["worker", "--bundle", str(bundle_copy), "--broker", NO_BROKER]
    )
    assert result.exit_code == 1, result.output
    errors = [ln for ln in result.stderr.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 1, result.stderr  # (log lines may come before it)
    assert reason in errors[0], errors[0]


def test_worker_process_refuses_fast(bundle_copy: Path) -> None:
    """The real command in its own process: non-zero exit and one line, in seconds."""
    DAMAGES["wrong-checksum"][0](bundle_copy)
    env = {**os.environ, "NBP_BUNDLE": str(bundle_copy), "NBP_BROKER": NO_BROKER}
    done = subprocess.run(
        [sys.executable, "-m", "nextbehavior.stream", "worker"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    errors = [ln for ln in done.stderr.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 1 and "checksum" in errors[0], done.stderr
