"""``nextbehavior bench e2e``: rounds of :class:`~nextbehavior.stream.bench_e2e.Bench` phases
(worker, then passthrough), their medians, and the one JSON object the command prints."""

from __future__ import annotations

import asyncio
import itertools
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from nextbehavior.stream.bench_e2e import Bench, E2EOptions, PhaseResult, default_bundle
from nextbehavior.stream.bundle import read_manifest
from nextbehavior.stream.machine import machine_info, versions
from nextbehavior.stream.settings import Settings, get_settings


async def measure(
    settings: Settings, options: E2EOptions, work: Path, broker_pid: int | None = None
) -> dict[str, Any]:
    """Run the rounds (worker, then passthrough, each on fresh topics and processes); the
    result object of ``bench e2e --json``. Latency is measured in the last round."""
    if options.bundle is not None:
        bundle, model = options.bundle, f"given bundle ({options.bundle})"
    else:
        bundle, model = await asyncio.to_thread(default_bundle, work)
    bench = Bench(settings, options, bundle, work, broker_pid)
    machine = machine_info()
    workers: list[PhaseResult] = []
    passes: list[PhaseResult] = []
    for r in range(options.rounds):
        last = r == options.rounds - 1
        workers.append(await bench.run_phase("worker", options.latency_rate, latency=last))
        if not options.skip_passthrough:
            rate = workers[-1].latency_rate
            passes.append(await bench.run_phase("passthrough", rate, latency=last))
    worker, passthrough = workers[-1], (passes[-1] if passes else None)
    w_eps = _median([w.events_per_s for w in workers])
    p_eps = _median([p.events_per_s for p in passes]) if passes else None
    ratios = [w.events_per_s / p.events_per_s for w, p in zip(workers, passes, strict=False)]
    w_cpu = _median([w.cpu_ms_per_event for w in workers])
    p_cpu = _median([p.cpu_ms_per_event for p in passes]) if passes else None
    manifest = read_manifest(bundle)
    return {
        "events_per_s": w_eps,
        "passthrough_events_per_s": p_eps,
        "ratio": round(_median(ratios) or 0.0, 3) if ratios else None,
        "latency_ms": worker.latency_ms,
        "latency_rate_per_s": round(worker.latency_rate or 0.0, 1),
        "passthrough_latency_ms": passthrough.latency_ms if passthrough else None,
        "cpu_ms_per_event": {
            "worker": w_cpu,
            "passthrough": p_cpu,
            "ratio": round(p_cpu / w_cpu, 3) if w_cpu and p_cpu else None,
            "broker_with_worker": _median([w.broker_cpu_ms_per_event for w in workers]),
            "broker_with_passthrough": _median([p.broker_cpu_ms_per_event for p in passes]),
            "worker_at_latency_rate": worker.latency_cpu_ms_per_event.get("process"),
            "passthrough_at_latency_rate": passthrough.latency_cpu_ms_per_event.get("process")
            if passthrough
            else None,
            "broker_at_latency_rate_with_worker": worker.latency_cpu_ms_per_event.get("broker"),
        },
        "rounds": [
            {
                "worker_events_per_s": round(w.events_per_s, 1),
                "passthrough_events_per_s": round(p.events_per_s, 1) if p else None,
                "load_avg": [w.load_before, w.load_after],
            }
            for w, p in itertools.zip_longest(workers, passes)
        ],
        "events": options.events,
        "users": bench.users,
        "partitions": options.partitions,
        "workers": options.workers,
        "model": model,
        "model_version": manifest.model_version,
        "n_items": len(manifest.items) - 1,
        "max_len": manifest.max_len,
        "worker_stats": [_brief(s) for s in worker.stats],
        "latency_worker_stats": [_brief(s) for s in worker.latency_stats],
        "load_avg": {
            "worker": [worker.load_before, worker.load_after],
            "passthrough": [passthrough.load_before, passthrough.load_after]
            if passthrough
            else None,
        },
        "machine": machine,
        "versions": versions(),
    }


def _median(values: Sequence[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return round(float(np.median(known)), 4) if known else None


def _brief(stats: dict[str, Any]) -> dict[str, Any]:
    keys = ("events", "batches", "mean_batch", "max_batch", "inference_s")
    return {k: stats[k] for k in keys if k in stats}


def run_e2e(options: E2EOptions, broker: str | None) -> dict[str, Any]:
    """Start the embedded broker unless ``broker`` is given, then :func:`measure`."""
    from nextbehavior.stream.broker import EmbeddedBroker

    with tempfile.TemporaryDirectory(prefix="nextbehavior-bench-") as tmp:
        work = Path(tmp)
        if broker is not None:
            return asyncio.run(measure(get_settings(broker=broker), options, work))
        with EmbeddedBroker(log_path=work / "broker.log") as embedded:
            settings = get_settings(broker=embedded.url)
            return asyncio.run(measure(settings, options, work, embedded.pid))
