"""Online evaluation of a live replay agrees with an offline evaluation of the same events.

A small log (users walking the tiny model's "iN -> iN+1" pattern, with random jumps and
behavior-type noise, so the figures are neither 0 nor 1) is replayed with ``nextbehavior
replay`` through a real worker serving the real tiny bundle. ``monitor`` joins each prediction
with the user's next event; :func:`offline_metrics` scores the same (history, next event) pairs
through the same bundle without Kafka, with the training side's metric code. They must agree:
the streaming path (state, ordering, batching, the join) must not change what the model says.
The tolerance (0.02) only allows for a near-tie in scores flipping two neighbours in a top-k
list between batched and unbatched inference; in practice the figures are identical.
"""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path

import orjson
import pytest
from replay_helpers import env, topic_settings
from typer.testing import CliRunner
from worker_proc import WorkerProcess

from nextbehavior.stream.broker import EmbeddedBroker
from nextbehavior.stream.cli import app
from nextbehavior.stream.events import Event
from nextbehavior.stream.monitor import MonitorState, monitor
from nextbehavior.stream.offline_eval import offline_metrics
from nextbehavior.stream.predictor import Predictor

pytestmark = pytest.mark.timeout(240)

TYPES = ("view", "click", "cart", "purchase")


def walk_log(n_users: int = 24, length: int = 14, seed: int = 3) -> list[Event]:
    """Users mostly follow iN -> iN+1, sometimes jump; types mostly cycle. Time-ordered."""
    rng = random.Random(seed)
    events = []
    for u in range(n_users):
        item, kind, ts = rng.randrange(1, 51), rng.randrange(4), 1_700_000_000_000 + u * 7
        for k in range(length):
            events.append(Event(f"u{u}-{k}", f"u{u}", f"i{item}", TYPES[kind], ts))
            item = item % 50 + 1 if rng.random() < 0.6 else rng.randrange(1, 51)
            kind = (kind + 1) % 4 if rng.random() < 0.7 else rng.randrange(4)
            ts += rng.choice((0, 1000, 5000))  # ties too
    return sorted(events, key=lambda e: e.timestamp)  # stable: per-user order kept


def test_online_metrics_of_a_replay_match_offline_evaluation(
    broker: EmbeddedBroker, tiny_bundle: Path, tmp_path: Path
) -> None:
    settings = topic_settings(broker)
    events = walk_log()
    data = tmp_path / "walk.jsonl"
    data.write_bytes(b"".join(e.to_json() + b"\n" for e in events))
    worker = WorkerProcess(
        broker, tiny_bundle,
        {**env(settings), "NBP_APP_ID": f"online-{time.monotonic_ns()}", "NBP_PARTITIONS": "4"},
        tmp_path, "online",
    )  # fmt: skip
    try:
        worker.wait_ready()
        replay = CliRunner().invoke(
            app, ["replay", "--data", str(data), "--json"], env=env(settings)
        )
        assert replay.exit_code == 0, replay.output
        assert orjson.loads(replay.stdout.splitlines()[-1])["sent"] == len(events)

        state = MonitorState()
        done = lambda: state.events >= len(events) and state.predictions >= len(events)  # noqa: E731
        asyncio.run(monitor(settings, state, stop=done, duration_s=90))
        if not done():
            worker.fail(f"monitor saw {state.events} events, {state.predictions} predictions")
    finally:
        code, _ = worker.terminate()
    assert code == 0

    online = state.evaluator
    offline = offline_metrics(Predictor(tiny_bundle, ("CPUExecutionProvider",)), events)
    assert online.scored == offline["pairs"] == len(events) - 24
    total = online.total()
    for name in ("hit@5", "ndcg@5", "hit@10", "ndcg@10", "type_accuracy"):
        assert total[name] == pytest.approx(offline[name], abs=0.02), name
    assert 0.3 < total["hit@10"] < 0.95  # a real, imperfect model: the check has teeth
    assert online.summary()["waiting_for_next_event"] == 24  # each user's last prediction
