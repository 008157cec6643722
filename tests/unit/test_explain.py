"""Explanations: the history-weights method, its export, its faithfulness, worker and CLI.

Faithfulness is checked the way the README reports it (``model.faithfulness``): removing the
top-weighted event must move the top-10 far more than removing a random one, and on planted-cue
histories (the next item depends on one earlier purchase) the cue must come out on top.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import orjson
import pytest
import torch
from typer.testing import CliRunner

from nextbehavior.export.parity import parity_cases, verify_parity
from nextbehavior.export.shim import ScoringShim
from nextbehavior.export.writer import export_bundle
from nextbehavior.model.attribution import history_weights
from nextbehavior.model.config import ModelConfig
from nextbehavior.model.faithfulness import (
    cue_hit_rate,
    faithfulness,
    remove_event,
    topk_change,
)
from nextbehavior.model.synthetic_cue import CueConfig, cue_rows, partner, train_cue_model
from nextbehavior.model.transformer import BehaviorTransformer
from nextbehavior.stream.bundle import MODEL_FILE, OUTPUT_NAMES, read_manifest
from nextbehavior.stream.cli import app
from nextbehavior.stream.events import Event
from nextbehavior.stream.explanation import user_state
from nextbehavior.stream.predictor import Predictor

runner = CliRunner()


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small models on shared cores
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def plain_bundle(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model exported without the history_weights output."""
    out = tmp_path_factory.mktemp("plain") / "bundle"
    export_bundle(tiny_checkpoint, out, top_k=10)
    return out


def random_model(n_layers: int, seed: int = 0) -> BehaviorTransformer:
    torch.manual_seed(seed)
    cfg = ModelConfig(n_items=30, n_event_types=4, max_len=9, d_model=16, n_layers=n_layers)
    model = BehaviorTransformer(cfg).eval()
    with torch.no_grad():  # larger than the init's 0.02: attention that is far from uniform
        for p in model.parameters():
            p.mul_(8.0)
    return model


@pytest.mark.parametrize("n_layers", [1, 2, 3])
def test_weights_are_a_distribution_over_real_events(n_layers: int) -> None:
    model = random_model(n_layers)
    cfg = model.cfg
    for _, items, types in parity_cases(cfg.max_len, cfg.n_items, cfg.n_event_types):
        x, t = torch.from_numpy(items), torch.from_numpy(types)
        w = history_weights(model, x, t)
        torch.testing.assert_close(w.sum(1), torch.ones(len(items)))
        pad = (x == 0).clone()
        pad[:, -1] = False  # the newest column keeps itself, even when it is padding
        assert torch.all(w[pad] == 0) and torch.all(w >= 0)
        empty = (x == 0).all(1)
        assert torch.all(w[empty, -1] == 1)
        wide = history_weights(
            model, torch.nn.functional.pad(x, (3, 0)), torch.nn.functional.pad(t, (3, 0))
        )
        torch.testing.assert_close(wide[:, 3:], w)  # more left padding: the same weights


@pytest.mark.parametrize("n_layers", [1, 2, 3])
def test_served_weights_equal_the_full_path_reference(n_layers: int) -> None:
    """The shim computes the newest row only; it must equal the full (T x T) rollout."""
    model = random_model(n_layers, seed=n_layers)
    cfg = model.cfg
    plain = ScoringShim(model, 5)
    shim = ScoringShim(model, 5, explain=True)
    for _, items, types in parity_cases(cfg.max_len, cfg.n_items, cfg.n_event_types):
        x, t = torch.from_numpy(items), torch.from_numpy(types)
        with torch.no_grad():
            ids, scores, probs, weights = shim(x, t)
            plain_out = plain(x, t)
        torch.testing.assert_close(weights, history_weights(model, x, t), rtol=1e-5, atol=1e-6)
        assert len(plain_out) == 3
        assert torch.equal(plain_out[0], ids)
        torch.testing.assert_close(plain_out[1], scores)
        torch.testing.assert_close(plain_out[2], probs)


