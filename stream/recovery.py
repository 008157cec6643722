"""Faust table recovery that does not drop the first input records after it.

The bug (faust-streaming 0.15.3, ``faust/tables/recovery.py``; upstream issue #596, open):
when table recovery ends, ``Recovery.on_recovery_completed`` (and ``_resume_streams``, the
no-tables path) does, in this order:

1. ``consumer.resume_partitions(<input partitions>)``: from now on the fetcher hands records
   of the input partitions to the agents' queues;
2. ``await consumer.perform_seek()``: seek every assigned partition to its committed offset
   (one OffsetFetch round trip per partition, on the consumer thread);
3. ``app.flow_control.resume()``, which also *clears every agent queue*
   (``mode.utils.queues.FlowControlEvent.resume`` -> ``clear``: Faust agent queues are
   ``clear_on_resume=True``), meant to drop records fetched before the seek.

A record fetched *after* its partition was sought in step 2 and still waiting in an agent queue
at step 3 is dropped for good: the consumer position is already past it and nothing seeks back.
(Likewise a record read before the seek whose re-read after it is skipped as already read:
Faust's ``_read_offset`` can move past it while the seek runs.) It is never processed, its
offset is never acked, and the partition's committed offset can no longer advance (Faust commits
only up to the first unacked offset). Seen here as: the restarted worker logs "Worker ready" and
never predicts the events produced right after it started. It needs input records to arrive as
the worker finishes recovery; the 10 ms fetch waits of the Tansu fixes (``compat.py``) make the
re-fetch after the seek fast enough to land in the window, and loaded cores widen it, but
nothing in the bug is specific to Tansu.

The fix, :class:`SafeRecovery`: clear the queues *first* (the input partitions are still paused:
nothing of theirs is queued), then resume, then seek, and never clear again. The seek must stay
*after* the resume: while Faust's set of active partitions is empty, a pending aiokafka
``fetched_records(partitions)`` call treats the empty set as "all partitions" and drains records
of paused partitions, which Faust then discards; only a later seek brings those back (measured:
clear, seek, resume lost the new events in 1 run of 5). Records read before the seek may be
handed over twice (at-least-once; the worker deduplicates by event id), as with plain Faust.
A second fix rides along (:meth:`SafeRecovery._pause_changelogs`): Faust "pauses" a changelog
partition after its recovery only by no longer asking aiokafka for its records, while aiokafka
keeps fetching it. The first record the worker then writes to its own changelog is fetched
back and held, unasked for, and aiokafka delays every fetch from that broker by its prefetch
backoff (100 ms) for it: once per changelog partition after every start or rebalance (measured:
three ~100 ms stalls of the input in the first 0.3 s). Those partitions are paused in aiokafka
too (standby partitions, which Faust does read, are left alone); the next assignment unpauses
them, as aiokafka starts every assignment afresh.
Installed through Faust's ``TableManager`` setting (``faust.App(...,
TableManager=SafeTableManager)``); no monkey-patching. Proven by
``tests/integration/test_recovery_resume.py``, which forces the race and also asserts that plain
Faust still loses records (when it stops doing so, this module can go).
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka import TopicPartition
from faust.tables import TableManager
from faust.tables.recovery import Recovery

_REPLACED = ("on_recovery_completed", "_resume_streams", "_wait", "_is_changelog_tp")
if not all(callable(getattr(Recovery, name, None)) for name in _REPLACED):  # pragma: no cover
    raise ImportError(
        "this faust-streaming's Recovery differs from 0.15.3: re-check stream/recovery.py "
        "against it (tests/integration/test_recovery_resume.py)"
    )


class SafeRecovery(Recovery):
    """Faust's ``Recovery`` with the queue clear moved before the resume and the seek."""

    async def _start_streams(self) -> None:
        """Clear the agent queues, resume the input partitions, then seek them to their
        committed offsets (Faust: resume, seek, clear; see the module doc)."""
        app: Any = self.app
        consumer = app.consumer
        app.flow_control.resume()  # clears the queues; the input partitions are still paused
        assignment = consumer.assignment()
        consumer.resume_partitions({tp for tp in assignment if not self._is_changelog_tp(tp)})
        self._pause_changelogs(consumer, assignment)
        if assignment:
            self.log.info("Seek stream partitions to committed offsets.")
            await self._wait(consumer.perform_seek(), timeout=app.conf.broker_request_timeout)
        self.completed.set()
        consumer.resume_flow()
        await app._fetcher.maybe_start()  # make sure the fetcher runs

    def _pause_changelogs(self, consumer: Any, assignment: set[Any]) -> None:
        """Pause, in aiokafka itself, the assigned changelog partitions that are not standbys
        (see the module doc)."""
        unread = {
            TopicPartition(tp.topic, tp.partition)
            for tp in assignment
            if self._is_changelog_tp(tp) and tp not in self.standby_tps
        }
        kafka = getattr(getattr(consumer, "_thread", None), "_ensure_consumer", None)
        if kafka is None:  # another Faust transport: it may fetch them, as plain Faust does
            self.log.warning("cannot pause changelog partitions in this Faust consumer")
        elif unread:
            kafka().pause(*unread)

    async def _resume_streams(self, generation_id: int = 0) -> None:
        """After a rebalance of an app without tables (Faust's steps, safe order)."""
        app: Any = self.app
        await app.on_rebalance_complete.send()
        if app.consumer_generation_id != generation_id:
            self.log.warning("Recovery rebalancing again")
            return
        await self._start_streams()
        self.tables.on_actives_ready()
        self.tables.on_standbys_ready()
        app.on_rebalance_end()
        self.log.info("Worker ready")

    async def on_recovery_completed(self, generation_id: int = 0) -> None:
        """After active table recovery (Faust's steps, safe order)."""
        app: Any = self.app
        self.log.info("Restore complete!")
        await app.on_rebalance_complete.send()
        self._set_recovery_ended()
        callbacks = [
            asyncio.ensure_future(
                table.on_recovery_completed(
                    self.actives_for_table[table], self.standbys_for_table[table]
                )
            )
            for table in self.tables.values()
        ]
        if callbacks:
            await asyncio.wait(callbacks)
        if app.consumer_generation_id != generation_id:
            self.log.warning(
                "Recovery rebalancing again app id %s param %s",
                app.consumer_generation_id,
                generation_id,
            )
            return
        await self._start_streams()
        self.tables.on_actives_ready()
        if not app.assignor.assigned_standbys():
            self.tables.on_standbys_ready()
        app.on_rebalance_end()
        self.log.info("Worker ready")


class SafeTableManager(TableManager):
    """Faust's ``TableManager`` whose recovery is a :class:`SafeRecovery`."""

    @property
    def recovery(self) -> Recovery:
        if self._recovery is None:
            self._recovery = SafeRecovery(self.app, self, beacon=self.beacon, loop=self.loop)
        return self._recovery
