"""Micro-batching on the event loop (stream/batcher.py)."""

from __future__ import annotations

import asyncio

import pytest

from nextbehavior.stream.batcher import BatcherClosedError, MicroBatcher


class Recorder:
    def __init__(self, delay_s: float = 0.0) -> None:
        self.batches: list[list[int]] = []
        self.delay_s = delay_s

    async def __call__(self, batch: list[int]) -> None:
        await asyncio.sleep(self.delay_s)
        self.batches.append(batch)


async def test_a_full_batch_goes_at_once() -> None:
    rec = Recorder()
    batcher = MicroBatcher(rec, max_size=4, max_wait_s=30.0)
    runner = asyncio.create_task(batcher.run())
    for n in range(4):
        await batcher.put(n)
    await asyncio.wait_for(batcher.drain(), timeout=2.0)  # far less than max_wait_s
    assert rec.batches == [[0, 1, 2, 3]]
    batcher.close()
    await runner


async def test_a_partial_batch_goes_after_max_wait() -> None:
    rec = Recorder()
    batcher = MicroBatcher(rec, max_size=100, max_wait_s=0.05)
    runner = asyncio.create_task(batcher.run())
    loop = asyncio.get_running_loop()
    start = loop.time()
    await batcher.put(1)
    await batcher.put(2)
    await asyncio.wait_for(batcher.drain(), timeout=2.0)
    assert rec.batches == [[1, 2]]
    assert loop.time() - start >= 0.045
    batcher.close()
    await runner


async def test_order_is_kept_and_slow_batches_grow_the_next_one() -> None:
    rec = Recorder(delay_s=0.05)
    batcher = MicroBatcher(rec, max_size=8, max_wait_s=0.0, max_pending=64)
    runner = asyncio.create_task(batcher.run())
    for n in range(20):
        await batcher.put(n)
        await asyncio.sleep(0)
    await asyncio.wait_for(batcher.drain(), timeout=5.0)
    assert [x for b in rec.batches for x in b] == list(range(20))
    assert all(len(b) <= 8 for b in rec.batches)
    assert len(rec.batches[0]) == 1 and max(len(b) for b in rec.batches) == 8
    batcher.close()
    await runner


async def test_put_waits_while_max_pending_items_are_pending() -> None:
    gate = asyncio.Event()
    handled: list[list[int]] = []

    async def handle(batch: list[int]) -> None:
        await gate.wait()
        handled.append(batch)

    batcher = MicroBatcher(handle, max_size=2, max_wait_s=0.0, max_pending=2)
    runner = asyncio.create_task(batcher.run())
    await batcher.put(1)
    await batcher.put(2)
    blocked = asyncio.create_task(batcher.put(3))
    await asyncio.sleep(0.05)
    assert not blocked.done() and batcher.pending == 2
    gate.set()
    await asyncio.wait_for(blocked, timeout=1.0)
    await asyncio.wait_for(batcher.drain(), timeout=1.0)
    assert handled == [[1, 2], [3]]
    batcher.close()
    await runner


async def test_close_flushes_what_is_queued_and_refuses_more() -> None:
    rec = Recorder()
    batcher = MicroBatcher(rec, max_size=10, max_wait_s=60.0)
    runner = asyncio.create_task(batcher.run())
    await batcher.put(1)
    batcher.close()
    await asyncio.wait_for(runner, timeout=1.0)
    assert rec.batches == [[1]]
    with pytest.raises(BatcherClosedError):
        await batcher.put(2)


async def test_a_burst_goes_once_its_input_is_idle_not_after_max_wait() -> None:
    rec = Recorder()
    batcher = MicroBatcher(rec, max_size=100, max_wait_s=5.0, idle_s=0.02)
    runner = asyncio.create_task(batcher.run())
    loop = asyncio.get_running_loop()
    start = loop.time()
    for n in range(3):  # one burst: items in consecutive loop turns
        await batcher.put(n)
        await asyncio.sleep(0)
    await asyncio.wait_for(batcher.drain(), timeout=2.0)  # far less than max_wait_s
    assert rec.batches == [[0, 1, 2]]
    assert 0.015 <= loop.time() - start < 1.0
    batcher.close()
    await runner


async def test_items_closer_than_the_idle_gap_stay_in_one_batch() -> None:
    rec = Recorder()
    batcher = MicroBatcher(rec, max_size=100, max_wait_s=5.0, idle_s=0.05)
    runner = asyncio.create_task(batcher.run())
    for n in range(5):  # 10 ms apart: never idle for 50 ms until the end
        await batcher.put(n)
        await asyncio.sleep(0.01)
    await asyncio.wait_for(batcher.drain(), timeout=2.0)
    assert rec.batches == [[0, 1, 2, 3, 4]]
    for n in range(5, 7):  # a second burst after the first went
        await batcher.put(n)
    await asyncio.wait_for(batcher.drain(), timeout=2.0)
    assert rec.batches == [[0, 1, 2, 3, 4], [5, 6]]
    batcher.close()
    await runner


async def test_max_wait_still_bounds_a_batch_whose_input_never_goes_idle() -> None:
    rec = Recorder()
    batcher = MicroBatcher(rec, max_size=1000, max_wait_s=0.05, idle_s=0.03)
    runner = asyncio.create_task(batcher.run())
    for n in range(20):  # every 10 ms for 200 ms: never idle for 30 ms
        await batcher.put(n)
        await asyncio.sleep(0.01)
    await asyncio.wait_for(batcher.drain(), timeout=2.0)
    assert [x for b in rec.batches for x in b] == list(range(20))
    assert len(rec.batches) >= 3  # cut by max_wait (50 ms), not by idleness
    batcher.close()
    await runner
