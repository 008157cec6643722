"""Micro-batching on the event loop: gather items until a batch is full, has waited long enough,
or its input went quiet.

Records come from the consumer in bursts (one fetch response at a time), so a batch that has not
grown for ``idle_s`` (default 1 ms) is most likely the whole burst: it goes then, instead of
waiting out ``max_wait_s`` for records that will only come with the next fetch.
:class:`MicroBatcher` hands batches, in arrival order and one at a time, to an async handler.
While the handler runs (inference in a thread, sends), new items keep arriving and form the
next batch, so a slow batch makes the next one bigger rather than the input slower. ``put``
waits when ``max_pending`` items are queued or in flight (backpressure on the consumer).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")
logger = logging.getLogger(__name__)


class BatcherClosedError(RuntimeError):
    """``put`` after :meth:`MicroBatcher.close`."""


class MicroBatcher(Generic[T]):
    """Calls ``handle(batch)`` with up to ``max_size`` items, at most ``max_wait_s`` after the
    oldest of them arrived, or once no item came for ``idle_s`` (``None``: wait the whole
    ``max_wait_s``). Run :meth:`run` as a task; :meth:`close` flushes and ends it."""

    def __init__(
        self,
        handle: Callable[[list[T]], Awaitable[None]],
        *,
        max_size: int,
        max_wait_s: float,
        max_pending: int | None = None,
        idle_s: float | None = None,
    ) -> None:
        if max_size < 1:
            raise ValueError("max_size must be at least 1")
        self._handle = handle
        self.max_size = max_size
        self.max_wait_s = max(0.0, max_wait_s)
        self.max_pending = max(max_pending or 4 * max_size, max_size)
        self.idle_s = None if idle_s is None else max(0.0, idle_s)
        self._items: deque[tuple[float, T]] = deque()
        self._in_flight = 0
        self._wake = asyncio.Event()
        self._space = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._closing = False

    @property
    def pending(self) -> int:
        """Items queued or in a batch being handled."""
        return len(self._items) + self._in_flight

    async def put(self, item: T) -> None:
        """Queue ``item``; waits while ``max_pending`` items are pending."""
        while self.pending >= self.max_pending:
            if self._closing:
                raise BatcherClosedError("the batcher is closed")
            self._space.clear()
            await self._space.wait()
        if self._closing:
            raise BatcherClosedError("the batcher is closed")
        self._items.append((asyncio.get_running_loop().time(), item))
        self._idle.clear()
        n = len(self._items)
        if n == 1 or n >= self.max_size:
            self._wake.set()

    async def run(self) -> None:
        """Form and handle batches until closed and drained."""
        loop = asyncio.get_running_loop()
        while True:
            while not self._items:
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
            deadline = self._items[0][0] + self.max_wait_s
            while len(self._items) < self.max_size and not self._closing:
                now = loop.time()
                remaining = deadline - now
                if self.idle_s is not None:  # the newest item came when?
                    remaining = min(remaining, self._items[-1][0] + self.idle_s - now)
                if remaining <= 0:
                    break
                self._wake.clear()
                try:
                    async with asyncio.timeout(remaining):
                        await self._wake.wait()
                except TimeoutError:
                    pass  # the deadline, or maybe the idle gap (items may have come meanwhile)
            n = min(self.max_size, len(self._items))
            batch = [self._items.popleft()[1] for _ in range(n)]
            self._in_flight = n
            try:
                await self._handle(batch)
            finally:
                self._in_flight = 0
                self._space.set()
                if not self._items:
                    self._idle.set()

    async def drain(self) -> None:
        """Wait until every item put so far has been handled."""
        await self._idle.wait()

    def close(self) -> None:
        """Stop taking items; :meth:`run` handles what is queued (without waiting) and returns."""
        self._closing = True
        self._wake.set()
        self._space.set()
