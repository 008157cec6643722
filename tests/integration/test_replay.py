"""Replay, tail and monitor against the real embedded broker (no worker needed)."""

from __future__ import annotations

import asyncio
import random
import subprocess
import sys
import uuid
from collections import defaultdict
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from replay_helpers import env, read_all, topic_settings
from typer.testing import CliRunner

from nextbehavior.stream.broker import EmbeddedBroker
from nextbehavior.stream.cli import app
from nextbehavior.stream.privacy import pseudonymizer
from nextbehavior.stream.settings import Settings

pytestmark = pytest.mark.integration


def write_movielens(path: Path, n_rows: int, seed: int = 0) -> list[tuple[str, str, int, int]]:
    """An ML-100K ``u.data``-format log (tab-separated user, item, rating, unix seconds), rows
    in shuffled (not time) order, with timestamp ties inside and across users."""
    rng = random.Random(seed)
    rows = []
    for user in range(1, 81):
        t = 880_000_000 + rng.randrange(0, 3600)
        for _ in range(n_rows // 80 + 1):
            t += rng.choice((0, 1, 7, 60))  # 0: ties within a user
            rows.append((str(user), str(rng.randrange(1, 300)), rng.randrange(1, 6), t))
    rows = rows[:n_rows]
    rng.shuffle(rows)
    path.write_text("".join(f"{u}\t{i}\t{r}\t{t}\n" for u, i, r, t in rows))
    return [(u, i, r, t) for u, i, r, t in rows]


def test_replay_3000_events_complete_keyed_and_in_per_user_order(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    data = tmp_path / "u.data"
    rows = write_movielens(data, 3400)
    with data.open("a") as fh:  # two unusable rows, reported by reason
        fh.write("7\t12\n")
        fh.write("7\t12\t3\tnoon\n")
    settings = topic_settings(broker)
    runner = CliRunner()
    result = runner.invoke(
        app, ["replay", "--data", str(data), "--format", "movielens", "--limit", "3000", "--json"],
        env=env(settings),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = orjson.loads(result.stdout.strip().splitlines()[-1])
    assert summary["sent"] == 3000 and summary["failed"] == 0 and summary["over_limit"] == 400
    assert summary["rejected"] == {"bad_timestamp": 1, "wrong_column_count": 1}

    records = read_all(settings, settings.input_topic)
    assert len(records) == 3000
    events = [orjson.loads(r.value or b"") for r in records]
    assert len({e["event_id"] for e in events}) == 3000
    # keyed by user: the key is the user id, and each user lives in exactly one partition
    partitions: dict[str, set[int]] = defaultdict(set)
    for record, event in zip(records, events, strict=True):
        assert record.key == event["user_id"].encode()
        partitions[event["user_id"]].add(record.partition)
    assert all(len(p) == 1 for p in partitions.values())
    assert len({p for ps in partitions.values() for p in ps}) > 1  # users spread over partitions
    # per-user order: exactly the first 3000 rows in time order (ties in file order), per user
    expected = sorted(
        ((t * 1000, n, u, i) for n, (u, i, _, t) in enumerate(rows)), key=lambda r: r[:2]
    )[:3000]
    want: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for ts, _, user, item in expected:
        want[user].append((item, ts))
    got: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for event in events:  # a partition's records come in offset order
        got[event["user_id"]].append((event["item_id"], event["timestamp"]))
    assert got == want

    # a repeated replay sends the very same event ids (the worker drops the repeats)
    again = runner.invoke(
        app, ["replay", "--data", str(data), "--limit", "3000", "--json"], env=env(settings)
    )
    assert again.exit_code == 0, again.output
    records = read_all(settings, settings.input_topic)
    assert len(records) == 6000
    ids = [orjson.loads(r.value or b"")["event_id"] for r in records]
    assert set(ids[:3000]) | set(ids[3000:]) == {e["event_id"] for e in events}


def test_replay_paces_by_original_time(broker: EmbeddedBroker, tmp_path: Path) -> None:
    data = tmp_path / "events.jsonl"
    lines = [
        {"event_id": f"e{n}", "user_id": "u", "item_id": "i", "event_type": "view",
         "timestamp": 1_000_000 + n * 1000}
        for n in range(5)
    ]  # fmt: skip
    data.write_bytes(b"\n".join(orjson.dumps(x) for x in lines) + b"\n")
    settings = topic_settings(broker)
    result = CliRunner().invoke(
        app, ["replay", "--data", str(data), "--speed", "8", "--json"], env=env(settings)
    )
    assert result.exit_code == 0, result.output
    summary = orjson.loads(result.stdout.strip().splitlines()[-1])
    assert summary["sent"] == 5
    assert 0.45 <= summary["wall_s"] < 3.0  # 4 s of history at 8x: 0.5 s


def test_replay_since_until_and_bad_options(broker: EmbeddedBroker, tmp_path: Path) -> None:
    data = tmp_path / "events.jsonl"
    lines = [
        {"event_id": f"e{n}", "user_id": f"u{n % 3}", "item_id": "i", "event_type": "view",
         "timestamp": 883_612_800_000 + n * 3_600_000}  # 1998-01-01 + n hours
        for n in range(48)
    ]  # fmt: skip
    data.write_bytes(b"\n".join(orjson.dumps(x) for x in lines) + b"\n")
    settings = topic_settings(broker)
    runner = CliRunner()
    args = ["replay", "--data", str(data), "--json", "--since", "1998-01-01T12:00:00Z",
            "--until", str(883_612_800_000 + 30 * 3_600_000)]  # fmt: skip
    result = runner.invoke(app, args, env=env(settings))
    assert result.exit_code == 0, result.output
    summary = orjson.loads(result.stdout.strip().splitlines()[-1])
    assert summary["sent"] == 18 and summary["outside_range"] == 30
    assert summary["first_timestamp"] == "1998-01-01T12:00:00Z"
    for bad, why in ((["--speed", "0"], "speed"), (["--since", "soon"], "ISO-8601")):
        failed = runner.invoke(app, ["replay", "--data", str(data), *bad], env=env(settings))
        assert failed.exit_code == 1 and why in failed.stderr


def test_replay_missing_topic_is_a_clear_error(broker: EmbeddedBroker, tmp_path: Path) -> None:
    data = tmp_path / "u.data"
    write_movielens(data, 10)
    result = CliRunner().invoke(
        app, ["replay", "--data", str(data), "--topic", f"nope-{uuid.uuid4().hex[:6]}"],
        env={"NBP_BROKER": broker.url},
    )  # fmt: skip
    assert result.exit_code == 1
    assert "does not exist" in result.stderr and "topics create" in result.stderr


async def _produce(
    settings: Settings, topic: str, records: list[tuple[bytes, bytes, list[tuple[str, bytes]]]]
) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap)
    await producer.start()
    try:
        for key, value, headers in records:
            await producer.send_and_wait(topic, value, key=key, headers=headers)
    finally:
        await producer.stop()


def prediction(user: str, event_id: str, items: list[str], types: dict[str, float]) -> bytes:
    return orjson.dumps(
        {
            "user_id": user, "event_id": event_id, "event_timestamp": 1, "predicted_at": 2,
            "model_version": "v-test", "history_length": 1,
            "items": [{"item_id": i, "score": 1.0 - n / 10} for n, i in enumerate(items)],
            "next_event_type": types,
        }
    )  # fmt: skip


def event(event_id: str, user: str, item: str, ts: int, kind: str = "view") -> bytes:
    return orjson.dumps(
        {
            "event_id": event_id,
            "user_id": user,
            "item_id": item,
            "event_type": kind,
            "timestamp": ts,
        }
    )


def test_tail_prints_predictions_and_dead_letters(broker: EmbeddedBroker) -> None:
    settings = topic_settings(broker)
    preds = [prediction(f"u{n}", f"e{n}", ["a", "b"], {"view": 1.0}) for n in range(5)]
    asyncio.run(_produce(settings, settings.output_topic, [(b"u", p, []) for p in preds]))
    headers = [("error", b"value is not valid JSON"), ("error_type", b"not_json"),
               ("source_topic", settings.input_topic.encode()), ("source_partition", b"0"),
               ("source_offset", b"7")]  # fmt: skip
    asyncio.run(_produce(settings, settings.dlq_topic, [(b"k1", b"{oops", headers)]))
    asyncio.run(_produce(settings, settings.dlq_topic, [(b"k2", b"\xff\xfe", headers)]))
    runner = CliRunner()

    out = runner.invoke(app, ["tail", "--json"], env=env(settings))
    assert out.exit_code == 0, out.output
    lines = [orjson.loads(x) for x in out.stdout.splitlines()]
    assert sorted(x["event_id"] for x in lines) == [f"e{n}" for n in range(5)]

    limited = runner.invoke(app, ["tail", "--json", "--limit", "2"], env=env(settings))
    assert len(limited.stdout.splitlines()) == 2

    dead = runner.invoke(app, ["tail", "--dlq", "--json"], env=env(settings))
    assert dead.exit_code == 0, dead.output
    letters = sorted((orjson.loads(x) for x in dead.stdout.splitlines()), key=lambda x: x["key"])
    assert letters[0]["value"] == "{oops" and letters[0]["headers"]["error_type"] == "not_json"
    assert letters[0]["headers"]["source_offset"] == "7"
    assert letters[1]["value_base64"] == "//4="

    table = runner.invoke(app, ["tail", "--table"], env=env(settings))
    assert table.exit_code == 0 and "e3" in table.stdout and "a(1.00)" in table.stdout

    follow = runner.invoke(app, ["tail", "--json", "-f", "--idle", "0.5"], env=env(settings))
    assert follow.exit_code == 0 and len(follow.stdout.splitlines()) == 5


@pytest.mark.parametrize("key", [None, "operator-secret"])
def test_monitor_scores_predictions_against_next_events(
    broker: EmbeddedBroker, key: str | None
) -> None:
    """With the worker's pseudonymization key, raw events meet pseudonymous predictions."""
    settings = topic_settings(broker)
    alias = pseudonymizer(key.encode()) if key else (lambda user: user)
    # user a: e1 -> prediction [x, y] -> next event y (rank 1); user b: miss; c: no next event
    events = [
        (b"a", event("e1", "a", "p", 10)), (b"b", event("f1", "b", "p", 11)),
        (b"c", event("g1", "c", "p", 12)), (b"a", event("e2", "a", "y", 20, "cart")),
        (b"b", event("f2", "b", "z", 21)), (b"a", b"not json"),
    ]  # fmt: skip
    asyncio.run(_produce(settings, settings.input_topic, [(k, v, []) for k, v in events]))
    preds = [
        (alias(u).encode(), prediction(alias(u), eid, items, types))
        for u, eid, items, types in [
            ("a", "e1", ["x", "y"], {"view": 0.3, "cart": 0.7}),
            ("b", "f1", ["q"], {"view": 0.9, "cart": 0.1}),
            ("c", "g1", ["p"], {"view": 1.0}),
        ]
    ]
    asyncio.run(_produce(settings, settings.output_topic, [(k, v, []) for k, v in preds]))
    asyncio.run(
        _produce(settings, settings.dlq_topic, [(b"a", b"not json", [("error_type", b"not_json")])])
    )
    environ = {**env(settings), **({"NBP_PSEUDONYMIZE_KEY": key} if key else {})}
    result = CliRunner().invoke(app, ["monitor", "--json", "--until-idle", "1"], env=environ)
    assert result.exit_code == 0, result.output
    summary = orjson.loads(result.stdout.strip().splitlines()[-1])
    assert summary["events"] == 5 and summary["invalid_events"] == 1
    assert summary["predictions"] == 3 and summary["dead_letters"] == 1
    assert summary["dead_letter_types"] == {"not_json": 1}
    online = summary["online"]
    assert online["scored"] == 2 and online["waiting_for_next_event"] == 1
    assert online["total"]["hit@5"] == 0.5
    assert online["total"]["ndcg@5"] == pytest.approx(0.5 * 1 / 1.5849625, rel=1e-5)
    assert online["total"]["type_accuracy"] == 1.0  # a: cart (0.7) -> cart; b: view -> view


def test_tail_on_a_missing_topic_fails_clearly(broker: EmbeddedBroker) -> None:
    result = CliRunner().invoke(
        app, ["tail", "--topic", f"nope-{uuid.uuid4().hex[:6]}"], env={"NBP_BROKER": broker.url}
    )
    assert result.exit_code == 1 and "does not exist" in result.stderr


def test_example_ranker_consumes_predictions(broker: EmbeddedBroker) -> None:
    """examples/ranker.py (the README's downstream consumer) reads predictions as documented."""
    settings = topic_settings(broker)
    records = [
        (b"u1", prediction("u1", "e1", ["a", "b"], {"view": 0.2, "cart": 0.8}), []),
        (b"u2", prediction("u2", "f1", ["c"], {"view": 0.9, "cart": 0.1}), []),
    ]
    asyncio.run(_produce(settings, settings.output_topic, records))
    script = Path(__file__).parents[2] / "examples" / "ranker.py"
    group = f"ranker-{uuid.uuid4().hex[:6]}"
    done = subprocess.run(
        [sys.executable, str(script), "--bootstrap", settings.bootstrap,
         "--topic", settings.output_topic, "--group", group, "--max", "2"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert sorted(done.stdout.splitlines()) == [
        "u1: boost ['a', 'b']; next cart (80%)",
        "u2: boost ['c']; next view (90%)",
    ]
