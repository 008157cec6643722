"""``nextbehavior demo``: the whole loop on one machine, started and stopped by one command.

Embedded broker -> topics -> a small model trained on synthetic multi-behavior data (or on
``--data``) -> ONNX bundle -> a worker process -> a replay of held-out users' events (plus a few
bad records, for the dead-letter path) -> predictions shown as they arrive, scored online
against each user's next event -> the same pairs scored offline through the bundle -> summary.
Everything started here is stopped here, on success, error, Ctrl-C or SIGTERM (an ExitStack,
closed with those signals held). Torch never runs in this process: training and export run in
a child (:mod:`nextbehavior.stream.demo_training`), so a Ctrl-C always lands in Python code here.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nextbehavior.stream.broker import EmbeddedBroker
from nextbehavior.stream.demo_training import (
    TrainingError,
    TrainJob,
    training_child,
    training_result,
)
from nextbehavior.stream.demo_view import DemoView
from nextbehavior.stream.events import Event
from nextbehavior.stream.interrupts import Interrupts
from nextbehavior.stream.monitor import MonitorState, monitor
from nextbehavior.stream.publisher import send_events
from nextbehavior.stream.settings import Settings, get_settings
from nextbehavior.stream.topics import app_topics, ensure_topics
from nextbehavior.stream.worker_process import WORKER_MODULE, ChildProcess

BAD_RECORDS: list[tuple[bytes, bytes]] = [
    (b"u-bad-1", b"this is not JSON"),
    (b"u-bad-2", b'{"user_id": "u-bad-2", "item_id": "i1", "event_type": "view"}'),
    (b"u-bad-3", b'{"event_id": "b3", "user_id": "u-bad-3", "item_id": "i1", '
     b'"event_type": "view", "timestamp": "yesterday"}'),
    (b"u-bad-4", b'{"event_id": "b4", "user_id": "u-bad-4", "item_id": "i1", '
     b'"event_type": "view", "timestamp": 1, "price": 3}'),
    (b"u-bad-5", b"[1, 2, 3]"),
]  # fmt: skip


class DemoError(RuntimeError):
    """The demo could not finish; one-line reason."""


@dataclass(frozen=True)
class DemoOptions:
    data: Path | None = None  # None: synthetic multi-behavior data
    fmt: str = "auto"
    events: int = 2000  # events of held-out users to replay
    train_users: int = 800  # synthetic data only
    train_seconds: float = 45.0
    replay_seconds: float = 15.0  # the replay is paced to last about this long
    workdir: Path | None = None  # kept when given, else a temporary directory
    seed: int = 0
    drain_timeout_s: float = 60.0


def split_users(events: list[Event], n_replay: int, seed: int) -> tuple[list[Event], list[Event]]:
    """(training events, replay events): whole users, drawn at random, until ``n_replay``."""
    import numpy as np

    counts: dict[str, int] = {}
    for e in events:
        counts[e.user_id] = counts.get(e.user_id, 0) + 1
    users = sorted(counts)
    chosen: set[str] = set()
    total = 0
    for i in np.random.default_rng(seed).permutation(len(users)):
        if total >= n_replay or len(chosen) >= len(users) // 2:
            break
        chosen.add(users[int(i)])
        total += counts[users[int(i)]]
    train = [e for e in events if e.user_id not in chosen]
    replay = [e for e in events if e.user_id in chosen][:n_replay]
    return train, replay


def load_demo_data(opts: DemoOptions) -> tuple[list[Event], list[Event], str]:
    """(training events, replay events, both in time order, a description)."""
    if opts.data is None:
        from nextbehavior.model.synthetic import SyntheticConfig, generate

        n_users = opts.train_users + opts.events // 12 + 1
        events = list(generate(SyntheticConfig(n_users=n_users, seed=opts.seed)).events())
        source = f"synthetic multi-behavior log ({n_users} users, view/cart/purchase funnel)"
    else:
        from nextbehavior.model.loaders import load_events

        table = load_events(opts.data, opts.fmt)
        events = [table.event(int(i)) for i in table.time_order()]
        source = str(opts.data)
    train, replay = split_users(events, opts.events, opts.seed)
    if not train or not replay:
        raise DemoError(f"{source}: too few users to hold some out for the replay")
    return train, replay, source


@contextlib.contextmanager
def worker_process(
    settings: Settings, bundle: Path, workdir: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """``nextbehavior worker`` as a child process (its log in ``workdir/worker.log``); stopped
    with SIGTERM (then SIGKILL) on the way out, and on Linux also if the demo itself dies."""
    env = {
        "NBP_BROKER": settings.broker,
        "NBP_APP_ID": settings.app_id,
        "NBP_STATE_DIR": str(workdir / "state"),
        "NBP_PARTITIONS": str(settings.partitions),
    }
    args = [*WORKER_MODULE, "--bundle", str(bundle)]
    child = ChildProcess("worker", args, env, workdir, append_log=True)  # fresh web port
    try:
        yield child.proc
    finally:
        child.stop(timeout_s=20.0)


def _log_tail(path: Path, lines: int = 8) -> str:
    text = path.read_text(errors="replace").strip().splitlines() if path.exists() else []
    return " | ".join(text[-lines:])


async def _replay_and_watch(
    settings: Settings,
    replay: list[Event],
    view: DemoView,
    worker: subprocess.Popen[bytes],
    opts: DemoOptions,
) -> tuple[MonitorState, int]:
    """Replay while the monitor scores what comes back; wait until every event is predicted."""
    state = MonitorState()
    finished = False
    span_s = max(1.0, (replay[-1].timestamp - replay[0].timestamp) / 1000.0)
    view.expected = len(replay)
    view.start_live(state)
    watcher = asyncio.create_task(
        monitor(settings, state, stop=lambda: finished, on_prediction=view.add_prediction,
                on_tick=view.refresh, tick_s=0.25)
    )  # fmt: skip
    try:
        sent = await send_events(
            settings, replay, first_ts_ms=replay[0].timestamp,
            speed=span_s / opts.replay_seconds, raw=BAD_RECORDS,
        )  # fmt: skip
        wanted = {e.event_id for e in replay}
        deadline = time.monotonic() + opts.drain_timeout_s
        view.status = "replay sent; waiting for the last predictions"
        while not watcher.done() and time.monotonic() < deadline and worker.poll() is None:
            if wanted <= view.predicted and state.dead_letters >= len(BAD_RECORDS):
                break
            await asyncio.sleep(0.2)
    finally:
        finished = True
        try:  # a Ctrl-C (this task cancelled) while waiting here propagates
            await asyncio.wait({watcher}, timeout=10)
        finally:
            view.stop_live()
            if not watcher.done():
                watcher.cancel()
    if watcher.done() and not watcher.cancelled():
        watcher.result()  # the monitor's own error, if it had one
    return state, sent.sent - len(BAD_RECORDS)


def run_demo(opts: DemoOptions, view: DemoView) -> dict[str, Any]:
    """Run everything; return the summary (raises :class:`DemoError` when the loop broke).

    Ctrl-C or SIGTERM at any moment: what was started is stopped (the signals held meanwhile),
    then ``KeyboardInterrupt`` is raised."""
    seconds: dict[str, float] = {}
    started = time.monotonic()
    stack = contextlib.ExitStack()
    interrupts = stack.enter_context(Interrupts())  # its handlers go last, after the cleanup
    try:
        workdir = opts.workdir or Path(
            stack.enter_context(tempfile.TemporaryDirectory(prefix="nextbehavior-demo-"))
        )
        workdir.mkdir(parents=True, exist_ok=True)

        t = time.monotonic()
        view.phase("starting the embedded Kafka-protocol broker and creating the topics")
        broker = EmbeddedBroker()
        stack.callback(broker.stop)  # before start: a Ctrl-C while it starts stops it too
        broker.start()
        interrupts.check()  # a KeyboardInterrupt can be lost in a fork hook: see Interrupts
        settings = get_settings(
            broker=broker.url, app_id=f"nextbehavior-demo-{uuid.uuid4().hex[:8]}"
        )
        interrupts.run(ensure_topics(settings, app_topics(settings)))
        view.done(
            f"broker at {broker.bootstrap} (pid {broker.pid})",
            seconds.setdefault("broker", time.monotonic() - t),
        )

        t = time.monotonic()
        view.phase("preparing data (held-out users are replayed later)")
        train, replay, source = load_demo_data(opts)
        interrupts.check()
        view.done(
            f"{source}: {len(train):,} training events, {len(replay):,} to replay",
            seconds.setdefault("data", time.monotonic() - t),
        )
        view.events.update({e.event_id: e for e in replay})

        t = time.monotonic()
        view.phase(
            f"training a small Transformer (budget {opts.train_seconds:.0f}s), exporting to ONNX"
        )
        job = TrainJob(workdir, source, opts.train_seconds, opts.seed, os.getpid())
        trainer = stack.enter_context(training_child(job, train))  # torch runs there, not here
        try:
            bundle, metrics = training_result(trainer, workdir)
        except TrainingError as exc:
            raise DemoError(str(exc)) from None
        interrupts.check()
        test = metrics.get("test", {})
        view.done(
            f"test ndcg@10 {test.get('ndcg@10', 0.0):.4f}, hit@10 {test.get('hit@10', 0.0):.4f} "
            f"after {metrics.get('epochs_run')} epochs; bundle {bundle}",
            seconds.setdefault("train+export", time.monotonic() - t),
        )

        t = time.monotonic()
        view.phase("starting a worker, replaying events, scoring predictions as they arrive")
        worker = stack.enter_context(worker_process(settings, bundle, workdir))
        view.console.print(f"  worker pid {worker.pid}, log {workdir / 'worker.log'}")
        state, sent = interrupts.run(_replay_and_watch(settings, replay, view, worker, opts))
        seconds["replay+predict"] = time.monotonic() - t
        if worker.poll() is not None:
            raise DemoError(
                f"the worker exited with code {worker.returncode}: "
                + _log_tail(workdir / "worker.log")
            )

        t = time.monotonic()
        from nextbehavior.stream.offline_eval import offline_metrics
        from nextbehavior.stream.predictor import Predictor

        offline = offline_metrics(Predictor(bundle, intra_op_threads=1), replay)
        seconds["offline check"] = time.monotonic() - t
        interrupts.check()
    finally:
        t = time.monotonic()
        with interrupts.held():
            stack.close()
    seconds["stop"] = time.monotonic() - t
    seconds["total"] = time.monotonic() - started
    summary: dict[str, Any] = {
        "counts": {
            "events_sent": sent,
            "bad_events_sent": len(BAD_RECORDS),
            "predictions_received": state.predictions,
            "dead_letters": state.dead_letters,
            "users": len({e.user_id for e in replay}),
        },
        "online": state.evaluator.summary(),
        "offline": offline,
        "model": {"test_ndcg@10": metrics.get("test", {}).get("ndcg@10", 0.0), "source": source},
        "dead_letter_types": state.dead_letter_types,
        "seconds": {k: round(v, 2) for k, v in seconds.items()},
    }
    missing = len({e.event_id for e in replay} - view.predicted)
    if missing or state.dead_letters < len(BAD_RECORDS):
        summary["error"] = (
            f"{missing} events got no prediction, {state.dead_letters} of {len(BAD_RECORDS)} "
            "bad records were dead-lettered"
        )
    return summary
