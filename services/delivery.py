"""Running a subscription's handler on its messages: one at a time, in arrival order, inline when it can.

A handler is ``handler(msg)``. A plain function does its work before returning ``None``: it runs
right where the message was parsed, with no task and no queue, which is what keeps the
per-window path of the services short. A coroutine function returns a coroutine: it is finished
in a task, and messages that arrive meanwhile wait in a backlog, so a subscription's handlers
never overlap, whichever kind they are (nats-py gave the same guarantee with a task per
subscription). Different subscriptions do not wait for each other.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

log = logging.getLogger(__name__)

M = TypeVar("M")

Handler = Callable[[Any], Awaitable[None] | None]
"""``handler(msg)``: returns None when done, or an awaitable that finishes the work."""


class Delivery(Generic[M]):
    """The handler of one subscription and the messages waiting for it."""

    __slots__ = ("_task", "backlog", "handler", "name", "open")

    def __init__(self, handler: Handler, name: str) -> None:
        self.handler = handler
        self.name = name
        """For logs: the subject subscribed to."""
        self.backlog: deque[M] = deque()
        self.open = True
        """False once unsubscribed: later messages are dropped, the backlog is still handled."""
        self._task: asyncio.Task[None] | None = None

    def deliver(self, msg: M) -> None:
        """Handle ``msg`` now, or after the message being handled (a task still running)."""
        if not self.open:
            return
        if self._task is not None:
            self.backlog.append(msg)
            return
        self._call(msg)

    def _call(self, msg: M) -> None:
        try:
            pending = self.handler(msg)
        except Exception:  # a handler error never ends the subscription
            log.exception("handler of %s failed", self.name)
            return
        if pending is not None:
            self._task = asyncio.get_running_loop().create_task(self._finish(pending))

    async def _finish(self, pending: Awaitable[None]) -> None:
        try:
            await pending
        except Exception:
            log.exception("handler of %s failed", self.name)
        while self.backlog:
            msg = self.backlog.popleft()
            try:
                more = self.handler(msg)
                if more is not None:
                    await more
            except Exception:
                log.exception("handler of %s failed", self.name)
        self._task = None

    def busy(self) -> asyncio.Task[None] | None:
        """The task finishing a handler (and then the backlog), if one runs."""
        return self._task

    async def idle(self) -> None:
        """Return once every message received so far has been handled (not from its own handler)."""
        task = self._task
        if task is not None and task is not asyncio.current_task():
            await asyncio.shield(task)
