"""RabbitMQ, as the task queue sees it: the topology, confirmed publishes, and
consumers feeding a local inbox, over one connection per process: a channel
to publish on, and one channel per task slot (prefetch 1) to consume on, so
that the broker closing one (its delivery held past `consumer_timeout`) takes
back that task alone. The only module that imports aio-pika; its errors
become QueueUnavailable here. A message is a task id (its body) and a
message id of its own; the task itself lives elsewhere (RedisRecords).

Names, from `queue`:
  {queue}                 the work: a durable quorum queue, a message per runnable task
  {queue}.retry.{ms}ms    tasks waiting out a backoff of about {ms} (each message's own TTL);
                          expired, they are dead-lettered back into {queue}
  {queue}.dead-letter     fanout exchange: where {queue} sends the messages workers reject
  {queue}.dead            the dead-letter queue bound to it: a record of the dead letters,
                          the newest 100,000 (drop-head); a requeued task's message leaves it
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractIncomingMessage
from aiormq.exceptions import AMQPError, ChannelInvalidStateError, ChannelPreconditionFailed

from gateway.tasks.errors import QueueUnavailable

log = logging.getLogger("infergate.tasks")
_TIMEOUT_S = 5.0
_DEAD_MAX = 100_000
_DEAD_SCAN = 10_000  # dead letters looked through for a requeued task's
# At-least-once dead-lettering needs reject-publish on the queues it leaves
# (the work and retry queues, which have no length limit). The dead-letter
# queue drops its oldest instead: with reject-publish a full one would refuse
# every new dead letter, and the work queue would hold them all, forever.
_QUORUM = {"x-queue-type": "quorum"}
_AT_LEAST_ONCE = {
    **_QUORUM,
    "x-overflow": "reject-publish",
    "x-dead-letter-strategy": "at-least-once",
}


@contextlib.contextmanager
def broker_errors() -> Iterator[None]:
    try:
        yield
    except (AMQPError, ChannelInvalidStateError, OSError, TimeoutError) as exc:
        raise QueueUnavailable(f"task broker unavailable: {exc!r}") from exc


@dataclass(frozen=True, slots=True)
class Delivery:
    """A message handed to this process, not yet settled. `channel` names the
    channel it came on (never reused): one that closed took it back."""

    task_id: str
    message_id: str
    redelivered: bool
    tag: int
    channel: int


class Broker:
    """Consumes on `prefetch` channels of one unacknowledged message each;
    `prefetch` 0: as many as `receive` is first asked for (the process's
    concurrency), more if a later call asks for more, never fewer. Connects on
    first use and again after the connection was lost; reopens a channel the
    broker closed."""

    def __init__(
        self, url: str, queue: str, *, prefetch: int = 0, dead_max: int = _DEAD_MAX
    ) -> None:
        self._url = url
        self.queue = queue
        self._fixed_prefetch = prefetch
        self._dead_max = dead_max
        self.declared: set[str] = set()  # the queues and exchanges declared so far
        self._connection: AbstractConnection | None = None
        self._channel: AbstractChannel | None = None  # for publishing, with confirms
        self._slots: dict[int, AbstractChannel] = {}  # consuming, by channel id
        self._slots_wanted = 0
        self._ids = itertools.count(1)
        self._opening = asyncio.Lock()
        self._inbox: asyncio.Queue[Delivery] = asyncio.Queue()
        self._messages: dict[tuple[int, int], AbstractIncomingMessage] = {}

    # --- sending ------------------------------------------------------------------------

    async def publish(self, task_id: str, *, delay_s: float = 0.0, bucket_ms: int = 0) -> None:
        """Returns once the broker confirmed the message (it is on disk on a
        quorum of nodes); raises QueueUnavailable otherwise. With `delay_s` it
        goes to the retry queue of `bucket_ms` and comes back after the delay."""
        with broker_errors():
            channel = await self._open()
            target, expiration = self.queue, None
            if delay_s > 0:
                target = await self._retry_queue(channel, bucket_ms)
                expiration = max(0.001, delay_s)
            message = aio_pika.Message(
                task_id.encode(),
                message_id=uuid.uuid4().hex,
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                expiration=expiration,
            )
            await channel.default_exchange.publish(message, target, timeout=_TIMEOUT_S)

    # --- receiving ----------------------------------------------------------------------

    async def receive(self, prefetch: int, wait_s: float, most: int) -> list[Delivery]:
        """Up to `most` messages for this process, waiting up to `wait_s` for
        the first; at most `prefetch` (unless fixed) are unacknowledged at a time."""
        with broker_errors():
            await self._open()
            wanted = self._fixed_prefetch or max(1, prefetch, self._slots_wanted)
            async with self._opening:
                await self._fill_slots(wanted)
        first: list[Delivery] = []
        if self._inbox.empty() and wait_s > 0:
            with contextlib.suppress(TimeoutError):
                first.append(await asyncio.wait_for(self._inbox.get(), wait_s))
        rest = min(most - len(first), self._inbox.qsize())
        taken = first + [self._inbox.get_nowait() for _ in range(rest)]
        return [d for d in taken if d.channel in self._slots]  # others went back to the broker

    async def _fill_slots(self, wanted: int) -> None:
        """Forget the channels the broker closed (their messages are its
        again), then consume on new ones, prefetch 1 each, up to `wanted`.
        The prefetch is set before consuming: a later basic.qos would not
        apply to a consumer already there."""
        for number, channel in list(self._slots.items()):
            if channel.is_closed:
                del self._slots[number]
                for key in [k for k in self._messages if k[0] == number]:
                    del self._messages[key]
        self._slots_wanted = wanted
        assert self._connection is not None
        while len(self._slots) < wanted:
            channel = await self._connection.channel(publisher_confirms=False)
            await channel.set_qos(prefetch_count=1, timeout=_TIMEOUT_S)
            number = next(self._ids)
            queue = await channel.get_queue(self.queue, ensure=False)
            await queue.consume(self._arrival(number), no_ack=False, timeout=_TIMEOUT_S)
            self._slots[number] = channel

    def _arrival(self, number: int) -> Callable[[AbstractIncomingMessage], Awaitable[None]]:
        inbox = self._inbox

        async def arrived(message: AbstractIncomingMessage) -> None:
            if inbox is not self._inbox:
                return  # from a connection since closed: the broker took it back
            tag = message.delivery_tag or 0
            self._messages[(number, tag)] = message
            task_id = message.body.decode(errors="replace")
            inbox.put_nowait(
                Delivery(task_id, message.message_id or "", bool(message.redelivered), tag, number)
            )

        return arrived

    async def ack(self, delivery: Delivery) -> None:
        """Done with: the message is gone."""
        await self._settle(delivery, "ack")

    async def dead_letter(self, delivery: Delivery) -> None:
        """Rejected: the broker moves it to {queue}.dead."""
        await self._settle(delivery, "reject")

    async def give_back(self, delivery: Delivery) -> None:
        """Back into the queue at once, marked redelivered."""
        await self._settle(delivery, "requeue")

    async def _settle(self, delivery: Delivery, how: Literal["ack", "reject", "requeue"]) -> None:
        """A delivery whose channel closed is the broker's again already, and
        so is one whose settling fails here: either way it comes back
        (redelivered), and whoever takes it reads the task's record first."""
        message = self._messages.pop((delivery.channel, delivery.tag), None)
        if message is None:
            return
        try:
            if how == "ack":
                await message.ack()
            elif how == "reject":
                await message.reject(requeue=False)
            else:
                await message.nack(requeue=True)
        except (AMQPError, ChannelInvalidStateError, OSError) as exc:
            log.info("task %s: %s failed, the broker redelivers it: %r", delivery.task_id, how, exc)

    async def drop_dead_letters(self, task_id: str) -> int:
        """Take a task's messages out of {queue}.dead (once it is requeued),
        looking through its oldest _DEAD_SCAN; the others go back as they were
        (marked redelivered). Returns how many it took out."""
        with broker_errors():
            await self._open()
            assert self._connection is not None
            channel = await self._connection.channel(publisher_confirms=False)
            try:
                return await self._drop_dead(channel, task_id.encode())
            finally:
                with contextlib.suppress(AMQPError, ChannelInvalidStateError, OSError):
                    await channel.close()  # what it holds unacknowledged goes back

    async def _drop_dead(self, channel: AbstractChannel, body: bytes) -> int:
        dead = await channel.declare_queue(f"{self.queue}.dead", passive=True, timeout=_TIMEOUT_S)
        count = min(int(dead.declaration_result.message_count or 0), _DEAD_SCAN)
        if count == 0:
            return 0
        await channel.set_qos(prefetch_count=count, timeout=_TIMEOUT_S)
        arrived: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()
        await dead.consume(arrived.put, no_ack=False, timeout=_TIMEOUT_S)
        dropped = 0
        for _ in range(count):
            message = await asyncio.wait_for(arrived.get(), _TIMEOUT_S)
            if message.body == body:
                await message.ack()
                dropped += 1
        return dropped

    async def depth(self) -> int:
        """Messages ready in the work queue, and those waiting in this process's inbox."""
        with broker_errors():
            channel = await self._open()
            queue = await channel.declare_queue(self.queue, passive=True, timeout=_TIMEOUT_S)
        ready = queue.declaration_result.message_count or 0
        return int(ready) + self._inbox.qsize()

    async def aclose(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(AMQPError, OSError, RuntimeError):
                await self._connection.close()
        self._connection = self._channel = None
        self._slots = {}

    # --- the connection -----------------------------------------------------------------

    async def _open(self) -> AbstractChannel:
        """The publishing channel; a lost connection is made again, with
        every consuming channel (their messages went back to the broker)."""
        channel = self._channel
        if channel is not None and not channel.is_closed:
            return channel
        async with self._opening:
            if self._channel is not None and not self._channel.is_closed:
                return self._channel
            if not _alive(self._connection):
                await self._connect()
            assert self._connection is not None
            channel = await self._connection.channel(publisher_confirms=True, on_return_raises=True)
            self._channel = channel
            return channel

    async def _connect(self) -> None:
        await self.aclose()
        connection = await aio_pika.connect(self._url, timeout=_TIMEOUT_S)
        try:
            await self._declare(connection)
        except BaseException:
            await connection.close()
            raise
        self._connection = connection
        self._inbox = asyncio.Queue()
        self._messages = {}

    async def _declare(self, connection: AbstractConnection) -> None:
        q = self.queue
        channel = await connection.channel(publisher_confirms=False)
        exchange = await channel.declare_exchange(
            f"{q}.dead-letter", aio_pika.ExchangeType.FANOUT, durable=True, timeout=_TIMEOUT_S
        )
        arguments = {**_QUORUM, "x-overflow": "drop-head", "x-max-length": self._dead_max}
        try:
            dead = await self._declare_queue(channel, f"{q}.dead", arguments)
        except ChannelPreconditionFailed as exc:  # declared by an older version: closes the channel
            log.warning(
                "%s.dead exists with other arguments, kept as it is: it keeps the oldest "
                "dead letters once full; delete it (after reading it) to have it declared "
                "anew, keeping the newest: %s",
                q,
                exc,
            )
            channel = await connection.channel(publisher_confirms=False)
            dead = await channel.declare_queue(f"{q}.dead", passive=True, timeout=_TIMEOUT_S)
        await dead.bind(exchange, timeout=_TIMEOUT_S)
        await self._declare_queue(
            channel, q, {**_AT_LEAST_ONCE, "x-dead-letter-exchange": f"{q}.dead-letter"}
        )
        await channel.close()
        self.declared |= {f"{q}.dead-letter", f"{q}.dead", q}

    async def _retry_queue(self, channel: AbstractChannel, bucket_ms: int) -> str:
        name = f"{self.queue}.retry.{bucket_ms}ms"
        if name not in self.declared:
            arguments = {
                **_AT_LEAST_ONCE,
                "x-dead-letter-exchange": "",  # the default exchange: by queue name
                "x-dead-letter-routing-key": self.queue,
            }
            await self._declare_queue(channel, name, arguments)
            self.declared.add(name)
        return name

    @staticmethod
    async def _declare_queue(channel: AbstractChannel, name: str, arguments: dict[str, Any]) -> Any:
        return await channel.declare_queue(
            name, durable=True, arguments=arguments, timeout=_TIMEOUT_S
        )


def _alive(connection: AbstractConnection | None) -> bool:
    """aio-pika marks a connection the broker closed as closed only later."""
    if connection is None or connection.is_closed:
        return False
    transport = connection.transport
    return transport is not None and not transport.connection.is_closed
