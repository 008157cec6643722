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

A second way to lose records: Faust "pauses" a partition only logically (it stops asking
aiokafka for it) while aiokafka keeps fetching it, and an aiokafka ``fetched_records(partitions)``
call made while Faust's set of active partitions is empty (at the end of table recovery it is)
treats the empty set as "all partitions": it hands over input records, moving aiokafka's
position past them, and Faust discards them. Records handed to the agent before the seek are
handed over again after it; and if a batch read before the seek is still being handed over
when the seek resets Faust's read offset, Faust's gap bookkeeping counts the offsets between as
done, so records never processed can be committed (a prediction after a restart then misses an
earlier event of its user: seen once in CI in the SIGKILL test; not reproduced here in over
100 restarts).

The fix, :class:`SafeRecovery`:

- At every assignment, before table recovery starts, the stream (non-changelog) partitions are
  paused in aiokafka itself (``on_rebalance``): aiokafka neither fetches nor hands over any of
  their records during recovery.
- When recovery ends: clear the agent queues *first* (nothing of the input is queued), pause
  the active changelog partitions in aiokafka (below), resume the stream partitions in Faust,
  seek them to their committed offsets, and only then resume them in aiokafka. Each input
  record reaches the agents once, in order, from the committed offset on (measured: before
  this, the records fetched during recovery came twice at every start); nothing is cleared
  after the resume. The seek stays after Faust's resume, as in Faust (an empty active set
  would otherwise hand over records as above).
- aiokafka is called on Faust's consumer thread, where it runs (its pause state is not
  thread-safe), in order. A generation's last steps may run after the next assignment has
  begun: that assignment's first step releases its changelog partitions, and the pause of the
  changelogs and the release of the stream partitions are skipped once the generation is no
  longer current (checked on that thread, where Faust sets the generation at an assignment).

The changelog pause: after recovery Faust stops asking for an active changelog partition, but
aiokafka would keep fetching it, so the first record the worker writes to its own changelog came
back and was held, unasked for, and aiokafka delayed every fetch from that broker by its
prefetch backoff (100 ms): three ~100 ms input stalls in the first 0.3 s after each start or
rebalance. Standby partitions, which Faust does read, are left alone; the next assignment
unpauses everything, as aiokafka starts every assignment afresh.
Records Faust's fetcher drops after aiokafka handed them over (a fetch made before a rebalance
that returns the new assignment's changelog records) are kept by :mod:`.safe_fetch`, the other
half of a safe recovery.
Installed through Faust's ``TableManager`` setting (``faust.App(...,
TableManager=SafeTableManager)``); no monkey-patching. Proven by
``tests/integration/test_recovery_resume.py`` (forces the race; every record taken once, in
order; plain Faust still loses records: when it stops, this module can go) and
``tests/integration/test_changelog_pause.py``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import Any, cast

from aiokafka import TopicPartition
from faust.tables import TableManager
from faust.tables.recovery import Recovery

_REPLACED = (
    "on_rebalance",
    "on_recovery_completed",
    "_resume_streams",
    "_wait",
    "_is_changelog_tp",
)
if not all(callable(getattr(Recovery, name, None)) for name in _REPLACED):  # pragma: no cover
    raise ImportError(
        "this faust-streaming's Recovery differs from 0.15.3: re-check stream/recovery.py "
        "against it (tests/integration/test_recovery_resume.py)"
    )


