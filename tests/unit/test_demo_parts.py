"""The demo's pure parts: the held-out user split, the prediction line, the summary table."""

from __future__ import annotations

from rich.console import Console

from nextbehavior.stream.demo import split_users
from nextbehavior.stream.demo_view import DemoView, summary_table
from nextbehavior.stream.events import Event, Prediction, ScoredItem


def test_split_users_holds_out_whole_users() -> None:
    events = [Event(f"e{n}", f"u{n % 10}", "i", "view", n) for n in range(100)]
    train, replay = split_users(events, 25, seed=1)
    held = {e.user_id for e in replay}
    assert len(replay) == 25 and held.isdisjoint(e.user_id for e in train)
    assert len(train) + 30 == 100  # three users of ten events held out, 25 of them replayed
    assert [e.timestamp for e in replay] == sorted(e.timestamp for e in replay)
    assert split_users(events, 25, seed=1) == (train, replay)  # seeded
    _, most = split_users(events, 10_000, seed=1)
    assert len({e.user_id for e in most}) == 5  # never more than half the users


def test_prediction_line_and_summary_table() -> None:
    console = Console(width=120, record=True)
    view = DemoView(console)
    view.events["e1"] = Event("e1", "u1", "i7", "cart", 1)
    line = view.describe(
        Prediction(
            "u1", "e1", 1, 2, "v", 3, [ScoredItem("i8", 0.9)], {"view": 0.3, "purchase": 0.7}
        )
    )
    assert line == "u1 after cart i7 (history 3) -> next items i8; next behavior purchase 70%"
    metrics = {"hit@10": 0.5, "ndcg@10": 0.25, "type_accuracy": 0.0}
    summary = {
        "counts": {"events_sent": 10, "bad_events_sent": 5, "predictions_received": 10,
                   "dead_letters": 5, "users": 2},
        "online": {"scored": 8, "total": metrics},
        "offline": {"pairs": 8, **metrics},
        "model": {"test_ndcg@10": 0.4},
        "dead_letter_types": {"not_json": 2, "missing_field": 3},
        "seconds": {"total": 12.0},
    }  # fmt: skip
    console.print(summary_table(summary))
    text = console.export_text()
    assert "online hit@10" in text and "0.5000  (offline 0.5000)" in text
    assert "0.0000  (offline 0.0000)" in text  # a zero is still shown next to its twin
    assert "not_json 2, missing_field 3" in text and "12.0s" in text
