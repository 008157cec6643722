"""`nextbehavior worker` refuses to start with a one-line reason (no broker needed)."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from nextbehavior.stream.cli import app

runner = CliRunner()


def test_worker_without_a_bundle_fails_in_one_line() -> None:
    result = runner.invoke(app, ["worker"], env={"NBP_BUNDLE": None})
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [
        "error: no model bundle: pass --bundle DIR or set NBP_BUNDLE"
    ]


def test_worker_refuses_an_incomplete_bundle(tmp_path: Path) -> None:
    (tmp_path / "manifest.json").write_text("{}")
    result = runner.invoke(app, ["worker", "--bundle", str(tmp_path)])
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "model.onnx is missing" in lines[0]


def test_worker_help_names_its_options() -> None:
    result = runner.invoke(app, ["worker", "--help"])
    assert result.exit_code == 0
    for option in ("--bundle", "--broker", "--app-id", "--web-port", "--batch-size"):
        assert option in result.stdout
