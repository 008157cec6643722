"""The worker's Faust app as ``build_app`` wires it, without a broker."""

from __future__ import annotations

from pathlib import Path

import pytest

from nextbehavior.stream.compat import BrokerCompat
from nextbehavior.stream.predictor import Predictor
from nextbehavior.stream.safe_fetch import SafeConsumerThread
from nextbehavior.stream.settings import Settings
from nextbehavior.stream.worker import ACTIVITY_TABLE, STATE_TABLE, build_app


@pytest.mark.parametrize("tansu", [False, True], ids=["kafka", "tansu"])
def test_every_broker_gets_safe_fetches_and_both_tables(
    tiny_bundle: Path, tmp_path: Path, tansu: bool
) -> None:
    settings = Settings(broker="kafka://127.0.0.1:1", app_id=f"wiring-{tansu}", state_dir=tmp_path)
    predictor = Predictor(tiny_bundle, ["CPUExecutionProvider"])
    worker = build_app(settings, predictor, partitions=3, compat=BrokerCompat(tansu, "test"))
    # Faust drops records fetched across a rebalance unless the consumer thread guards them
    assert isinstance(worker.app.consumer._thread, SafeConsumerThread)
    changelogs = worker.changelog_topics()
    assert len(changelogs) == 2
    assert any(STATE_TABLE in t for t in changelogs) and any(
        ACTIVITY_TABLE in t for t in changelogs
    )
    assert all(t.startswith(f"wiring-{tansu}") for t in changelogs)
