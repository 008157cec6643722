"""Every log format on tiny files written here, including malformed rows counted by reason."""

from __future__ import annotations

import gzip
from pathlib import Path

import orjson
import pytest

from nextbehavior.model.loaders import iter_events, load_events, resolve_format
from nextbehavior.model.table import LoadReport


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def rows(path: Path, fmt: str = "auto") -> list[tuple[str, str, str, int]]:
    t = load_events(path, fmt, progress=False)
    users, items, types = t.users, t.items, t.event_types
    return [
        (users[t.user[i]], items[t.item[i]], types[t.event_type[i]], int(t.timestamp[i]))
        for i in range(len(t))
    ]


def test_recbole_inter_seconds_and_rejects(tmp_path: Path) -> None:
    path = write(
        tmp_path / "tiny.inter",
        "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
        "1\t10\t3\t881250949\n"
        "1\t11\t\t881250950\n"  # missing rating: not used, row kept
        "2\t\t4\t881250951\n"  # missing item
        "2\t12\t4\tyesterday\n"  # bad timestamp
        "2\t12\t4\n"  # too few columns
        "\n"  # blank
        "3\t13\t5\t-5\n",  # before 1970
    )
    t = load_events(path, progress=False)
    assert t.report.format == "recbole"
    assert rows(path) == [
        ("1", "10", "interaction", 881250949000),
        ("1", "11", "interaction", 881250950000),
    ]
    assert dict(t.report.rejected) == {
        "missing_item_id": 1,
        "bad_timestamp": 1,
        "wrong_column_count": 1,
        "blank_line": 1,
        "timestamp_out_of_range": 1,
    }
    assert t.report.first_line["missing_item_id"] == 4
    assert t.report.lines_read == 7 and t.report.rows_loaded == 2
    assert t.event_types == ["interaction"]


def test_recbole_columns_by_name_and_ms_timestamps(tmp_path: Path) -> None:
    path = write(
        tmp_path / "x.inter",
        "timestamp:float\titem_id:token\tuser_id:token\tevent_type:token\n"
        "1700000000000\ta\tu\tview\n"
        "1700000001000\tb\tu\tpurchase\n",
    )
    assert rows(path) == [("u", "a", "view", 1700000000000), ("u", "b", "purchase", 1700000001000)]


def test_movielens_variants(tmp_path: Path) -> None:
    udata = write(tmp_path / "u.data", "196\t242\t3\t881250949\n186\t302\t3\t891717742\n")
    dat = write(tmp_path / "ratings.dat", "1::1193::5::978300760\n1::661::x::978302109\n")
    csv = write(
        tmp_path / "ratings.csv",
        "userId,movieId,rating,timestamp\n1,31,2.5,1260759144\n1,,3,1260759179\n",
    )
    assert rows(udata) == [
        ("196", "242", "interaction", 881250949000),
        ("186", "302", "interaction", 891717742000),
    ]
    assert rows(dat)[1] == ("1", "661", "interaction", 978302109000)  # rating unused
    t = load_events(csv, progress=False)
    assert t.report.format == "movielens" and len(t) == 1
    assert dict(t.report.rejected) == {"missing_item_id": 1}


def test_retailrocket_maps_events(tmp_path: Path) -> None:
    path = write(
        tmp_path / "events.csv",
        "timestamp,visitorid,event,itemid,transactionid\n"
        "1433221332117,257597,view,355908,\n"
        "1433221332118,257597,addtocart,355908,\n"
        "1433221332119,257597,transaction,355908,4000\n"
        "1433221332120,257597,,355908,\n"
        "1433221332121,257597,wishlist,355908,\n",
    )
    t = load_events(path, progress=False)
    assert [r[2] for r in rows(path)] == ["view", "cart", "purchase", "wishlist"]
    assert dict(t.report.rejected) == {"missing_event_type": 1}
    assert int(t.timestamp[0]) == 1433221332117


