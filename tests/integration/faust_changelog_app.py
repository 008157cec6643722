"""A Faust app whose agent writes a table, for ``test_changelog_pause.py``.

Run as ``python faust_changelog_app.py worker``. Environment: ``CP_BROKER`` (kafka://...),
``CP_APP_ID``, ``CP_SOURCE`` (a 1-partition topic), ``CP_OUT`` (a directory), ``CP_FIX``
(``on``: ``TableManager=SafeTableManager``; ``off``: plain Faust). Every 0.2 s it writes
``CP_OUT/report.json``: the partitions its aiokafka consumer has paused, those it holds fetched
records of that nobody asked for, and how many records the agent took.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import faust
from faust_apps import worker_like_app

OUT = Path(os.environ["CP_OUT"])

app, source = worker_like_app("CP", OUT, "changelog pause test")
table = app.Table("counts", default=int, partitions=1)
taken = 0


@app.agent(source)
async def count(stream: faust.StreamT[bytes]) -> None:
    global taken
    async for value in stream:
        table[value.decode()] += 1  # a changelog record per event
        taken += 1


@app.timer(0.2)
async def report() -> None:
    consumer: Any = app.consumer
    kafka = consumer._thread._ensure_consumer()  # the aiokafka consumer
    body = {
        "paused": sorted(f"{tp.topic}:{tp.partition}" for tp in kafka.paused()),
        "buffered": sorted(f"{tp.topic}:{tp.partition}" for tp in kafka._fetcher._records),
        "taken": taken,
    }
    (OUT / "report.tmp").write_text(json.dumps(body))
    (OUT / "report.tmp").replace(OUT / "report.json")


if __name__ == "__main__":
    app.main()
