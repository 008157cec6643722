"""``nextbehavior train`` and ``evaluate`` on a tiny synthetic log, through the real CLI."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from nextbehavior.model.synthetic import SyntheticConfig, generate
from nextbehavior.stream.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def tiny_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    log = generate(SyntheticConfig(n_users=120, n_items=25, min_events=6, max_events=10, seed=2))
    return log.write_jsonl(tmp_path_factory.mktemp("data") / "events.jsonl")


@pytest.fixture(scope="module")
def trained(tiny_log: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:  # type: ignore[type-arg]
    out = tmp_path_factory.mktemp("ckpt") / "run"
    args = ["train", "--data", str(tiny_log), "--out", str(out), "--epochs", "2"]
    args += ["--d-model", "16", "--max-len", "8", "--threads", "1", "--no-progress"]
    args += ["--log-level", "WARNING"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return out, orjson.loads(result.stdout)


def test_train_writes_a_complete_checkpoint(trained: tuple[Path, dict]) -> None:  # type: ignore[type-arg]
    out, summary = trained
    for name in ("model.safetensors", "config.json", "vocab.json", "metrics.json", "data.json"):
        assert (out / name).is_file(), name
    assert (out / "training_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    metrics = orjson.loads((out / "metrics.json").read_bytes())
    assert metrics["epochs_run"] == 2 and len(metrics["history"]) == 2
    assert metrics["n_users"] == 120 and metrics["n_items"] == 25
    assert set(metrics["baselines"]) == {"most_popular", "markov"}
    assert summary["test"]["ndcg@10"] == metrics["test"]["ndcg@10"]
    vocab = orjson.loads((out / "vocab.json").read_bytes())
    assert vocab["event_types"][0] == "[PAD]" and set(vocab["event_types"][1:]) == {
        "view",
        "cart",
        "purchase",
    }


def test_evaluate_checkpoint_and_bundle_print_the_same_json(
    trained: tuple[Path, dict],  # type: ignore[type-arg]
    tiny_log: Path,
    tmp_path: Path,
) -> None:
    out, _ = trained
    result = runner.invoke(app, ["evaluate", "--data", str(tiny_log), "--checkpoint", str(out)])
    assert result.exit_code == 0, result.output
    report = orjson.loads(result.stdout)
    metrics = orjson.loads((out / "metrics.json").read_bytes())
    assert report["test"] == metrics["test"] and report["valid"] == metrics["valid"]
    for key in ("hit@5", "ndcg@10", "mrr@20", "type_accuracy", "type_macro_f1"):
        assert key in report["test"]
    assert report["n_items"] == 25 and report["n_users"] == 120

    from nextbehavior.export.writer import export_bundle

    export_bundle(out, tmp_path / "bundle", top_k=20)
    result = runner.invoke(
        app, ["evaluate", "--data", str(tiny_log), "--bundle", str(tmp_path / "bundle")]
    )
    assert result.exit_code == 0, result.output
    from_bundle = orjson.loads(result.stdout)
    assert from_bundle.keys() == report.keys()
    assert from_bundle["baselines"] == report["baselines"]
    for split in ("valid", "test"):
        assert from_bundle[split] == pytest.approx(report[split], abs=1e-9)


def test_usage_errors_are_one_line(tiny_log: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["evaluate", "--data", str(tiny_log)])
    assert result.exit_code == 1 and "exactly one of" in result.stderr
    result = runner.invoke(
        app, ["train", "--data", str(tmp_path / "nope.csv"), "--out", str(tmp_path / "x")]
    )
    assert result.exit_code == 1 and "no such data file" in result.stderr
    result = runner.invoke(
        app, ["evaluate", "--data", str(tiny_log), "--checkpoint", str(tmp_path)]
    )
    assert result.exit_code == 1 and "config.json is missing" in result.stderr


def test_cli_defaults_are_the_library_defaults() -> None:
    """`nextbehavior train` defaults = ModelConfig + TrainConfig defaults (one benchmark)."""
    import inspect

    from nextbehavior.model.config import ModelConfig
    from nextbehavior.model.train import TrainConfig
    from nextbehavior.stream.cli_model import train

    params = inspect.signature(train).parameters
    model, opt = ModelConfig(n_items=2, n_event_types=2), TrainConfig()
    pairs = {
        "max_len": model.max_len, "d_model": model.d_model, "layers": model.n_layers,
        "heads": model.n_heads, "dropout": model.dropout, "negatives": model.n_negatives,
        "repeat_bias": model.repeat_bias, "epochs": opt.epochs, "batch_size": opt.batch_size,
        "lr": opt.lr, "weight_decay": opt.weight_decay, "patience": opt.patience,
        "seed": opt.seed, "device": opt.device, "threads": opt.threads,
    }  # fmt: skip
    for name, expected in pairs.items():
        assert params[name].default == expected, name
    assert params["loss"].default.value == model.loss
    assert params["split"].default.value == opt.split
    # a config saved before repeat_bias existed rebuilds the model it described
    legacy = {k: v for k, v in model.to_dict().items() if k != "repeat_bias"}
    assert ModelConfig.from_dict(legacy).repeat_bias is False


def test_train_on_cuda_without_cuda_fails_in_one_line(tiny_log: Path, tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    result = CliRunner().invoke(
        app, ["train", "--data", str(tiny_log), "--out", str(tmp_path / "c"), "--device", "cuda"]
    )
    assert result.exit_code != 0
    assert "--device cuda: CUDA is not available" in result.stderr
    assert not (tmp_path / "c").exists()  # refused before any work
