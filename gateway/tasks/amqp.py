"""RabbitMQ, as the task queue sees it: the topology, confirmed publishes, and
one consumer feeding a local inbox, over one connection and channel per
process. The only module that imports aio-pika; its errors become
QueueUnavailable here. A message is a task id (its body) and a message id of
its own; the task itself lives elsewhere (RedisRecords).

Names, from `queue`:
  {queue}                 the work: a durable quorum queue, a message per runnable task
  {queue}.retry.{ms}ms    tasks waiting out a backoff of about {ms} (each message's own TTL);
                          expired, they are dead-lettered back into {queue}
  {queue}.dead-letter     fanout exchange: where {queue} sends the messages workers reject
  {queue}.dead            the dead-letter queue bound to it (the newest 100,000)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractIncomingMessage
from aiormq.exceptions import AMQPError, ChannelInvalidStateError

from gateway.tasks.errors import QueueUnavailable

log = logging.getLogger("infergate.tasks")
_TIMEOUT_S = 5.0
_DEAD_MAX = 100_000
# At-least-once dead-lettering needs reject-publish; nothing here sets a length limit.
_QUORUM = {"x-queue-type": "quorum", "x-overflow": "reject-publish"}
_AT_LEAST_ONCE = {**_QUORUM, "x-dead-letter-strategy": "at-least-once"}


@contextlib.contextmanager
def broker_errors() -> Iterator[None]:
    try:
        yield
    except (AMQPError, ChannelInvalidStateError, OSError, TimeoutError) as exc:
        raise QueueUnavailable(f"task broker unavailable: {exc!r}") from exc


@dataclass(frozen=True, slots=True)
class Delivery:
    """A message handed to this process, not yet settled. `channel` counts
    the channels opened: one that closed took its deliveries back."""

    task_id: str
    message_id: str
    redelivered: bool
    tag: int
    channel: int


class Broker:
    """`prefetch` 0: as many unacknowledged messages as `receive` asks for.
    Connects on first use and again after the connection was lost."""

    def __init__(self, url: str, queue: str, *, prefetch: int = 0) -> None:
        self._url = url
        self.queue = queue
        self._fixed_prefetch = prefetch
        self.declared: set[str] = set()  # the queues and exchanges declared so far
        self._connection: AbstractConnection | None = None
        self._channel: AbstractChannel | None = None
        self._opening = asyncio.Lock()
        self._generation = 0
        self._inbox: asyncio.Queue[Delivery] = asyncio.Queue()
        self._messages: dict[int, AbstractIncomingMessage] = {}
        self._consuming = False
        self._prefetch = 0

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
            channel = await self._open()
            wanted = self._fixed_prefetch or max(1, prefetch)
            if wanted != self._prefetch:
                await channel.set_qos(prefetch_count=wanted, timeout=_TIMEOUT_S)
                self._prefetch = wanted
            if not self._consuming:
                await self._consume(channel)
        inbox = self._inbox
        first: list[Delivery] = []
        if inbox.empty() and wait_s > 0:
            with contextlib.suppress(TimeoutError):
                first.append(await asyncio.wait_for(inbox.get(), wait_s))
        rest = min(most - len(first), inbox.qsize())
        return first + [inbox.get_nowait() for _ in range(rest)]

    async def _consume(self, channel: AbstractChannel) -> None:
        generation, inbox = self._generation, self._inbox

        async def arrived(message: AbstractIncomingMessage) -> None:
            if generation != self._generation:
                return  # from a channel since closed: the broker took it back
            self._messages[message.delivery_tag or 0] = message
            delivery = Delivery(
                message.body.decode(errors="replace"),
                message.message_id or "",
                bool(message.redelivered),
                message.delivery_tag or 0,
                generation,
            )
            inbox.put_nowait(delivery)

        queue = await channel.get_queue(self.queue, ensure=False)
        await queue.consume(arrived, no_ack=False, timeout=_TIMEOUT_S)
        self._consuming = True

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
        if delivery.channel != self._generation:
            return
        message = self._messages.pop(delivery.tag, None)
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

    # --- the connection -----------------------------------------------------------------

    async def _open(self) -> AbstractChannel:
        channel = self._channel
        if channel is not None and not channel.is_closed:
            return channel
        async with self._opening:
            if self._channel is not None and not self._channel.is_closed:
                return self._channel
            await self.aclose()
            connection = await aio_pika.connect(self._url, timeout=_TIMEOUT_S)
            try:
                channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
                await self._declare(channel)
            except BaseException:
                await connection.close()
                raise
            self._connection, self._channel = connection, channel
            self._generation += 1
            self._inbox = asyncio.Queue()
            self._messages = {}
            self._consuming = False
            self._prefetch = 0
            return channel

    async def _declare(self, channel: AbstractChannel) -> None:
        q = self.queue
        exchange = await channel.declare_exchange(
            f"{q}.dead-letter", aio_pika.ExchangeType.FANOUT, durable=True, timeout=_TIMEOUT_S
        )
        dead = await self._declare_queue(
            channel, f"{q}.dead", {**_QUORUM, "x-max-length": _DEAD_MAX}
        )
        await dead.bind(exchange, timeout=_TIMEOUT_S)
        await self._declare_queue(
            channel, q, {**_AT_LEAST_ONCE, "x-dead-letter-exchange": f"{q}.dead-letter"}
        )
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
