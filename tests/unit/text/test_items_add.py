"""Text-aware training -> bundle -> `items add`: a new item, never seen in any event, is
predicted after a history of items whose texts are like its text. Real encoder, real ONNX.

The data (``topic_data``): four topics with their own vocabulary; each user stays in one topic.
The model learns topics from IDs and texts alike; items added later by text alone must land in
their topic.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from nextbehavior.stream.bundle import BundleError, read_manifest
from nextbehavior.stream.cli import app
from nextbehavior.stream.item_update import add_items
from nextbehavior.stream.predictor import Predictor

TOP_K = 8


@pytest.fixture(scope="module")
def text_bundle(
    tmp_path_factory: pytest.TempPathFactory, topic_data: Any, text_encoder_dir: Path
) -> Path:
    """A small text-aware model trained on topic-bound users, exported as a bundle."""
    import torch

    from nextbehavior.export.writer import export_bundle
    from nextbehavior.model.loaders import load_events
    from nextbehavior.model.text_train import TextOptions, train_with_text
    from nextbehavior.model.train import TrainConfig

    root = tmp_path_factory.mktemp("text")
    inter, items = topic_data.inter, topic_data.items
    threads = torch.get_num_threads()
    try:
        train_with_text(
            load_events(inter, progress=False),
            root / "ckpt",
            TextOptions(items_path=items, encoder_dir=text_encoder_dir, id_dropout=0.3),
            {"max_len": 12, "d_model": 32, "n_layers": 1, "n_heads": 2, "dropout": 0.1},
            TrainConfig(
                epochs=25,
                batch_size=64,
                lr=3e-3,
                warmup_steps=10,
                patience=25,
                threads=1,
                progress=False,
            ),
        )
    finally:
        torch.set_num_threads(threads)
    bundle = root / "bundle"
    export_bundle(root / "ckpt", bundle, top_k=TOP_K, verify=True)  # ONNX/torch parity
    return bundle


@pytest.fixture
def new_items(tmp_path: Path, topic_data: Any) -> Path:
    """A JSONL item file: one unseen item per topic, and one item the bundle already has."""
    rows = [{"item_id": f"new-{p}", "title": t} for p, t in topic_data.new.items()]
    rows.append({"item_id": "space-0", "title": "already known"})
    path = tmp_path / "new.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _top(predictor: Predictor, history_items: list[str]) -> list[str]:
    history = [[(i, "interaction") for i in history_items]]
    from nextbehavior.stream.history import encode

    items, types = encode(history, predictor.item_index, predictor.type_index, predictor.max_len)
    return predictor.items_of(predictor.predict(items, types).top_ids[0])


def test_bundle_carries_the_text_side(text_bundle: Path) -> None:
    manifest = read_manifest(text_bundle)
    text = manifest.extra["text"]
    assert text["encoder"]["name"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert text["text_fields"] == ["title"] and text["n_with_text"] == 24
    assert (text_bundle / text["projection_file"]).is_file()
    assert manifest.extra["parity"]["ok"]  # the baked text-aware table serves what torch computes


def test_added_items_are_predicted_after_similar_histories(
    text_bundle: Path, new_items: Path, text_encoder_dir: Path, tmp_path: Path, topic_data: Any
) -> None:
    before = read_manifest(text_bundle)
    out = tmp_path / "bundle2"
    result = add_items(text_bundle, new_items, text_encoder_dir, out_dir=out)
    assert result.added == [f"new-{p}" for p in topic_data.new] and result.already_known == 1
    after = read_manifest(out)  # checks the new checksum too
    assert after.items == [*before.items, *result.added]
    assert after.model_version != before.model_version
    assert after.extra["text"]["added"][0]["parent_model_version"] == before.model_version
    assert read_manifest(text_bundle) == before  # --out leaves the source bundle alone
    predictor = Predictor(out, providers=["CPUExecutionProvider"])
    old = Predictor(text_bundle, providers=["CPUExecutionProvider"])
    for topic in topic_data.topics:
        history = topic_data.ids(topic)[:5]
        top = _top(predictor, history)
        assert f"new-{topic}" in top, (topic, top)
        others = {f"new-{p}" for p in topic_data.topics if p != topic}
        assert not others & set(top[:4]), (topic, top)
        # the old items keep their rows: their order among themselves is unchanged
        kept = [i for i in top if not i.startswith("new-")]
        assert kept == _top(old, history)[: len(kept)]


def test_adding_again_changes_nothing_and_cli_reports(
    text_bundle: Path, new_items: Path, text_encoder_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "b"
    runner = CliRunner()
    args = ["items", "add", "--bundle", str(text_bundle), "--items", str(new_items),
            "--out", str(out), "--encoder", str(text_encoder_dir)]  # fmt: skip
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    summary = json.loads(first.stdout)
    assert summary["added"] == 4 and summary["n_items"] == 28
    again = runner.invoke(app, [*args[:3], str(out), *args[4:]])
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["added"] == 0
    assert json.loads(again.stdout)["model_version"] == summary["model_version"]


def test_refusals(
    text_bundle: Path, tiny_bundle: Path, new_items: Path, text_encoder_dir: Path, tmp_path: Path
) -> None:
    with pytest.raises(BundleError, match="no text-aware item table"):
        add_items(tiny_bundle, new_items, text_encoder_dir, out_dir=tmp_path / "x")
    copy = tmp_path / "copy"
    copy.mkdir()
    for f in text_bundle.iterdir():
        if f.is_file():
            (copy / f.name).write_bytes(f.read_bytes())
    with (copy / "item_text.npz").open("ab") as fh:
        fh.write(b"0")
    with pytest.raises(BundleError, match="checksum"):
        add_items(copy, new_items, text_encoder_dir)
    result = CliRunner().invoke(
        app, ["items", "add", "--bundle", str(tmp_path / "nope"), "--items", str(new_items)]
    )
    assert result.exit_code == 1 and result.stderr.startswith("error: ")


def test_items_add_needs_no_torch(
    text_bundle: Path, new_items: Path, text_encoder_dir: Path, tmp_path: Path
) -> None:
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "from nextbehavior.stream.cli import main\n"
        "main()\n"
    )
    args = ["items", "add", "--bundle", str(text_bundle), "--items", str(new_items),
            "--out", str(tmp_path / "b"), "--encoder", str(text_encoder_dir)]  # fmt: skip
    out = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["added"] == 4


def test_in_place_update(
    text_bundle: Path, new_items: Path, text_encoder_dir: Path, tmp_path: Path
) -> None:
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    for f in text_bundle.iterdir():
        if f.is_file():
            (bundle / f.name).write_bytes(f.read_bytes())
    before = read_manifest(bundle)
    result = add_items(bundle, new_items, text_encoder_dir)  # no out_dir: in place
    after = read_manifest(bundle)
    assert after == result.manifest and len(after.items) == len(before.items) + 4
    assert sorted(p.name for p in bundle.iterdir()) == sorted(p.name for p in text_bundle.iterdir())
    Predictor(bundle, providers=["CPUExecutionProvider"])  # loads, contract holds


def test_added_rows_get_the_calibrated_cold_treatment(
    text_bundle: Path, new_items: Path, text_encoder_dir: Path, tmp_path: Path
) -> None:
    """New rows get the bundle's calibrated text-only offset and are skipped in histories,
    exactly like the model's own text-only items (serving = what evaluation measured)."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    from nextbehavior.stream.item_update import read_item_side

    text = read_manifest(text_bundle).extra["text"]
    cold_bias = float(read_item_side(text_bundle, text)["cold_bias"])
    out = tmp_path / "b"
    add_items(text_bundle, new_items, text_encoder_dir, out_dir=out)

    def arrays(bundle: Path) -> dict[str, Any]:
        graph = onnx.load(str(bundle / "model.onnx")).graph
        return {i.name: numpy_helper.to_array(i) for i in graph.initializer}

    before, after = arrays(text_bundle), arrays(out)
    bias, readable = after[text["item_bias"]], after[text["item_readable"]]
    assert len(bias) == len(readable) == len(before[text["item_bias"]]) + 4
    np.testing.assert_array_equal(bias[:-4], before[text["item_bias"]])
    np.testing.assert_array_equal(bias[-4:], np.full(4, cold_bias, np.float32))
    assert not readable[-4:].any() and readable[1:-4].all()  # all trained items are warm here