def test_taobao_maps_behaviors(tmp_path: Path) -> None:
    path = write(
        tmp_path / "UserBehavior.csv",
        "1,2268318,2520377,pv,1511544070\n1,2333346,2520771,buy,1511561733\n"
        "1,2576651,149192,fav,1511572885\n2,3,4,cart\n",
    )
    t = load_events(path, progress=False)
    assert [r[2] for r in rows(path)] == ["view", "purchase", "favorite"]
    assert int(t.timestamp[0]) == 1511544070000
    assert dict(t.report.rejected) == {"wrong_column_count": 1}


def test_jsonl_validates_with_the_stream_contract(tmp_path: Path) -> None:
    good = {"event_id": "e1", "user_id": "u", "item_id": "a", "event_type": "view", "timestamp": 5}
    lines = [
        orjson.dumps(good),
        orjson.dumps({**good, "event_id": "e2", "session_id": "s", "context": {"p": 1}}),
        orjson.dumps(good),  # repeated id
        orjson.dumps({k: v for k, v in good.items() if k != "user_id"} | {"event_id": "e3"}),
        orjson.dumps({**good, "event_id": "e4", "timestamp": "5"}),
        b"{not json",
        b"",
    ]
    path = tmp_path / "log.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    t = load_events(path, progress=False)
    assert t.event_id == ["e1", "e2"]
    assert dict(t.report.rejected) == {
        "duplicate_event_id": 1,
        "missing_field:user_id": 1,
        "wrong_type:timestamp": 1,
        "not_json": 1,
        "blank_line": 1,
    }
    events = list(iter_events(path, progress=False))
    assert [e.event_id for e in events] == ["e1", "e2"]
    assert events[1].session_id == "s" and events[1].context == {"p": 1}
    assert t.event(1) == events[1]


def test_iter_events_time_order_and_stable_ids(tmp_path: Path) -> None:
    path = write(tmp_path / "u.data", "1\t10\t3\t30\n2\t20\t3\t10\n1\t11\t3\t10\n1\t12\t3\t10\n")
    by_file = list(iter_events(path, progress=False))
    report = LoadReport()
    by_time = list(iter_events(path, order="time", report=report, progress=False))
    assert [e.item_id for e in by_time] == ["20", "11", "12", "10"]  # ties keep file order
    assert {e.event_id for e in by_file} == {e.event_id for e in by_time}
    assert len({e.event_id for e in by_file}) == 4
    assert [e.event_id for e in iter_events(path, progress=False)] == [e.event_id for e in by_file]
    assert report.rows_loaded == 4


def test_auto_detection_and_gzip(tmp_path: Path) -> None:
    events = tmp_path / "clicks.csv.gz"
    with gzip.open(events, "wt") as fh:
        fh.write("timestamp,visitorid,event,itemid,transactionid\n1433221332117,1,view,2,\n")
    assert resolve_format(events) == "retailrocket"
    assert rows(events) == [("1", "2", "view", 1433221332117)]
    jsonl = write(tmp_path / "data.txt", '{"event_id": "e"}\n')
    assert resolve_format(jsonl) == "jsonl"
    taobao = write(tmp_path / "b.csv", "1,2,3,pv,1511544070\n")
    assert resolve_format(taobao) == "taobao"
    with pytest.raises(ValueError, match="--format"):
        resolve_format(write(tmp_path / "what.bin", "hello world\n"))
    with pytest.raises(ValueError, match="unknown format"):
        load_events(taobao, "parquet")


def test_nothing_usable_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path / "u.data", "1\t\t3\t30\n")
    with pytest.raises(ValueError, match="no usable rows"):
        load_events(path, progress=False)


def test_data_and_evaluation_modules_do_not_need_torch() -> None:
    """Replay and `evaluate --bundle` import these; they must run without torch installed."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "for m in ('loaders', 'sequences', 'evaluate', 'baselines', 'metrics', 'synthetic'):\n"
        "    __import__(f'nextbehavior.model.{m}')\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
