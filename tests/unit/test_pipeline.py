"""The batch path without a broker: a real bundle, a dict for state, a list for the topic.

Checks what the worker relies on: one prediction per event (also several per user in one
batch, each from the state right after that event), sends awaited before acks, acks in order,
and failures (inference, sends) that never drop an event silently.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka.errors import MessageSizeTooLargeError

from nextbehavior.stream.events import parse_prediction
from nextbehavior.stream.intake import Intake, Record
from nextbehavior.stream.pipeline import Headers, Pipeline, SendFailedError
from nextbehavior.stream.predictor import BatchOutput, Predictor
from nextbehavior.stream.table_writes import TableWriter, UserStates

T0 = 1_700_000_000_000
CHANGELOG = "state-changelog"


class Topic:
    """Collects sends; each send's delivery completes on the next loop turn (or fails)."""

    def __init__(self, fail_times: int = 0, max_bytes: int = 1 << 20) -> None:
        self.max_bytes = max_bytes
        self.records: list[tuple[str, bytes | None, bytes | None, Headers | None]] = []
        self.changelog: list[tuple[bytes | None, bytes | None, int | None]] = []
        self.fail_times = fail_times
        self.log: list[str] = []

    async def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: Headers | None,
        partition: int | None = None,
    ) -> asyncio.Future[Any]:
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if value is not None and len(value) > self.max_bytes:
            raise MessageSizeTooLargeError("too large")  # what aiokafka raises at send()
        if topic == CHANGELOG:  # changelog failures: tests/unit/test_durability.py
            self.changelog.append((key, value, partition))
            asyncio.get_running_loop().call_soon(fut.set_result, None)
        elif self.fail_times:
            self.fail_times -= 1
            fut.set_exception(ConnectionError("broker away"))
        else:
            self.records.append((topic, key, value, headers))
            self.log.append(f"sent {topic}")
            asyncio.get_running_loop().call_soon(fut.set_result, None)
        return fut


class PoisonPredictor(Predictor):
    """The real model, failing on any history that holds the item ``poison``."""

    def predict_histories(self, histories: Any) -> BatchOutput:
        if any(s.item_id == "poison" for h in histories for s in h):
            raise RuntimeError("model blew up")
        return super().predict_histories(histories)


def rec(eid: str, user: str, item: str, ts: int, offset: int) -> Record:
    value = {
        "event_id": eid,
        "user_id": user,
        "item_id": item,
        "event_type": "view",
        "timestamp": ts,
    }
    return Record(user.encode(), orjson.dumps(value), "events", 0, offset)


def make(predictor: Predictor, topic: Topic, acks: list[int], **kw: Any) -> Pipeline[int]:
    async def ack(token: int) -> None:
        acks.append(token)
        topic.log.append(f"ack {token}")

    state = UserStates(TableWriter({}, CHANGELOG))
    intake = Intake(state, max_len=predictor.max_len, horizon_ms=None, max_bytes=4096)
    return Pipeline(
        intake,
        predictor,
        send=topic.send,
        ack=ack,
        output_topic="out",
        dlq_topic="dlq",
        batch_size=kw.pop("batch_size", 64),
        batch_wait_s=kw.pop("batch_wait_s", 0.01),
        **kw,
    )


async def run_records(pipeline: Pipeline[int], records: list[Record]) -> None:
    runner = asyncio.create_task(pipeline.run())
    for n, r in enumerate(records):
        await pipeline.take(n, r)
    pipeline.close()
    await asyncio.wait_for(runner, timeout=20)


@pytest.fixture(scope="module")
def predictor(tiny_bundle: Path) -> Predictor:
    return Predictor(tiny_bundle, ["CPUExecutionProvider"])


async def test_each_event_gets_its_own_prediction_even_in_one_batch(predictor: Predictor) -> None:
    topic, acks = Topic(), []
    pipeline = make(predictor, topic, acks)
    records = [rec(f"u1-{n}", "u1", f"i{n + 1}", T0 + n, n) for n in range(4)]
    records.append(rec("u2-0", "u2", "i30", T0, 4))
    records.append(Record(b"u2", b"junk", "events", 0, 5))
    await run_records(pipeline, records)

    assert acks == list(range(6))
    assert pipeline.stats.batches == 1  # one predictor call for the five valid events
    preds = [parse_prediction(v) for t, _, v, _ in topic.records if t == "out" and v]
    assert [(p.event_id, p.history_length) for p in preds] == [
        ("u1-0", 1),
        ("u1-1", 2),
        ("u1-2", 3),
        ("u1-3", 4),
        ("u2-0", 1),
    ]
    # the tiny model learned i(N) -> i(N+1): each prediction follows that event's own state
    assert [p.items[0].item_id for p in preds] == ["i2", "i3", "i4", "i5", "i31"]
    assert all(abs(sum(p.next_event_type.values()) - 1) < 1e-6 for p in preds)
    assert "[PAD]" not in preds[0].next_event_type
    dlq = [(k, v, dict(h or [])) for t, k, v, h in topic.records if t == "dlq"]
    assert dlq == [(b"u2", b"junk", dlq[0][2])]
    assert dlq[0][2]["error_type"] == b"not_json" and dlq[0][2]["source_offset"] == b"5"