def test_bundle_without_weights(tiny_checkpoint: Path, plain_bundle: Path) -> None:
    manifest = read_manifest(plain_bundle)
    assert manifest.outputs == list(OUTPUT_NAMES) and not manifest.has_weights
    graph = onnx.load(str(plain_bundle / MODEL_FILE)).graph
    assert [o.name for o in graph.output] == list(OUTPUT_NAMES)
    predictor = Predictor(plain_bundle, providers=["CPUExecutionProvider"])
    assert predictor.predict_histories([[]]).weights is None
    from nextbehavior.model.checkpoint import load_checkpoint

    report = verify_parity(load_checkpoint(tiny_checkpoint).model, plain_bundle / MODEL_FILE)
    assert report.ok and report.max_weight_diff == 0.0


def test_fp16_bundle_explains_like_fp32(
    tiny_checkpoint: Path, tiny_bundle: Path, tmp_path: Path
) -> None:
    """The CUDA variant carries the weights too, renormalized in fp32."""
    out = tmp_path / "fp16-explain"
    export_bundle(tiny_checkpoint, out, top_k=10, fp16=True, explain=True)
    rng = np.random.default_rng(2)
    items = rng.integers(1, 51, size=(64, 12))
    items[:16, :6] = 0
    types = np.where(items > 0, 1, 0)
    got, ref = (
        Predictor(b, providers=["CPUExecutionProvider"]).predict(items, types).weights
        for b in (out, tiny_bundle)
    )
    assert got is not None and ref is not None
    np.testing.assert_allclose(got.sum(1), 1.0, rtol=1e-6)
    assert np.all(got[:16, :6] == 0)
    assert (got.argmax(1) == ref.argmax(1)).mean() >= 0.95
    assert np.abs(got - ref).max() < 0.01


def test_remove_event_keeps_left_padding() -> None:
    items = np.array([[0, 5, 6, 7], [1, 2, 3, 4]], dtype=np.int64)
    got, types = remove_event(items, items * 10, 2)
    assert got.tolist() == [[0, 0, 5, 7], [0, 1, 2, 4]]
    assert types.tolist() == [[0, 0, 50, 70], [0, 10, 20, 40]]
    before = np.array([[1, 2, 3, 4]])
    assert topk_change(before, np.array([[4, 3, 9, 8]])).tolist() == [0.5]


