"""Settings: env prefix NBP_, flags beat env, broker URL parsing."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from nextbehavior.stream.settings import DEFAULT_BROKER, Settings, bootstrap_servers, get_settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("NBP_"):
            monkeypatch.delenv(name)


def test_defaults() -> None:
    s = get_settings()
    assert s.broker == DEFAULT_BROKER == "kafka://127.0.0.1:9092"
    assert s.bootstrap == "127.0.0.1:9092"
    assert (s.input_topic, s.output_topic, s.dlq_topic) == (
        "behavior-events",
        "behavior-predictions",
        "behavior-events.dlq",
    )
    assert s.partitions == 4
    assert s.broker_compat == "auto"


def test_env_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NBP_PARTITIONS", "7")
    monkeypatch.setenv("NBP_BROKER", "kafka://kafka:9092")
    monkeypatch.setenv("NBP_EXPLAIN", "true")
    monkeypatch.setenv("NBP_BUNDLE", "/bundles")
    monkeypatch.setenv("NBP_PROVIDERS", "CPUExecutionProvider, CUDAExecutionProvider")
    monkeypatch.setenv("PARTITIONS", "99")  # no prefix: ignored
    s = get_settings()
    assert s.partitions == 7
    assert s.bootstrap == "kafka:9092"
    assert s.explain is True
    assert s.bundle == Path("/bundles")
    assert s.providers == ["CPUExecutionProvider", "CUDAExecutionProvider"]


def test_flags_beat_env_and_none_is_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NBP_BROKER", "kafka://from-env:1")
    monkeypatch.setenv("NBP_PARTITIONS", "3")
    s = get_settings(broker="kafka://from-flag:2", partitions=None)
    assert s.broker == "kafka://from-flag:2"
    assert s.partitions == 3


def test_bad_env_value_is_a_validation_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NBP_PARTITIONS", "0")
    with pytest.raises(ValidationError, match="partitions"):
        get_settings()
    monkeypatch.setenv("NBP_PARTITIONS", "2")
    monkeypatch.setenv("NBP_BROKER_COMPAT", "maybe")
    with pytest.raises(ValidationError, match="broker_compat"):
        get_settings()


def test_settings_are_frozen() -> None:
    s = get_settings()
    with pytest.raises(ValidationError):
        s.partitions = 5  # type: ignore[misc]


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("kafka://127.0.0.1:9092", "127.0.0.1:9092"),
        ("kafka://h1:9092;h2:9093", "h1:9092,h2:9093"),
        ("kafka://h1:9092,h2:9093", "h1:9092,h2:9093"),
        ("h1:9092", "h1:9092"),
        (" kafka://h1:9092 ; h2:1 ", "h1:9092,h2:1"),
        ("kafka://[::1]:9092", "[::1]:9092"),
    ],
)
def test_bootstrap_servers(url: str, expected: str) -> None:
    assert bootstrap_servers(url) == expected


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://h:1", "must start with kafka://"),
        ("kafka://", "no host"),
        ("", "no host"),
        ("kafka://h1", "HOST:PORT"),
        ("kafka://h1:port", "HOST:PORT"),
        ("kafka://:9092", "HOST:PORT"),
        ("kafka://h1:99999", "HOST:PORT"),
    ],
)
def test_bad_broker_urls(url: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        bootstrap_servers(url)
    with pytest.raises(ValidationError, match=reason):
        Settings(broker=url)
