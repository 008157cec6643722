"""The CLI root and the infra commands, without a broker: exit codes and one-line reasons."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from nextbehavior.stream import __version__
from nextbehavior.stream.cli import app

runner = CliRunner()


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == f"nextbehavior {__version__}"


def test_python_dash_m_works() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "nextbehavior.stream", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"nextbehavior {__version__}"


def test_help_lists_the_infra_commands() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for name in ("broker", "topics", "schema"):
        assert name in result.stdout
    topics = runner.invoke(app, ["topics", "--help"])
    assert "create" in topics.stdout and "list" in topics.stdout


def _one_line_error(args: list[str], env: dict[str, str] | None = None) -> str:
    result = runner.invoke(app, args, env=env)
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("command", [["topics", "create"], ["topics", "list"]])
def test_unreachable_broker(command: list[str]) -> None:
    url = f"kafka://127.0.0.1:{_closed_port()}"
    line = _one_line_error([*command, "--broker", url], env={"NBP_REQUEST_TIMEOUT_S": "5"})
    assert "cannot reach broker" in line


def test_bad_broker_url() -> None:
    line = _one_line_error(["topics", "create", "--broker", "http://h:1"])
    assert "bad setting broker" in line and "kafka://" in line


def test_bad_setting_from_env() -> None:
    line = _one_line_error(["topics", "create"], env={"NBP_PARTITIONS": "zero"})
    assert "bad setting partitions" in line


def test_broker_port_in_use() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        line = _one_line_error(["broker", "--port", str(port)])
    assert "already in use" in line


def test_broker_binary_missing() -> None:
    line = _one_line_error(["broker", "--port", "0"], env={"CALF_TANSU_BIN": "/nonexistent"})
    assert "Tansu" in line and "/nonexistent" in line