def test_planted_cue_is_found_and_removing_it_matters() -> None:
    """Next item = partner of the one purchase: the cue must be the top-weighted event."""
    cfg = CueConfig()
    model = train_cue_model(cfg, steps=200, seed=0)
    shim = ScoringShim(model, 10, explain=True)

    def scorer(items: np.ndarray, types: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with torch.no_grad():
            ids, _, _, weights = shim(torch.from_numpy(items), torch.from_numpy(types))
        return ids.numpy(), weights.numpy()

    rows = cue_rows(300, cfg, np.random.default_rng(1))
    ids, weights = scorer(rows.items, rows.types)
    assert (ids[:, 0] == rows.target).mean() > 0.9  # the model learned the process
    assert np.all(partner(partner(rows.target, cfg.n_items), cfg.n_items) == rows.target)
    assert cue_hit_rate(weights, rows.cue) >= 0.9
    report = faithfulness(scorer, rows.items, rows.types)
    assert report.top_weighted >= report.random + 0.3
    assert report.top_weighted >= 0.9 * report.best_possible


def test_removing_the_top_weighted_event_moves_the_tiny_bundle_most(tiny_bundle: Path) -> None:
    """The tiny model predicts the successor of the newest item: that is what must weigh."""
    predictor = Predictor(tiny_bundle, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    items = rng.integers(1, 51, size=(200, predictor.max_len))
    for r, n in enumerate(rng.integers(2, predictor.max_len + 1, size=200)):
        items[r, : predictor.max_len - n] = 0
    types = np.where(items > 0, rng.integers(1, 5, size=items.shape), 0)

    def scorer(i: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        out = predictor.predict(i, t)
        return out.top_ids, out.weights

    report = faithfulness(scorer, items, types)
    assert report.top_weighted >= report.random + 0.2
    assert report.newest_first >= 0.8


def test_worker_refuses_explain_without_weights(
    plain_bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = runner.invoke(app, ["worker", "--bundle", str(plain_bundle), "--explain"])
    assert result.exit_code == 1
    assert "no history_weights output" in result.output
    assert result.output.strip().splitlines()[-1].startswith("error: explanations are on")
    monkeypatch.setenv("NBP_EXPLAIN", "true")
    result = runner.invoke(app, ["worker", "--bundle", str(plain_bundle)])
    assert result.exit_code == 1 and "re-export it with" in result.output


def ev(n: int, item: str, etype: str = "view", user: str = "u1") -> Event:
    return Event(f"{user}-e{n}", user, item, etype, 1_700_000_000_000 + n * 1000)


def test_user_state_follows_the_worker_rule() -> None:
    events = [ev(1, "i1"), ev(2, "i2"), ev(2, "i2"), ev(0, "i9"), ev(3, "i3")]
    state, last = user_state(events, max_len=3, horizon_ms=None)
    assert [s.item_id for s in state] == ["i1", "i2", "i3"]  # i9 is older: out of the window
    assert last is not None and last.event_id == "u1-e3"


@pytest.fixture()
def log_file(tmp_path: Path) -> Path:
    events = [ev(1, "i1"), ev(2, "i2", "click"), ev(3, "nope"), ev(4, "i3", "cart")]
    events += [ev(5, "i4"), ev(6, "i5"), ev(1, "i40", user="u2")]
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"".join(e.to_json() + b"\n" for e in events))
    return path


def test_explain_cli_json(tiny_bundle: Path, log_file: Path) -> None:
    args = ["explain", "--bundle", str(tiny_bundle), "--data", str(log_file), "--user", "u1"]
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    out = orjson.loads(result.stdout)
    history = out["history"]
    assert [h["item_id"] for h in history] == ["i1", "i2", "nope", "i3", "i4", "i5"]
    assert history[2]["weight"] is None  # unknown to the model: not in its input
    weights = [h["weight"] for h in history if h["weight"] is not None]
    assert abs(sum(weights) - 1) < 1e-5
    pred = out["prediction"]
    assert pred["items"][0]["item_id"] == "i6"  # the tiny model: successor of the newest
    assert pred["event_id"] == "u1-e6" and pred["history_length"] == 6
    heaviest = sorted((h for h in history if h["weight"] is not None), key=lambda h: -h["weight"])
    assert [b["item_id"] for b in pred["because"]] == [h["item_id"] for h in heaviest[:3]]
    assert pred["because"][0]["item_id"] == "i5"

    until = runner.invoke(app, [*args, "--json", "--until", str(1_700_000_000_000 + 5500)])
    assert [h["item_id"] for h in orjson.loads(until.stdout)["history"]][-1] == "i4"


def test_explain_cli_table_and_failures(
    tiny_bundle: Path, plain_bundle: Path, log_file: Path
) -> None:
    args = ["explain", "--data", str(log_file), "--user", "u1"]
    table = runner.invoke(app, [*args, "--bundle", str(tiny_bundle)])
    assert table.exit_code == 0, table.output
    assert "not in model" in table.output and "because: " in table.output
    assert "predicted next items" in table.output
    refused = runner.invoke(app, [*args, "--bundle", str(plain_bundle)])
    assert refused.exit_code == 1 and "history_weights" in refused.output
    nobody = runner.invoke(
        app, ["explain", "--data", str(log_file), "--user", "zz", "--bundle", str(tiny_bundle)]
    )
    assert nobody.exit_code == 1 and "no events" in nobody.output
