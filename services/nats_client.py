"""The services' nats-py client: nats-py's :class:`Client` with three event-loop hand-offs taken
out of every message's path.

A run's windows are a chain of messages, each sent by the handler of the one before, so
whatever happens between a message's bytes arriving and its handler running, and between a
publish and its bytes leaving, lies on the run's path. nats-py (2.16, locked) puts three
event-loop hand-offs there, each a task woken through the loop's ready queue:

1. **A publish** is queued for the flusher task, which writes it. Here it is written at once
   (:meth:`ServicesClient._flush_pending`), the path nats-py itself takes when its flusher is
   gone, with the same backpressure (``drain``) and the same error handling as the flusher.
   Forced flushes and reconnections stay nats-py's.
2. **Bytes arriving** wake the read-loop task, which parses them. Here they are parsed in the
   transport's callback that received them (:meth:`ServicesClient._feed`), as the read-loop
   task: ``asyncio.current_task()`` is that task, as it would be in nats-py. nats-py's read loop
   still runs and takes every byte this does not: bytes that arrive while it has some not yet
   parsed, or while a parse is still waiting for something (it then waits for that parse first,
   :class:`_OrderedParser`), so the bytes are parsed in the order they came.
3. **A message** is queued for its subscription's task, which runs the handler. Here a message
   of a subscription made through :meth:`ServicesClient.subscribe_direct` runs its handler at
   once (:meth:`DirectHandler.run_now`), in the read-loop task, when nothing of that subscription
   is queued or running. A handler that waits for something (an ``await`` that suspends)
   continues as a task of its own, and the subscription's later messages queue behind it
   (:meth:`DirectHandler.queued`), so each subscription still handles one message at a time, in
   order, and nats-py's drain still waits for it.

So a handler of such a subscription runs, until it first waits, inside the connection's read
loop. It must not cancel its own task or enter ``asyncio.timeout()`` before its first wait (use
``asyncio.wait_for``, which starts a task of its own): that task is the read loop's. While it
runs, no other message of the connection is handled; that is what makes it fast.

Measured (docs/performance.md, "Messages handled at once"): the round trip of
``bench/bench_transport_floor.py --cpus 0``, and ``llmtwin up w1``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Coroutine, Generator
from typing import Any

import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg as NatsMsg
from nats.aio.subscription import Subscription as NatsSub
from nats.protocol.parser import Parser

log = logging.getLogger(__name__)


class _Resume:
    """Awaitable that finishes a coroutine started by hand (:func:`start_now`): what a task does
    with a coroutine, taken up after its first suspension."""

    __slots__ = ("coro", "first")

    def __init__(self, coro: Coroutine[Any, Any, Any], first: Any) -> None:
        self.coro, self.first = coro, first

    def __await__(self) -> Generator[Any, None, Any]:
        coro, value = self.coro, self.first
        while True:
            try:
                yield value  # the future the coroutine waits on: the task waits on it in its place
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as exc:  # thrown in by the task (cancellation): into the coroutine
                try:
                    value = coro.throw(exc)
                except StopIteration as stop:
                    return stop.value
            else:
                try:
                    value = coro.send(None)
                except StopIteration as stop:
                    return stop.value


async def _finish(coro: Coroutine[Any, Any, Any], first: Any) -> Any:
    return await _Resume(coro, first)


def start_now(coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any] | None:
    """Run ``coro`` here and now until it finishes (None) or first waits: then the task that
    finishes it. What it raises before it waits is raised here."""
    try:
        first = coro.send(None)
    except StopIteration:
        return None
    return asyncio.get_running_loop().create_task(_finish(coro, first))


class DirectHandler:
    """A subscription's handler, run at once for a message when nothing of its subscription is
    queued or running (see the module docstring)."""

    def __init__(
        self,
        handle: Callable[[NatsMsg], Coroutine[Any, Any, None]],
        moved: Callable[[asyncio.Task[Any]], None] | None = None,
    ) -> None:
        self.handle = handle
        self.moved = moved
        """Told the task a handler goes on in once it first waits."""
        self.active = 0
        """Messages taken (run at once, or taken from the queue by nats-py's task) and not yet
        handled."""
        self.resuming: asyncio.Task[Any] | None = None
        """The handler that waited, finishing as a task of its own."""

    def idle(self, sub: NatsSub) -> bool:
        return self.active == 0 and sub._pending_queue.empty()

    def run_now(self, sub: NatsSub, msg: NatsMsg) -> None:
        self.active += 1
        try:
            task = start_now(self.handle(msg))
        except asyncio.CancelledError:  # nats-py would stop the subscription; the read loop goes on
            log.warning("handler of %s cancelled", msg.subject)
            task = None
        except BaseException:
            self.active -= 1
            raise
        if task is None:
            self.active -= 1
            return
        self.resuming = task
        queue = sub._pending_queue  # nats-py's drain waits for it as for a queued message
        queue._unfinished_tasks += 1  # type: ignore[attr-defined]
        queue._finished.clear()  # type: ignore[attr-defined]
        task.add_done_callback(functools.partial(self._resumed, queue))
        if self.moved is not None:
            self.moved(task)

    def _resumed(self, queue: asyncio.Queue[NatsMsg], task: asyncio.Task[Any]) -> None:
        self.active -= 1
        if self.resuming is task:
            self.resuming = None
        queue.task_done()
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("handler failed", exc_info=exc)

    async def queued(self, msg: NatsMsg) -> None:
        """nats-py's callback, from its subscription's task: a message it queued, after the
        handler that waited, if one is still running."""
        self.active += 1
        try:
            if self.resuming is not None:
                await asyncio.wait((self.resuming,))
            await self.handle(msg)
        finally:
            self.active -= 1


class _OrderedParser(Parser):
    """nats-py's parser, which first waits for a parse begun at once that is still waiting (the
    read loop must not parse later bytes before it)."""

    def __init__(self, nc: ServicesClient) -> None:
        super().__init__(nc)
        self.client = nc

    async def parse(self, data: bytes = b"") -> None:
        parsing = self.client.parsing
        if parsing is not None and not parsing.done():
            await asyncio.wait((parsing,))
        await super().parse(data)


class ServicesClient(Client):
    """See the module docstring."""

    def __init__(self) -> None:
        super().__init__()
        self._ps = _OrderedParser(self)
        self.parsing: asyncio.Task[Any] | None = None
        """A parse begun at once that waited, finishing as a task of its own."""
        self._direct: dict[int, DirectHandler] = {}

    # -- 1. publishes written at once -----------------------------------------------------------------
    async def _flush_pending(self, force_flush: bool = False) -> Any:
        transport = self._transport
        if force_flush or transport is None or not self.is_connected:
            return await super()._flush_pending(force_flush)
        if self._pending_data_size > 0:
            pending, self._pending, self._pending_data_size = self._pending, [], 0
            try:
                transport.writelines(pending)
                await transport.drain()  # type: ignore[no-untyped-call]  # untyped in nats-py
            except OSError as exc:  # as the flusher: report, and let nats-py reconnect
                await self._error_cb(exc)
                await self._process_op_err(exc)
            except RuntimeError:  # a transport closed under us: as the flusher, leave it to reconnection
                log.debug("nats (%s): write on a closed transport", self.options.get("name"))
        return None

    # -- 2. bytes parsed where they arrive ----------------------------------------------------------
    async def _process_connect_init(self) -> None:
        await super()._process_connect_init()  # connected (again): a new reader, a new read loop
        reader = getattr(self._transport, "_io_reader", None)
        if isinstance(reader, asyncio.StreamReader):  # TCP and TLS; not websockets
            fed: Callable[[bytes], None] = reader.feed_data
            reader.feed_data = functools.partial(self._feed, reader, fed)  # type: ignore[method-assign]

    def _feed(self, reader: asyncio.StreamReader, fed: Callable[[bytes], None], data: bytes) -> None:
        """The reader's ``feed_data``: parse at once when the read loop waits for bytes with none
        unparsed and no parse is waiting; else hand them to the read loop, as nats-py does."""
        task, parsing = self._reading_task, self.parsing
        if (
            reader._buffer  # type: ignore[attr-defined]
            or reader._waiter is None  # type: ignore[attr-defined]  # the read loop has bytes to parse
            or task is None
            or task.done()
            or (parsing is not None and not parsing.done())
            or self.is_closed
            or self.is_reconnecting
        ):
            fed(data)
            return
        loop = task.get_loop()
        try:
            asyncio.tasks._enter_task(loop, task)
        except RuntimeError:  # called from a task, not from the transport: the read loop's way
            fed(data)
            return
        try:
            self.parsing = start_now(self._parse_now(data))
        finally:
            asyncio.tasks._leave_task(loop, task)

    async def _parse_now(self, data: bytes) -> None:
        """Parse, handling errors as nats-py's read loop does (which stops reading; here its
        reconnection closes the transport, which ends the read loop)."""
        try:
            await self._ps.parse(data)
        except nats.errors.ProtocolError:
            await self._process_op_err(nats.errors.ProtocolError())
        except OSError as exc:
            await self._process_op_err(exc)
        except Exception:
            log.exception("nats (%s): encountered error", self.options.get("name"))

    # -- 3. messages handled at once -----------------------------------------------------------------
    async def subscribe_direct(self, subject: str, queue: str, handler: DirectHandler) -> NatsSub:
        """Subscribe with ``handler`` run at once where it can be (see the module docstring)."""
        sub = await self.subscribe(subject, queue, cb=handler.queued)
        self._direct[sub._id] = handler
        return sub

    async def _process_msg(self, sid: int, subject: bytes, reply: bytes, data: bytes, headers: bytes) -> None:
        handler, sub = self._direct.get(sid), self._subs.get(sid)
        if handler is None or sub is None or headers or sub._max_msgs > 0 or not handler.idle(sub):
            await super()._process_msg(sid, subject, reply, data, headers)
            return
        self.stats["in_msgs"] += 1
        self.stats["in_bytes"] += len(data)
        sub._received += 1
        handler.run_now(sub, self._build_message(sid, subject, reply, data, None))

    def _remove_sub(self, sid: int, max_msgs: int = 0) -> None:
        super()._remove_sub(sid, max_msgs)
        self._direct.pop(sid, None)
