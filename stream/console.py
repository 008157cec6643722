"""Shared pieces of the command line: options, one-line failures, logging setup."""

from __future__ import annotations

import logging
import sys
import time
from typing import Annotated, Any, NoReturn

import orjson
import typer

BrokerOption = Annotated[
    str | None,
    typer.Option(
        "--broker", help="kafka://HOST:PORT (default: NBP_BROKER, else kafka://127.0.0.1:9092)"
    ),
]


class CommandError(Exception):
    """An expected failure: the CLI prints its message on one line and exits non-zero."""


def fail(message: str, code: int = 1) -> NoReturn:
    """Print a one-line reason on stderr and exit with ``code``."""
    typer.echo(f"error: {' '.join(str(message).split())}", err=True)
    raise typer.Exit(code)


class JsonFormatter(logging.Formatter):
    """One JSON object per line; extra fields (user_id, event_id, model_version) pass through."""

    FIELDS = ("user_id", "event_id", "model_version", "partition", "offset")

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for name in self.FIELDS:
            if hasattr(record, name):
                out[name] = getattr(record, name)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(out, default=str).decode()


def setup_logging(level: str = "INFO", json_lines: bool = False) -> None:
    """Configure the root logger once, on stderr."""
    handler = logging.StreamHandler(sys.stderr)
    if json_lines:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