class SafeRecovery(Recovery):
    """Faust's ``Recovery`` with the queue clear moved before the resume and the seek, and the
    stream partitions held in aiokafka itself from the assignment until after the seek."""

    async def on_rebalance(
        self,
        assigned: set[Any],
        revoked: set[Any],
        newly_assigned: set[Any],
        generation_id: int = 0,
    ) -> None:
        """Hold the new assignment's stream partitions in aiokafka (see the module doc), then
        Faust's steps (which pause them only logically and start table recovery). Its changelog
        partitions are released, in case an older generation's last steps paused them after
        this assignment began (aiokafka runs those steps in order, on one thread)."""
        streams = [tp for tp in assigned if not self._is_changelog_tp(tp)]
        changelogs = [tp for tp in assigned if self._is_changelog_tp(tp)]

        def hold(kafka: Any) -> None:
            _resume(kafka, changelogs)
            _pause(kafka, streams)

        # Not self._wait: that ends early when the recovery-start signal is set, which belongs
        # to Faust's own step below (and to the previous assignment's, if still set).
        await asyncio.wait_for(
            self._in_aiokafka(hold), timeout=self.app.conf.broker_request_timeout
        )
        await super().on_rebalance(assigned, revoked, newly_assigned, generation_id)

    async def _start_streams(self, generation_id: int) -> None:
        """Clear the agent queues, resume the stream partitions in Faust, seek them to their
        committed offsets, then release them in aiokafka unless a newer generation has begun
        (Faust: resume, seek, clear; see the module doc)."""
        app: Any = self.app
        consumer = app.consumer
        timeout = app.conf.broker_request_timeout
        app.flow_control.resume()  # clears the queues; the input partitions are still paused
        assignment = consumer.assignment()
        streams = [tp for tp in assignment if not self._is_changelog_tp(tp)]
        unread = [  # active changelog partitions; standbys Faust goes on reading
            tp for tp in assignment if self._is_changelog_tp(tp) and tp not in self.standby_tps
        ]

        def hold_unread(kafka: Any) -> None:
            if app.consumer_generation_id == generation_id:  # else a newer assignment's own
                _pause(kafka, unread)

        await self._wait(self._in_aiokafka(hold_unread), timeout=timeout)
        consumer.resume_partitions(streams)
        if assignment:
            self.log.info("Seek stream partitions to committed offsets.")
            await self._wait(consumer.perform_seek(), timeout=timeout)

        def release(kafka: Any) -> None:
            if app.consumer_generation_id == generation_id:  # set on this thread at assignment
                _resume(kafka, streams)

        await self._wait(self._in_aiokafka(release), timeout=timeout)
        self.completed.set()
        consumer.resume_flow()
        await app._fetcher.maybe_start()  # make sure the fetcher runs

    async def _in_aiokafka(self, action: Callable[[Any], None]) -> None:
        """Run ``action(aiokafka consumer)`` on Faust's consumer thread, where aiokafka runs
        (its pause state is not thread-safe)."""
        thread = getattr(self.app.consumer, "_thread", None)
        kafka = getattr(thread, "_ensure_consumer", None)
        if kafka is None or not callable(getattr(thread, "call_thread", None)):
            # another Faust transport: it behaves as plain Faust does here
            self.log.warning("cannot pause partitions in this Faust consumer")
            return

        async def run() -> None:
            action(kafka())

        await cast(Any, thread).call_thread(run)

    async def _resume_streams(self, generation_id: int = 0) -> None:
        """After a rebalance of an app without tables (Faust's steps, safe order)."""
        app: Any = self.app
        await app.on_rebalance_complete.send()
        if app.consumer_generation_id != generation_id:
            self.log.warning("Recovery rebalancing again")
            return
        await self._start_streams(generation_id)
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
        await self._start_streams(generation_id)
        self.tables.on_actives_ready()
        if not app.assignor.assigned_standbys():
            self.tables.on_standbys_ready()
        app.on_rebalance_end()
        self.log.info("Worker ready")


def _pause(kafka: Any, partitions: Iterable[Any]) -> None:
    """Pause those of ``partitions`` aiokafka has assigned (a newer assignment may not)."""
    owned = kafka.assignment()
    held = [tp for tp in map(_kafka_tp, partitions) if tp in owned]
    if held:
        kafka.pause(*held)


def _resume(kafka: Any, partitions: Iterable[Any]) -> None:
    paused = kafka.paused()
    held = [tp for tp in map(_kafka_tp, partitions) if tp in paused]
    if held:
        kafka.resume(*held)


def _kafka_tp(tp: Any) -> TopicPartition:
    return TopicPartition(tp.topic, tp.partition)


class SafeTableManager(TableManager):
    """Faust's ``TableManager`` whose recovery is a :class:`SafeRecovery`."""

    @property
    def recovery(self) -> Recovery:
        if self._recovery is None:
            self._recovery = SafeRecovery(self.app, self, beacon=self.beacon, loop=self.loop)
        return self._recovery
