"""``nextbehavior bench e2e``: the worker against the bare stream engine, in one run.

Both run as child processes on the same broker, with the same topic layout, partitions,
Faust settings and synthetic events (:mod:`nextbehavior.stream.loadgen`):

1. **Throughput.** The process(es) start and get their partitions; then a backlog of events is
   produced as fast as the broker takes it. Sustained events/s = outputs / time from the first
   to the last output (the outputs' record timestamps, set when the process under test sent
   them). First the worker (with a model bundle), then the passthrough
   (:mod:`nextbehavior.stream.passthrough`).
2. **Latency.** Then each gets a steady stream at half the worker's measured maximum, in new
   processes (same app id: the worker recovers the state the backlog built) on new, empty
   topics; latency = when the output was read here minus when the event was sent from here
   (same clock): event produce time to prediction availability. Percentiles over every event
   of that phase.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import subprocess
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np

from nextbehavior.stream.bench_probes import CpuMeter, cpu_meter, start_spy, stop_spies
from nextbehavior.stream.bundle import read_manifest
from nextbehavior.stream.loadgen import (
    Outgoing,
    OutputCollector,
    produce_backlog,
    produce_paced,
    synthetic_events,
)
from nextbehavior.stream.machine import load_average
from nextbehavior.stream.settings import Settings
from nextbehavior.stream.topics import TopicSpec, ensure_topics
from nextbehavior.stream.worker_process import (
    PASSTHROUGH_MODULE,
    WORKER_MODULE,
    ChildProcess,
    wait_group_settled,
)

logger = logging.getLogger(__name__)

TRAINED_BUNDLE: Final = Path("runs/ml100k-bundle")
ML100K_ITEMS: Final = 1683  # 1682 movies + padding


@dataclass(frozen=True)
class E2EOptions:
    events: int = 20_000
    users: int | None = None  # None: events // 50 (so histories fill up to max_len 50)
    partitions: int = 4
    workers: int = 1
    latency_s: float = 10.0
    bundle: Path | None = None
    skip_passthrough: bool = False
    trace_path: Path | None = None  # CSV of (send time, latency) of the worker's latency phase
    # (the passthrough's goes next to it, "<stem>-passthrough<suffix>")
    latency_rate: float | None = None  # events/s of the latency phase (None: half the maximum)
    rounds: int = 1  # worker + passthrough pairs; figures are medians, latency from the last
    profile_dir: Path | None = None  # py-spy profiles of the backlog phase, collapsed stacks


def default_bundle(work: Path) -> tuple[Path, str]:
    """The trained ML-100K bundle if present, else a random-init default-config model of the
    ML-100K catalogue exported to ``work`` (timing does not depend on the weights; needs torch).
    """
    if (TRAINED_BUNDLE / "manifest.json").is_file():
        return TRAINED_BUNDLE, f"trained ML-100K model ({TRAINED_BUNDLE})"
    from nextbehavior.export.writer import export_random_bundle

    bundle = export_random_bundle(work, ML100K_ITEMS)
    return bundle, "random-init default-config model, ML-100K catalogue (1682 items)"


def percentiles(values: Sequence[float]) -> dict[str, float]:
    """p50/p95/p99 (ms, 2 decimals) of values in seconds."""
    arr = np.asarray(values, dtype=np.float64) * 1000.0
    return {f"p{q}": round(float(np.percentile(arr, q)), 2) for q in (50, 95, 99)}


@dataclass
class PhaseResult:
    events_per_s: float
    cpu_ms_per_event: float | None  # the process(es) under test, during the backlog
    broker_cpu_ms_per_event: float | None  # the embedded broker, same span
    latency_ms: dict[str, float] | None
    latency_rate: float | None
    load_before: list[float]
    load_after: list[float]
    stats: list[dict[str, Any]]  # /stats of the process(es) after the backlog
    latency_stats: list[dict[str, Any]] = field(default_factory=list)  # after the latency part
    latency_cpu_ms_per_event: dict[str, float | None] = field(default_factory=dict)


class Bench:
    """One benchmark run on one broker; ``run_phase`` per process kind."""

    def __init__(
        self,
        settings: Settings,
        options: E2EOptions,
        bundle: Path,
        work: Path,
        broker_pid: int | None = None,
    ) -> None:
        self.settings = settings
        self.broker_pid = broker_pid
        self.options = options
        self.bundle = bundle
        self.work = work
        manifest = read_manifest(bundle)
        users = options.users or max(1, options.events // 50)
        now_ms = int(time.time() * 1000)
        step_ms = 50
        total = options.events + int(options.latency_s * 5_000)  # room for any latency rate
        self.start_ms = now_ms - total * step_ms
        self.items = manifest.items[1:]
        self.types = manifest.event_types[1:]
        self.users = users
        self.backlog = synthetic_events(
            options.events,
            users=users,
            items=self.items,
            event_types=self.types,
            start_ms=self.start_ms,
            step_ms=step_ms,
        )

    def _paced_events(self, n: int) -> list[Outgoing]:
        return synthetic_events(
            n,
            users=self.users,
            items=self.items,
            event_types=self.types,
            start_ms=self.start_ms + self.options.events * 50,
            seed=1,
        )

    async def run_phase(
        self, kind: str, latency_rate: float | None, *, latency: bool = True
    ) -> PhaseResult:
        """Throughput of ``kind`` ("worker" or "passthrough") on the backlog, then (``latency``)
        latency at ``latency_rate`` events/s (None: half the measured throughput).

        The latency part runs in new processes on new input and output topics, with the same app
        id: a worker recovers the user state the backlog built, as a restarted worker would. So
        both kinds start it on empty topics: the embedded broker's fetches cost time in
        proportion to what a topic holds (``bench/broker_fetch.py``), which a backlog left there
        would add to every latency.
        """
        opts, tag = self.options, uuid.uuid4().hex[:8]
        topics, procs, collector = await self._start(kind, tag)
        try:
            load_before = load_average()
            spies = [self._spy(p) for p in procs] if opts.profile_dir else []
            meter = self._cpu_meter(procs)
            logger.info("%s: producing a backlog of %d events", kind, len(self.backlog))
            await produce_backlog(self.settings, topics["events"], self.backlog)
            await self._wait(collector, [e.event_id for e in self.backlog], procs)
            cpu, broker_cpu = meter(len(self.backlog))
            stop_spies(spies)
            produced = [collector.arrivals[e.event_id].produced_ms for e in self.backlog]
            span_s = max(1, max(produced) - min(produced)) / 1000.0
            eps = (len(produced) - 1) / span_s
            logger.info(
                "%s: %.0f events/s over %.1f s; CPU ms/event %s, broker %s",
                *(kind, eps, span_s, cpu, broker_cpu),
            )
            stats = [s for s in (p.stats() for p in procs) if s is not None]
        finally:
            await self._stop(kind, procs, collector)
        rate = latency_rate if latency_rate is not None else eps / 2
        lat: dict[str, float] | None = None
        latency_stats: list[dict[str, Any]] = []
        latency_cpu: dict[str, float | None] = {}
        if latency and opts.latency_s > 0:
            lat, latency_stats, latency_cpu = await self._latency(kind, tag, rate)
        load_after = load_average()
        return PhaseResult(
            eps,
            cpu,
            broker_cpu,
            lat,
            rate,
            load_before,
            load_after,
            stats,
            latency_stats,
            latency_cpu,
        )

    async def _latency(
        self, kind: str, tag: str, rate: float
    ) -> tuple[dict[str, float], list[dict[str, Any]], dict[str, float | None]]:
        """Percentiles of event sent -> output read at ``rate``, the processes' /stats, and CPU
        ms per event of the processes and of the broker meanwhile."""
        opts = self.options
        topics, procs, collector = await self._start(kind, tag)
        try:
            paced = self._paced_events(max(10, math.ceil(rate * opts.latency_s)))
            logger.info("%s: latency at %.0f events/s for %d events", kind, rate, len(paced))
            spies = [self._spy(p, "latency") for p in procs] if opts.profile_dir else []
            meter = self._cpu_meter(procs)
            sent = await produce_paced(self.settings, topics["events"], paced, rate)
            await self._wait(collector, list(sent), procs)
            process_ms, broker_ms = meter(len(sent))
            cpu = {"process": process_ms, "broker": broker_ms}
            stop_spies(spies)
            delays = [collector.arrivals[i].read_s - t for i, t in sent.items()]
            if opts.trace_path is not None:
                path = opts.trace_path
                if kind != "worker":
                    path = path.with_name(f"{path.stem}-{kind}{path.suffix}")
                pairs = zip(sent.values(), delays, strict=True)
                rows = [f"{t:.4f},{d * 1000:.2f}" for t, d in pairs]
                path.write_text("sent_s,latency_ms\n" + "\n".join(rows) + "\n")
            stats = [s for s in (p.stats() for p in procs) if s is not None]
        finally:
            await self._stop(kind, procs, collector)
        return percentiles(delays), stats, cpu

    async def _start(
        self, kind: str, tag: str
    ) -> tuple[dict[str, str], list[ChildProcess], OutputCollector]:
        """New topics, ``kind`` processes of app ``bench-<kind>-<tag>`` that own every partition
        (and, for the worker, have recovered their tables), and a collector on the output."""
        opts, fresh = self.options, uuid.uuid4().hex[:8]
        names = {k: f"bench-{kind}-{k}-{fresh}" for k in ("events", "predictions", "dlq")}
        await ensure_topics(
            self.settings, [TopicSpec(n, opts.partitions) for n in names.values()], timeout_s=30
        )
        env = {
            "NBP_BROKER": self.settings.broker,
            "NBP_INPUT_TOPIC": names["events"],
            "NBP_OUTPUT_TOPIC": names["predictions"],
            "NBP_DLQ_TOPIC": names["dlq"],
            "NBP_APP_ID": f"bench-{kind}-{tag}",
            "NBP_BUNDLE": str(self.bundle),
            "NBP_STATE_DIR": str(self.work / "state" / tag),
            "NBP_LOG_LEVEL": os.environ.get("NBP_LOG_LEVEL", "WARNING"),
        }
        module = WORKER_MODULE if kind == "worker" else PASSTHROUGH_MODULE
        procs = [
            ChildProcess(f"{kind}{n}-{fresh}", module, env, self.work) for n in range(opts.workers)
        ]
        collector = OutputCollector(self.settings, names["predictions"], opts.partitions)
        try:
            await asyncio.to_thread(wait_group_settled, procs, opts.partitions, 180.0)
            if kind == "worker":
                for p in procs:
                    await asyncio.to_thread(p.wait_ready, 180.0)
            await collector.start()
        except BaseException:
            await self._stop(kind, procs, collector)
            raise
        return names, procs, collector

    async def _stop(
        self, kind: str, procs: Sequence[ChildProcess], collector: OutputCollector
    ) -> None:
        await collector.stop()
        codes = [p.stop() for p in procs]
        if any(codes):
            logger.warning("%s exit codes %s (logs in %s)", kind, codes, self.work)

    def _cpu_meter(self, procs: Sequence[ChildProcess]) -> CpuMeter:
        return cpu_meter([p.pid for p in procs], self.broker_pid)

    def _spy(self, proc: ChildProcess, phase: str = "backlog") -> subprocess.Popen[bytes]:
        """Profile ``proc`` into ``<profile dir>/<kind><n>-<phase>.txt``."""
        assert self.options.profile_dir is not None
        out = self.options.profile_dir / f"{proc.name.rsplit('-', 1)[0]}-{phase}.txt"
        logger.info("profiling %s into %s", proc.name, out)
        return start_spy(proc.pid, out)

    async def _wait(
        self, collector: OutputCollector, ids: list[str], procs: Sequence[ChildProcess]
    ) -> None:
        timeout = 120.0 + len(ids) / 100.0
        waiting = asyncio.create_task(collector.wait_for(ids, timeout))
        while not waiting.done():
            for p in procs:
                p.check_alive()
            await asyncio.sleep(0.2)
        if not waiting.result():
            got = sum(1 for i in ids if i in collector.arrivals)
            raise TimeoutError(f"only {got} of {len(ids)} outputs within {timeout:.0f}s")
