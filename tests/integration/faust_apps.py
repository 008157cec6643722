"""What the one-table Faust test apps share: their settings, and how a test runs one.

The apps (``faust_recovery_app.py``, ``faust_resume_app.py``, ``faust_changelog_app.py``) are
scripts run as ``python <app> worker`` in a child process; this module sits beside them, so
both they and the tests import it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import faust

from nextbehavior.stream.compat import BrokerCompat, apply_compat
from nextbehavior.stream.recovery import SafeTableManager


def table_app(app_id: str, broker: str, out: Path, **settings: Any) -> faust.App:
    """A Faust app for one-partition topics and tables held in memory, no web server, no
    standby replicas, no recovery delay; ``settings`` add to or override these."""
    base: dict[str, Any] = {
        "broker": broker,
        "store": "memory://",
        "datadir": str(out / "data"),
        "web_enabled": False,
        "topic_partitions": 1,
        "table_standby_replicas": 0,
        "stream_recovery_delay": 0.0,
    }
    return faust.App(app_id, **{**base, **settings})


def worker_like_app(prefix: str, out: Path, reason: str) -> tuple[faust.App, faust.TopicT]:
    """A :func:`table_app` set up as the worker runs on Tansu (``earliest``, the compat fixes),
    with ``TableManager=SafeTableManager`` when ``<prefix>_FIX`` is ``on`` (plain Faust when
    ``off``); and its 1-partition raw source topic ``<prefix>_SOURCE``. Reads
    ``<prefix>_APP_ID`` and ``<prefix>_BROKER``."""
    env = os.environ
    fix: dict[str, Any] = {"TableManager": SafeTableManager} if env[f"{prefix}_FIX"] == "on" else {}
    app = table_app(
        env[f"{prefix}_APP_ID"],
        env[f"{prefix}_BROKER"],
        out,
        consumer_auto_offset_reset="earliest",
        **fix,
    )
    apply_compat(app, BrokerCompat(True, reason))  # as the worker: 10 ms fetch waits
    source = app.topic(
        env[f"{prefix}_SOURCE"], value_type=bytes, value_serializer="raw", partitions=1
    )
    return app, source


def start_app(script: Path, env: dict[str, str], out: Path, log: Path) -> subprocess.Popen[bytes]:
    """``python <script> worker`` with ``env`` added, in ``out``, its output in ``log``."""
    return subprocess.Popen(
        [sys.executable, str(script), "worker", "--without-web", "--loglevel", "info"],
        env={**os.environ, **env},
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        cwd=out,
    )
