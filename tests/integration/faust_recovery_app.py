"""A plain Faust table app for the recovery test, run as ``python faust_recovery_app.py worker``.

Environment: ``RT_BROKER`` (kafka://...), ``RT_APP_ID``, ``RT_SOURCE`` (1-partition topic),
``RT_MODE`` (``write``: event ``i`` sets ``table["k<i>"] = i``; ``read``: no writes),
``RT_FIX`` (``on``: apply the Tansu compat fixes; ``off``: not), ``RT_OUT`` (a directory),
``RT_N`` (events to write). An event ``dump:NAME`` writes the table to ``RT_OUT/NAME.json``;
the agent only runs after table recovery is over, so a dump shows what recovery restored.
Both modes use the same short group timeouts: the fix is the only difference.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import faust
from faust_apps import table_app

from nextbehavior.stream.compat import BrokerCompat, apply_compat

OUT = Path(os.environ["RT_OUT"])
MODE = os.environ["RT_MODE"]
N = int(os.environ["RT_N"])

app = table_app(
    os.environ["RT_APP_ID"],
    os.environ["RT_BROKER"],
    OUT,
    broker_session_timeout=6.0,
    broker_heartbeat_interval=1.0,
    producer_linger=0.3,  # many changelog records per batch: the Tansu quirk bites then
)
source = app.topic(os.environ["RT_SOURCE"], value_type=bytes, value_serializer="raw", partitions=1)
table = app.Table("keys", default=int, partitions=1)


@app.agent(source)
async def process(stream: faust.StreamT[bytes]) -> None:
    async for value in stream:
        text = value.decode()
        if text.startswith("dump:"):
            path = OUT / f"{text[5:]}.json"
            path.with_suffix(".tmp").write_text(json.dumps(dict(table.items())))
            path.with_suffix(".tmp").rename(path)
        elif MODE == "write":
            i = int(text)
            table[f"k{i}"] = i
            if i == N - 1:
                (OUT / "written").touch()


if __name__ == "__main__":
    if os.environ["RT_FIX"] == "on":
        apply_compat(app, BrokerCompat(True, "recovery test"))
    app.main()
