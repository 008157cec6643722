"""A Faust app that forces the end-of-recovery race, for ``test_recovery_resume.py``.

Run as ``python faust_resume_app.py worker``. Environment: ``RS_BROKER`` (kafka://...),
``RS_APP_ID``, ``RS_SOURCE`` (a 1-partition topic holding records before the worker starts),
``RS_OUT`` (a directory), ``RS_FIX`` (``on``: ``TableManager=SafeTableManager``; ``off``:
plain Faust). Each record's value is appended to ``RS_OUT/seen.txt`` as the agent takes it.

How the race is forced (stream/recovery.py explains the bug): right after Faust's seek to
committed offsets the consumer waits (up to ``FIRST_WAIT_S``) for the agent to take its first
record, then ``QUEUE_S`` more; the agent holds that first record until then. With plain Faust
the input partition is already resumed at that point, so the first record keeps the agent busy,
the others wait in its queue, and the queue clear that follows drops them for good. With the
fix the partition is resumed only after the clear, so every record is processed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path

import faust
from faust_apps import worker_like_app

OUT = Path(os.environ["RS_OUT"])
FIRST_WAIT_S = 4.0
QUEUE_S = 1.0

app, source = worker_like_app("RS", OUT, "resume test")
table = app.Table("seen", default=int, partitions=1)  # a table: recovery runs before the agent

_Consumer = app.transport.Consumer


first_taken = asyncio.Event()  # the agent holds its first record...
seek_over = asyncio.Event()  # ...until the seek (and the wait after it) is over


class SlowSeekConsumer(_Consumer):  # type: ignore[misc, valid-type]
    async def perform_seek(self) -> None:
        await super().perform_seek()
        with contextlib.suppress(TimeoutError):  # with the fix nothing comes: wait it out
            await asyncio.wait_for(first_taken.wait(), FIRST_WAIT_S)
        await asyncio.sleep(QUEUE_S)  # the other records reach the agent's queue
        seek_over.set()


app.transport.Consumer = SlowSeekConsumer  # type: ignore[misc]


@app.agent(source)
async def process(stream: faust.StreamT[bytes]) -> None:
    first = True
    async for value in stream:
        with (OUT / "seen.txt").open("a") as seen:
            seen.write(value.decode() + "\n")
        if first:
            first = False
            first_taken.set()
            await seek_over.wait()
            await asyncio.sleep(QUEUE_S)  # Faust clears the queues just after the seek


if __name__ == "__main__":
    app.main()
