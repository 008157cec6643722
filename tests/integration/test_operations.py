"""Operations of a live worker (subprocess, real broker, real bundles): /metrics, /readyz and
/healthz during a run, hot model reload mid-stream (and a broken bundle refused), and health
turning false when the broker goes away.

The tiny model learned "after iN comes iN+1" (tests/conftest.py), so the online hit@10 of a
stream of such sequences is close to 1.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import threading
import time
import urllib.error
import urllib.request
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import pytest
from kafka_checks import new_topic, unique
from prometheus_client.parser import text_string_to_metric_families
from worker_proc import WorkerProcess, produce, read_topic, run

from nextbehavior.stream.broker import EmbeddedBroker
from nextbehavior.stream.bundle import MODEL_FILE, read_manifest, write_manifest
from nextbehavior.stream.events import parse_prediction

pytestmark = pytest.mark.timeout(180)

BASE = int(time.time() * 1000) - 600_000
CPU = "CPUExecutionProvider"
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
Spawn = Callable[[Path, dict[str, str], str], WorkerProcess]


@pytest.fixture
def spawn(tmp_path: Path, broker: EmbeddedBroker) -> Iterator[Spawn]:
    started: list[WorkerProcess] = []

    def start(bundle: Path, env: dict[str, str], name: str) -> WorkerProcess:
        worker = WorkerProcess(broker, bundle, env, tmp_path, name)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.kill()


def app_env(target: EmbeddedBroker, partitions: int = 2, **extra: str) -> dict[str, str]:
    names = [run(new_topic(target, p, partitions)) for p in ("events", "preds", "dlq")]
    return {
        "NBP_INPUT_TOPIC": names[0],
        "NBP_OUTPUT_TOPIC": names[1],
        "NBP_DLQ_TOPIC": names[2],
        "NBP_APP_ID": unique("ops"),
        "NBP_HEALTH_INTERVAL_S": "0.5",
        **extra,
    }


def event(user: int, k: int) -> tuple[bytes, bytes]:
    """User ``user``'s ``k``-th event: items i(10*user+1), i(10*user+2), ... in order."""
    uid = f"u{user}"
    body = {
        "event_id": f"{uid}-{k}",
        "user_id": uid,
        "item_id": f"i{10 * user + k + 1}",
        "event_type": "view",
        "timestamp": BASE + 1000 * k,
    }
    return uid.encode(), orjson.dumps(body)


def get(worker: WorkerProcess, path: str) -> tuple[int, bytes] | None:
    """(status, body) of GET ``path`` on the worker's web port; None while it does not answer."""
    url = f"http://127.0.0.1:{worker.web_port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=3) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None


def probe(worker: WorkerProcess, path: str) -> tuple[int, dict[str, Any]] | None:
    got = get(worker, path)
    return None if got is None else (got[0], json.loads(got[1]))


