"""Users' privacy: pseudonymous user ids, and forgetting a user.

**Pseudonymization** (``NBP_PSEUDONYMIZE_KEY``): the worker replaces each valid event's
``user_id`` by ``HMAC-SHA256(key, user_id)`` in hex (64 characters) right after decoding and
the key check, before anything is stored or published: the state table's key (and so its
changelog), the activity table, the prediction's record key and its ``user_id`` field all
carry the pseudonym. The same user always gets the same pseudonym under the same key, so
per-user order, state and dedupe work unchanged; without the key, the pseudonym cannot be
reversed or recomputed from a guessed id. The dead-letter topic keeps the original key and
bytes (that is its contract: a bad record is forwarded untouched for inspection), so it must
be protected like the input topic. Changing the key starts every user afresh.

**Forgetting** (``nextbehavior forget USER_ID``): a *tombstone* (a record with the user's id as
key and a null value) on the input topic asks the worker to delete that user's state. It
travels the user's partition in order with their events, so everything before it is
forgotten and everything after starts afresh. The worker deletes the user's sequence state
(a changelog tombstone follows, so a restart does not bring it back) and the hourly activity
counts of the hours their state covered; it publishes no prediction and no dead letter.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import hmac
import logging
from collections.abc import Callable

from nextbehavior.stream.connection import aiokafka_options
from nextbehavior.stream.events import MAX_ID_CHARS, Event
from nextbehavior.stream.settings import Settings

logger = logging.getLogger(__name__)

Pseudonym = Callable[[str], str]
"""Maps a user id to the id the worker stores and publishes."""


def pseudonymizer(key: bytes) -> Pseudonym:
    """``user_id -> hex(HMAC-SHA256(key, user_id))``; refuses an empty key."""
    if not key:
        raise ValueError("the pseudonymization key must not be empty")

    def pseudonym(user_id: str) -> str:
        return hmac.new(key, user_id.encode("utf-8"), hashlib.sha256).hexdigest()

    return pseudonym


def pseudonymize(event: Event, pseudonym: Pseudonym) -> Event:
    """``event`` with its ``user_id`` replaced by the pseudonym."""
    return dataclasses.replace(event, user_id=pseudonym(event.user_id))


class ForgetError(RuntimeError):
    """A forget request could not be sent; one-line reason."""


async def request_forget(settings: Settings, user_id: str, *, timeout_s: float) -> tuple[int, int]:
    """Publish the forget request for ``user_id`` (the real id, never the pseudonym): a
    tombstone keyed by it on the input topic. Returns its ``(partition, offset)``."""
    from aiokafka import AIOKafkaProducer
    from aiokafka.errors import KafkaError

    from nextbehavior.stream.topics import TopicError, list_topics

    if not user_id.strip() or len(user_id) > MAX_ID_CHARS:
        raise ForgetError(f"a user id is 1 to {MAX_ID_CHARS} characters, not blank")
    try:
        topics = await list_topics(settings, timeout_s=timeout_s)
    except TopicError as exc:
        raise ForgetError(str(exc)) from None
    if settings.input_topic not in topics:  # a produce would auto-create it on some brokers
        raise ForgetError(f"input topic {settings.input_topic!r} does not exist")
    producer = AIOKafkaProducer(**aiokafka_options(settings), acks="all")
    try:
        async with asyncio.timeout(timeout_s):
            await producer.start()
            meta = await producer.send_and_wait(settings.input_topic, None, key=user_id.encode())
    except TimeoutError:
        raise ForgetError(
            f"broker {settings.bootstrap} did not take it within {timeout_s:g}s"
        ) from None
    except KafkaError as exc:
        raise ForgetError(f"broker {settings.bootstrap}: {exc}") from None
    finally:
        await producer.stop()
    return meta.partition, meta.offset
