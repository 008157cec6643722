"""docker-compose.yml cannot run here (no Docker engine), so this keeps it honest: services,
ports, env names (real Settings fields), and commands that the CLI really parses."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import typer
import typer.main
import yaml

from nextbehavior.stream.cli import app
from nextbehavior.stream.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]
APP_SERVICES = ("topics", "worker")


def _env(service: str) -> dict[str, str]:
    """The service's environment, with ``${VAR:-default}`` resolved to its default."""
    env = SERVICES[service].get("environment", {})
    out = {}
    for key, value in env.items():
        text = str(value)
        out[key] = re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", text)
    return out


def _parse(args: list[str]) -> Any:
    """Resolve ``args`` through the real CLI and parse the options, without running anything.

    Raises the CLI's usage error for an unknown command or option."""
    command: Any = typer.main.get_command(app)
    rest = list(args)
    while hasattr(command, "commands"):  # a group (typer vendors its own click)
        name = rest.pop(0)
        sub = command.get_command(typer.Context(command), name)
        assert sub is not None, f"no command {name!r} in the CLI"
        command = sub
    return command.make_context(command.name or "?", rest)


def test_services() -> None:
    assert set(SERVICES) >= {"kafka", "topics", "worker"}


def test_kafka_is_pinned_single_node_kraft() -> None:
    kafka = SERVICES["kafka"]
    assert re.fullmatch(r"apache/kafka:\d+\.\d+\.\d+", kafka["image"])
    docker_tier = (ROOT / "tests/docker/conftest.py").read_text()
    assert f'"{kafka["image"]}"' in docker_tier, "the docker test tier runs the same image"
    env = _env("kafka")
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert not any("ZOOKEEPER" in key for key in env)
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"{env['KAFKA_NODE_ID']}@kafka:9093"
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", env["CLUSTER_ID"])
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"  # topics are created explicitly
    assert "PLAINTEXT://kafka:9092" in env["KAFKA_ADVERTISED_LISTENERS"].split(",")


def test_kafka_host_port_matches_an_advertised_listener() -> None:
    env = _env("kafka")
    advertised = {url.split("://")[1] for url in env["KAFKA_ADVERTISED_LISTENERS"].split(",")}
    for mapping in SERVICES["kafka"]["ports"]:
        host_ip, host_port, container_port = str(mapping).split(":")
        assert host_ip == "127.0.0.1", "expose Kafka on loopback only"
        assert f"localhost:{host_port}" in advertised
        listeners = env["KAFKA_LISTENERS"]
        assert f"0.0.0.0:{container_port}" in listeners


@pytest.mark.parametrize("service", APP_SERVICES)
def test_env_names_are_settings_fields(service: str) -> None:
    env = _env(service)
    assert env, f"{service} sets no NBP_ variables"
    fields = {f"NBP_{name.upper()}" for name in Settings.model_fields}
    assert set(env) <= fields, f"unknown settings: {set(env) - fields}"


@pytest.mark.parametrize("service", APP_SERVICES)
def test_env_values_are_valid_settings(service: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in _env(service).items():
        monkeypatch.setenv(key, value)
    Settings()  # raises on any bad value


@pytest.mark.parametrize("service", APP_SERVICES)
def test_commands_exist_in_the_cli(service: str) -> None:
    ctx = _parse(list(SERVICES[service]["command"]))
    broker = ctx.params.get("broker") or _env(service).get("NBP_BROKER")
    assert broker == "kafka://kafka:9092", "containers reach Kafka by its service name"


def test_parse_catches_unknown_commands_and_options() -> None:
    with pytest.raises(AssertionError, match="no command"):
        _parse(["topics", "explode"])
    with pytest.raises(Exception, match="No such option"):
        _parse(["worker", "--bundel", "/bundles"])


def test_start_order() -> None:
    assert SERVICES["topics"]["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert SERVICES["topics"]["restart"] == "no"
    worker_deps = SERVICES["worker"]["depends_on"]
    assert worker_deps["topics"]["condition"] == "service_completed_successfully"


def test_worker_scales() -> None:
    """`docker compose up --scale worker=N` needs no fixed name and no host ports."""
    worker = SERVICES["worker"]
    assert "container_name" not in worker
    assert "ports" not in worker
    assert _env("worker")["NBP_BROKER_COMPAT"] == "kafka"  # never the Tansu fixes on Kafka
    assert any(str(v).endswith(":/bundles:ro") for v in worker["volumes"])


def test_image_is_built_from_this_repo() -> None:
    for service in APP_SERVICES:
        assert SERVICES[service]["build"] == "."
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim$", dockerfile, re.M)
    assert re.search(r"^RUN pip install \. ", dockerfile, re.M), "runtime only, no extras"
    assert not re.search(r"^RUN .*torch", dockerfile, re.M)
    assert 'ENTRYPOINT ["nextbehavior"]' in dockerfile


def test_worker_healthcheck_asks_liveness_on_its_web_port() -> None:
    check = " ".join(SERVICES["worker"]["healthcheck"]["test"])
    port = _env("worker")["NBP_WEB_PORT"]
    assert f"http://127.0.0.1:{port}/healthz" in check
    assert check.startswith("CMD python -c ")  # the slim image has python, not curl


def test_worker_watches_the_bundle_directory() -> None:
    ctx = _parse(list(SERVICES["worker"]["command"]))
    assert str(ctx.params["bundle"]) == "/bundles"  # a directory of bundles, newest served
    assert float(_env("worker")["NBP_RELOAD_INTERVAL_S"]) > 0


def test_prometheus_is_optional_and_scrapes_every_worker() -> None:
    prom = SERVICES["prometheus"]
    assert prom["profiles"] == ["monitoring"]
    assert re.fullmatch(r"prom/prometheus:v\d+\.\d+\.\d+", prom["image"])
    mounts = {m.split(":")[1]: ROOT / m.split(":")[0] for m in prom["volumes"]}
    config = yaml.safe_load(mounts["/etc/prometheus/prometheus.yml"].read_text())
    assert set(config["rule_files"]) <= set(mounts)
    (job,) = config["scrape_configs"]
    assert job["metrics_path"] == "/metrics"
    (sd,) = job["dns_sd_configs"]
    assert sd["names"] == ["worker"] and sd["type"] == "A"  # all replicas of the service
    assert sd["port"] == int(_env("worker")["NBP_WEB_PORT"])
    for mapping in prom["ports"]:
        assert str(mapping).startswith("127.0.0.1:")


def test_alerts_use_metrics_the_worker_exports() -> None:
    from nextbehavior.stream.metrics import WorkerMetrics
    from nextbehavior.stream.online_eval import OnlineEvaluator
    from nextbehavior.stream.stats import Stats

    metrics = WorkerMetrics(
        Stats(), evaluator=OnlineEvaluator(), state_users=lambda: 0, lag=lambda: {("t", 0): 0}
    )
    exported = {
        line.split("{")[0].split(" ")[0]
        for line in metrics.render().decode().splitlines()
        if line and not line.startswith("#")
    }
    rules = yaml.safe_load((ROOT / "deploy/alerts.yml").read_text())
    used = {
        name
        for group in rules["groups"]
        for rule in group["rules"]
        for name in re.findall(r"\bnextbehavior_[a-z0-9_]+", rule["expr"])
    }
    assert used and used <= exported, used - exported