def scrape(worker: WorkerProcess) -> Samples:
    got = get(worker, "/metrics")
    assert got is not None and got[0] == 200
    out: Samples = {}
    for family in text_string_to_metric_families(got[1].decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def wait_for(
    worker: WorkerProcess, what: str, check: Callable[[], Any], timeout_s: float = 60
) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        if worker.proc.poll() is not None:
            worker.fail(f"exited with {worker.proc.returncode} while waiting for {what}")
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            worker.fail(f"no {what} within {timeout_s}s")
        time.sleep(0.1)


def model_info(version: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    return ("nextbehavior_model_info", (("model_version", version), ("provider", CPU)))


def events_total(samples: Samples, outcome: str) -> float:
    return samples.get(("nextbehavior_events_total", (("outcome", outcome),)), 0.0)


def test_metrics_readiness_and_liveness_of_a_live_run(
    broker: EmbeddedBroker, tiny_bundle: Path, spawn: Spawn
) -> None:
    version = read_manifest(tiny_bundle).model_version
    env = app_env(broker)
    worker = spawn(tiny_bundle, env, "ops")
    ready = wait_for(worker, "ready", lambda: (r := probe(worker, "/readyz")) and r[0] == 200 and r)
    assert ready[1]["model_version"] == version and ready[1]["assigned"] == 2
    assert ready[1]["broker"] == "ok" and ready[1]["reason"] == ""
    live = probe(worker, "/healthz")
    assert live is not None and live[0] == 200 and live[1]["ok"] is True

    users, per_user = 4, 10
    sent = [event(u, k) for k in range(per_user) for u in range(users)]
    sent += [(b"u0", b"not json"), (b"u1", b"{}")]
    run(produce(broker.bootstrap, env["NBP_INPUT_TOPIC"], sent))
    n = users * per_user
    got = wait_for(
        worker,
        "all events counted",
        lambda: (
            (s := scrape(worker))
            and events_total(s, "predicted") == n
            and events_total(s, "dead_lettered") == 2
            and s[("nextbehavior_event_to_prediction_seconds_count", ())] == n  # all sent
            and s
        ),
    )
    assert events_total(got, "duplicate") == 0
    assert got[model_info(version)] == 1
    batches = got[("nextbehavior_batch_size_count", ())]
    assert batches > 0 and got[("nextbehavior_batch_size_sum", ())] == n
    assert got[("nextbehavior_inference_seconds_count", ())] == batches
    assert got[("nextbehavior_inference_seconds_sum", ())] > 0
    assert got[("nextbehavior_event_to_prediction_seconds_count", ())] == n
    assert got[("nextbehavior_state_users", ())] == users
    assert got[("nextbehavior_dead_letters_total", (("error_type", "not_json"),))] == 1
    # Each user's 9 later events resolve the previous prediction; the tiny model knows i+1.
    assert got[("nextbehavior_online_scored_total", ())] == users * (per_user - 1)
    assert got[("nextbehavior_online_hit_at_10", (("scope", "total"),))] > 0.8
    lag = {k: v for k, v in got.items() if k[0] == "nextbehavior_consumer_lag"}
    assert len(lag) == 2, lag  # one series per owned input partition
    wait_for(worker, "lag 0", lambda: all(v == 0 for k, v in scrape(worker).items() if k in lag))
    assert got[("nextbehavior_model_reload_total", (("outcome", "ok"),))] == 0

    live = probe(worker, "/healthz")
    assert live is not None and live[0] == 200 and live[1]["lag"] == 0
    assert worker.terminate()[0] == 0


def copy_bundle(src: Path, root: Path, name: str, version: str, created_at: str) -> Path:
    """Drop a copy of ``src`` with its own version into ``root`` the safe way: copy under a
    dot-name (ignored by the worker), then rename (atomic)."""
    staging = root / f".{name}.tmp"
    shutil.copytree(src, staging)
    manifest = read_manifest(staging)
    write_manifest(staging, replace(manifest, model_version=version, created_at=created_at))
    final = root / name
    staging.rename(final)
    return final


def test_hot_reload_mid_stream_and_broken_bundle_refused(
    broker: EmbeddedBroker, tiny_bundle: Path, spawn: Spawn, tmp_path: Path
) -> None:
    root = tmp_path / "bundles"
    root.mkdir()
    copy_bundle(tiny_bundle, root, "first", "v1", "2024-01-01T00:00:00Z")
    env = app_env(broker, NBP_RELOAD_INTERVAL_S="0.3", NBP_LOG_JSON="true")
    worker = spawn(root, env, "reload")
    wait_for(worker, "ready", lambda: (r := probe(worker, "/readyz")) and r[0] == 200)
    assert worker.stats() is not None

    # A steady stream in the background; the bundles change under it.
    stop = threading.Event()
    sent: list[tuple[bytes, bytes]] = []

    async def stream() -> None:
        from aiokafka import AIOKafkaProducer

        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
        await producer.start()
        try:
            k = 0
            stop_at = None
            while stop_at is None or time.monotonic() < stop_at:
                for u in range(6):
                    key, value = event(u, k)
                    await producer.send(env["NBP_INPUT_TOPIC"], value, key=key)
                    sent.append((key, value))
                k += 1
                await asyncio.sleep(0.1)
                if stop_at is None and stop.is_set():
                    stop_at = time.monotonic() + 1.0  # and a little more after the swaps
            await producer.flush()
        finally:
            await producer.stop()

    producer = threading.Thread(target=lambda: asyncio.run(stream()))
    producer.start()
    try:
        wait_for(worker, "first predictions", lambda: len(sent) > 30 and _predicted(worker) > 0)
        copy_bundle(tiny_bundle, root, "second", "v2", "2024-02-01T00:00:00Z")
        wait_for(
            worker, "switch to v2", lambda: (worker.stats() or {}).get("model_version") == "v2"
        )
        # A newer but broken bundle (half-written model file): refused, v2 keeps serving.
        broken = copy_bundle(tiny_bundle, root, "third", "v3", "2024-03-01T00:00:00Z")
        with (broken / MODEL_FILE).open("r+b") as fh:
            fh.truncate(100)
        wait_for(
            worker,
            "refusal",
            lambda: (
                scrape(worker)[("nextbehavior_model_reload_total", (("outcome", "refused"),))] == 1
            ),
        )
    finally:
        stop.set()
        producer.join(60)
    assert not producer.is_alive()

    records = run(read_topic(broker.bootstrap, env["NBP_OUTPUT_TOPIC"], 2, expect=len(sent)))
    preds = [parse_prediction(r.value) for r in records]
    ids = [p.event_id for p in preds]
    assert len(ids) == len(set(ids)) == len(sent)  # every event predicted exactly once
    assert set(ids) == {json.loads(v)["event_id"] for _, v in sent}
    by_user: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for p in preds:
        by_user[p.user_id].append((int(p.event_id.split("-")[1]), p.model_version))
    for user, seq in by_user.items():  # per user, in event order: v1 ... v1 v2 ... v2
        versions = [v for _, v in sorted(seq)]
        assert versions == sorted(versions), f"{user}: {versions}"
    v1 = [p.predicted_at for p in preds if p.model_version == "v1"]
    v2 = [p.predicted_at for p in preds if p.model_version == "v2"]
    assert v1 and v2 and max(v1) <= min(v2)  # one switch, between batches
    assert {p.model_version for p in preds} == {"v1", "v2"}

    got = scrape(worker)
    assert got[("nextbehavior_model_reload_total", (("outcome", "ok"),))] == 1
    assert got[model_info("v2")] == 1
    assert model_info("v1") not in got
    assert events_total(got, "predicted") == len(sent)
    ready = probe(worker, "/readyz")
    assert ready is not None and ready[0] == 200 and ready[1]["model_version"] == "v2"
    logs = [json.loads(line) for line in worker.log.read_text().splitlines() if line[:1] == "{"]
    swaps = [r for r in logs if r["msg"].startswith("now serving model v2")]
    assert len(swaps) == 1 and swaps[0]["model_version"] == "v2"
    refusals = [r for r in logs if "third refused" in r["msg"]]
    assert len(refusals) == 1 and refusals[0]["level"] == "ERROR"
    assert worker.terminate()[0] == 0


def _predicted(worker: WorkerProcess) -> int:
    stats = worker.stats() or {}
    return int(stats.get("events", {}).get("predicted", 0))


def test_health_turns_false_when_the_broker_goes_away(tiny_bundle: Path, tmp_path: Path) -> None:
    with EmbeddedBroker(log_path=tmp_path / "own-broker.log") as own:
        env = app_env(own, NBP_LIVENESS_STALL_S="3")
        worker = WorkerProcess(own, tiny_bundle, env, tmp_path, "orphan")
        try:
            wait_for(worker, "ready", lambda: (r := probe(worker, "/readyz")) and r[0] == 200)
            own.stop()
            ready = wait_for(
                worker, "not ready", lambda: (r := probe(worker, "/readyz")) and r[0] == 503 and r
            )
            assert "broker unreachable" in ready[1]["reason"] and ready[1]["broker"] == "down"
            live = wait_for(
                worker, "not live", lambda: (r := probe(worker, "/healthz")) and r[0] == 503 and r
            )
            assert "broker unreachable for" in live[1]["reason"]
        finally:
            worker.kill()
