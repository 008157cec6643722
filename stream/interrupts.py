"""Ctrl-C and SIGTERM for a command that starts things and must stop them: never lost, never
halfway through a cleanup.

A ``KeyboardInterrupt`` raised by Python's default SIGINT handler can be swallowed: one that lands
in an at-fork hook (``subprocess`` with ``preexec_fn``), a ``__del__`` or a weakref callback is
only printed as "Exception ignored", and the command goes on. :class:`Interrupts` remembers the
signal as well as raising it, so :meth:`Interrupts.check` after each step raises it again; inside
:meth:`Interrupts.run` (asyncio) the signal cancels the main task instead, as ``asyncio.run`` does
for SIGINT; inside :meth:`Interrupts.held` it only waits, so a cleanup runs to its end. SIGTERM
behaves like SIGINT throughout. Use from the main thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Coroutine, Iterator
from types import FrameType, TracebackType
from typing import Any, TypeVar

T = TypeVar("T")
SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupts:
    """A context manager: while active, SIGINT and SIGTERM go through this object."""

    def __init__(self) -> None:
        self.signum: int | None = None  # the first signal that came
        self._count = 0
        self._holding = False
        self._task: asyncio.Task[Any] | None = None
        self._previous: list[tuple[int, Any]] = []

    def __enter__(self) -> Interrupts:
        self._previous = [(s, signal.signal(s, self._handle)) for s in SIGNALS]
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for signum, handler in self._previous:
            if handler is not None:
                signal.signal(signum, handler)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self._count += 1
        self.signum = self.signum or signum
        if self._holding:
            return
        task = self._task
        if task is not None and not task.done() and self._count == 1:
            task.cancel()  # the loop sees it at its next turn (as asyncio.run's own handler)
            task.get_loop().call_soon_threadsafe(lambda: None)
            return
        raise KeyboardInterrupt

    @property
    def interrupted(self) -> bool:
        return self.signum is not None

    def check(self) -> None:
        """Raise ``KeyboardInterrupt`` if a signal came (even one whose exception was lost)."""
        if self.signum is not None:
            raise KeyboardInterrupt

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """``asyncio.run(coro)``; a signal cancels it, then ``KeyboardInterrupt`` is raised."""

        async def main() -> T:
            self._task = asyncio.current_task()
            try:
                return await coro
            finally:
                self._task = None

        try:
            result = asyncio.run(main())
        except asyncio.CancelledError:
            self.check()
            raise
        self.check()  # the task may have swallowed the cancellation
        return result

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """Signals wait until the block is done; one that came is then raised."""
        self._holding = True
        try:
            yield
        finally:
            self._holding = False
        self.check()
