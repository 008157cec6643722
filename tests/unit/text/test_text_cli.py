"""`train --items --cold-items` and `evaluate` (checkpoint and bundle): the cold/warm report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from nextbehavior.stream.cli import app

SMALL = ["--max-len", "12", "--d-model", "32", "--layers", "1", "--heads", "2",
         "--epochs", "4", "--threads", "1", "--no-progress", "--log-level", "WARNING"]  # fmt: skip
KEYS = {"hit@5", "hit@10", "hit@20", "ndcg@5", "ndcg@10", "ndcg@20", "users"}


def test_cold_items_need_an_item_file(topic_data: Any, tmp_path: Path) -> None:
    args = ["train", "--data", str(topic_data.inter), "--out", str(tmp_path), "--cold-items", "0.2"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1 and "--cold-items needs --items" in result.stderr


@pytest.mark.slow
def test_train_and_evaluate_cold_and_warm(
    topic_data: Any, text_encoder_dir: Path, tmp_path: Path
) -> None:
    runner = CliRunner()
    ckpt = tmp_path / "ckpt"
    train = runner.invoke(
        app,
        [
            "train",
            "--data",
            str(topic_data.inter),
            "--out",
            str(ckpt),
            *SMALL,
            "--items",
            str(topic_data.items),
            "--text-fields",
            "title",
            "--cold-items",
            "0.25",
            "--encoder",
            str(text_encoder_dir),
        ],
    )
    assert train.exit_code == 0, train.output
    summary = json.loads(train.stdout)
    assert summary["n_items"] == 24 and summary["cold_items"]["n"] == 6
    assert summary["id_only"]["n_items"] == 18  # the ID-only model never saw a cold item
    assert summary["id_only"]["test_cold"]["hit@10"] == 0.0
    assert (ckpt / "id_only" / "model.safetensors").is_file()
    cold = json.loads((ckpt / "data.json").read_text())["cold_items"]["items"]
    assert len(cold) == 6

    evaluate = ["evaluate", "--data", str(topic_data.inter), "--no-baselines"]
    by_ckpt = json.loads(runner.invoke(app, [*evaluate, "--checkpoint", str(ckpt)]).stdout)
    for part in ("test_cold", "test_warm"):
        assert set(by_ckpt[part]) >= KEYS and set(by_ckpt["id_only"][part]) >= KEYS
    assert by_ckpt["test_cold"]["users"] + by_ckpt["test_warm"]["users"] == by_ckpt["test"]["n"]
    assert by_ckpt["test_cold"]["users"] > 0
    assert by_ckpt["id_only"]["test_cold"]["hit@10"] == 0.0
    assert by_ckpt["cold_items"]["chance_hit@10"] == pytest.approx(10 / 24)
    # the same figures as at training time (same model, same split)
    assert by_ckpt["test_cold"]["ndcg@10"] == pytest.approx(summary["test_cold"]["ndcg@10"])

    bundle = tmp_path / "bundle"
    exported = runner.invoke(app, ["export", "--checkpoint", str(ckpt), "--out", str(bundle),
                                   "--top-k", "20"])  # fmt: skip
    assert exported.exit_code == 0, exported.output
    by_bundle = json.loads(runner.invoke(app, [*evaluate, "--bundle", str(bundle)]).stdout)
    for part in ("test", "test_cold", "test_warm"):
        for key in ("hit@10", "ndcg@10"):
            assert by_bundle[part][key] == pytest.approx(by_ckpt[part][key], abs=1e-6)
    assert by_bundle["id_only"]["test_cold"] == summary["id_only"]["test_cold"]  # as trained
