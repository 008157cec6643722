"""Broker compat without a broker: decided by the setting, applied to a Faust app or not."""

from __future__ import annotations

import faust
import pytest

from nextbehavior.stream.compat import (
    TANSU_FETCH_MAX_WAIT_MS,
    TANSU_HEARTBEAT_S,
    TANSU_SESSION_TIMEOUT_S,
    BrokerCompat,
    CompatError,
    apply_compat,
    resolve_compat,
)
from nextbehavior.stream.safe_fetch import SafeConsumerThread, install_safe_fetch
from nextbehavior.stream.settings import Settings

UNREACHABLE = "kafka://127.0.0.1:1"


def test_setting_decides_without_probing() -> None:
    assert resolve_compat(Settings(broker=UNREACHABLE, broker_compat="tansu")).enabled
    assert not resolve_compat(Settings(broker=UNREACHABLE, broker_compat="kafka")).enabled


def test_tls_brokers_count_as_kafka() -> None:
    s = Settings(broker=UNREACHABLE, security_protocol="SSL")
    assert not resolve_compat(s).enabled


def _app() -> faust.App:
    return faust.App("compat-unit", broker=UNREACHABLE, store="memory://")


def test_disabled_changes_nothing() -> None:
    app = _app()
    transport = app.transport
    session = app.conf.broker_session_timeout
    assert apply_compat(app, BrokerCompat(False, "test")) is False
    assert app.transport is transport
    assert app.conf.broker_session_timeout == session


def test_enabled_installs_the_fixes(caplog: pytest.LogCaptureFixture) -> None:
    from faust.transport.drivers import aiokafka as driver

    app = _app()
    assert apply_compat(app, BrokerCompat(True, "test reason")) is True
    assert app.conf.broker_session_timeout == TANSU_SESSION_TIMEOUT_S
    assert app.conf.broker_heartbeat_interval == TANSU_HEARTBEAT_S
    consumer_cls = type(app.transport).Consumer
    assert issubclass(consumer_cls, driver.Consumer) and consumer_cls is not driver.Consumer
    assert isinstance(app.consumer._thread, SafeConsumerThread)  # and it fetches safely
    assert "test reason" in caplog.text  # never silent


def test_safe_fetches_go_on_aiokafka_apps_only(caplog: pytest.LogCaptureFixture) -> None:
    app = _app()
    assert install_safe_fetch(app) is True
    assert isinstance(app.consumer._thread, SafeConsumerThread)
    other = faust.App("compat-unit-confluent", broker="confluent://127.0.0.1:1")
    assert install_safe_fetch(other) is False
    assert other._transport is None and "left out" in caplog.text  # Faust builds its own


def test_enabled_keeps_shorter_timeouts() -> None:
    app = faust.App(
        "compat-unit-2",
        broker=UNREACHABLE,
        broker_session_timeout=2.0,
        broker_heartbeat_interval=0.5,
    )
    apply_compat(app, BrokerCompat(True, "test"))
    assert (app.conf.broker_session_timeout, app.conf.broker_heartbeat_interval) == (2.0, 0.5)


def test_exactly_once_is_refused() -> None:
    app = faust.App("compat-unit-3", broker=UNREACHABLE, processing_guarantee="exactly_once")
    with pytest.raises(CompatError, match="exactly_once"):
        apply_compat(app, BrokerCompat(True, "test"))


async def test_enabled_shortens_the_worker_consumer_fetch_wait() -> None:
    """Tansu holds a Fetch for its whole max wait: Faust's fixed 1500 ms would be latency."""
    waits = []
    for enabled in (False, True):
        app = _app()
        apply_compat(app, BrokerCompat(enabled, "test"))
        consumer = app.consumer._thread._create_worker_consumer(app.transport)
        waits.append(consumer._fetch_max_wait_ms)
        await consumer.stop()
    assert waits == [1500, TANSU_FETCH_MAX_WAIT_MS]