async def test_acks_come_after_every_send_of_the_batch(predictor: Predictor) -> None:
    topic, acks = Topic(), []
    pipeline = make(predictor, topic, acks, batch_size=3, batch_wait_s=0.0)
    records = [rec(f"e{n}", f"u{n % 2}", "i1", T0 + n, n) for n in range(7)]
    await run_records(pipeline, records)
    assert acks == list(range(7))
    first_ack = topic.log.index("ack 0")
    assert topic.log[:first_ack].count("sent out") >= 1
    for n in range(7):  # no ack before its own prediction was sent
        assert (
            topic.log.index(f"ack {n}") > [i for i, x in enumerate(topic.log) if x == "sent out"][n]
        )


async def test_inference_failure_dead_letters_only_the_poisoned_event(
    tiny_bundle: Path,
) -> None:
    topic, acks = Topic(), []
    pipeline = make(PoisonPredictor(tiny_bundle, ["CPUExecutionProvider"]), topic, acks)
    records = [
        rec("a", "u1", "i1", T0, 0),
        rec("b", "u2", "poison", T0, 1),
        rec("c", "u3", "i7", T0, 2),
    ]
    await run_records(pipeline, records)
    assert acks == [0, 1, 2]
    outs = [(t, k) for t, k, _, _ in topic.records]
    assert sorted(outs) == [("dlq", b"u2"), ("out", b"u1"), ("out", b"u3")]
    headers = dict(next(h for t, _, _, h in topic.records if t == "dlq") or [])
    assert headers["error_type"] == b"inference_failed"


async def test_failed_sends_are_retried(predictor: Predictor) -> None:
    topic, acks = Topic(fail_times=1), []
    pipeline = make(predictor, topic, acks)
    await run_records(pipeline, [rec("a", "u1", "i1", T0, 0)])
    assert acks == [0] and len(topic.records) == 1
    assert pipeline.stats.send_retries == 1


async def test_undeliverable_outputs_stop_the_pipeline_without_acks(
    predictor: Predictor, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("nextbehavior.stream.outbox.SEND_BACKOFF_S", 0.0)
    topic, acks = Topic(fail_times=99), []
    pipeline = make(predictor, topic, acks)
    runner = asyncio.create_task(pipeline.run())
    await pipeline.take(0, rec("a", "u1", "i1", T0, 0))
    with pytest.raises(SendFailedError):
        await asyncio.wait_for(runner, timeout=10)
    assert acks == []


async def test_duplicate_is_predicted_again_from_its_own_prefix(predictor: Predictor) -> None:
    topic, acks = Topic(), []
    pipeline = make(predictor, topic, acks)
    records = [rec(f"e{n}", "u1", f"i{n + 1}", T0 + n, n) for n in range(4)]
    records.append(rec("e1", "u1", "i2", T0 + 1, 4))
    await run_records(pipeline, records)
    preds = [parse_prediction(v) for _, _, v, _ in topic.records if v]
    first, again = preds[1], preds[4]
    assert again.event_id == first.event_id == "e1"
    assert again.history_length == first.history_length == 2
    assert [i.item_id for i in again.items] == [i.item_id for i in first.items]
    assert pipeline.stats.events == {"predicted": 4, "duplicate": 1}


async def test_dead_letter_too_large_to_forward_goes_without_its_value(
    predictor: Predictor,
) -> None:
    topic, acks = Topic(max_bytes=1000), []
    pipeline = make(predictor, topic, acks)
    await run_records(pipeline, [Record(b"u1", b"x" * 5000, "events", 0, 0)])
    assert acks == [0]
    [(name, key, value, headers)] = topic.records
    assert (name, key, value) == ("dlq", b"u1", None)
    got = dict(headers or [])
    assert got["error_type"] == b"too_large" and got["value_dropped"].startswith(b"5000 bytes")


async def test_explanations_name_history_events(predictor: Predictor) -> None:
    assert predictor.manifest.has_weights
    topic, acks = Topic(), []
    pipeline = make(predictor, topic, acks, explain=True)
    await run_records(pipeline, [rec(f"e{n}", "u1", f"i{n + 1}", T0 + n, n) for n in range(5)])
    last = parse_prediction(topic.records[-1][2] or b"")
    assert last.because is not None and 1 <= len(last.because) <= 3
    assert {r.item_id for r in last.because} <= {f"i{n + 1}" for n in range(5)}
    weights = [r.weight for r in last.because]
    assert weights == sorted(weights, reverse=True)
