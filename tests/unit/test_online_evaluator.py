"""Online evaluation: hand-checkable joins of predictions with each user's next event."""

from __future__ import annotations

import math

import pytest

from nextbehavior.stream.events import Event, Prediction, ScoredItem
from nextbehavior.stream.online_eval import OnlineEvaluator, score, summarize, top_type


def pred(user: str, event_id: str, items: list[str], types: dict[str, float]) -> Prediction:
    return Prediction(
        user,
        event_id,
        0,
        0,
        "v1",
        1,
        [ScoredItem(i, 1.0 / (n + 1)) for n, i in enumerate(items)],
        types,
    )


def test_score_ranks_and_ndcg() -> None:
    s = score(["a", "b", "c"], "cart", "b", "cart")
    assert s.rank == 1 and s.type_correct is True
    assert s.hit(1) == 0.0 and s.hit(2) == 1.0
    assert s.ndcg(5) == pytest.approx(1 / math.log2(3))
    miss = score(["a"], "view", "z", "cart")
    assert miss.rank is None and miss.hit(20) == 0.0 and miss.ndcg(20) == 0.0
    assert miss.type_correct is False
    assert score([], None, "z", "cart").type_correct is None


def test_top_type_picks_the_most_probable() -> None:
    assert top_type({"view": 0.2, "cart": 0.7, "purchase": 0.1}) == "cart"
    assert top_type({}) is None


def test_summarize_hand_case() -> None:
    ranks = [score([str(i) for i in range(20)], "v", str(r), "v") for r in (0, 7, 15)]
    ranks.append(score(["x"], "c", "y", "v"))  # a miss, wrong type
    m = summarize(ranks)
    assert m["hit@5"] == 0.25 and m["hit@10"] == 0.5 and m["hit@20"] == 0.75
    assert m["ndcg@10"] == pytest.approx((1.0 + 1 / math.log2(9)) / 4)
    assert m["type_accuracy"] == 0.75


def test_prediction_then_next_event() -> None:
    ev = OnlineEvaluator()
    assert ev.add_event(Event("e1", "u", "i1", "view", 100)) is None
    assert ev.add_prediction(pred("u", "e1", ["i2", "i3"], {"view": 0.4, "cart": 0.6})) is None
    s = ev.add_event(Event("e2", "u", "i3", "cart", 200))  # truth for e1's prediction
    assert s is not None and s.rank == 1 and s.type_correct is True
    assert ev.scored == 1
    assert ev.total()["hit@5"] == 1.0
    assert ev.total()["ndcg@5"] == pytest.approx(1 / math.log2(3))
    assert ev.summary()["waiting_for_next_event"] == 0


def test_next_event_before_prediction() -> None:
    ev = OnlineEvaluator()
    ev.add_event(Event("e1", "u", "i1", "view", 100))
    ev.add_event(Event("e2", "u", "i9", "view", 200))  # arrives before e1's prediction
    s = ev.add_prediction(pred("u", "e1", ["i9"], {"view": 1.0}))
    assert s is not None and s.rank == 0
    # the prediction for the user's newest event waits for a next event that never comes
    assert ev.add_prediction(pred("u", "e2", ["i1"], {"view": 1.0})) is None
    assert ev.summary()["waiting_for_next_event"] == 1 and ev.scored == 1


def test_users_are_joined_separately() -> None:
    ev = OnlineEvaluator()
    ev.add_event(Event("a1", "a", "x", "view", 1))
    ev.add_event(Event("b1", "b", "y", "view", 2))
    ev.add_prediction(pred("a", "a1", ["q"], {"view": 1.0}))
    ev.add_prediction(pred("b", "b1", ["y2"], {"view": 1.0}))
    sb = ev.add_event(Event("b2", "b", "y2", "view", 3))
    sa = ev.add_event(Event("a2", "a", "z", "cart", 4))
    assert sb is not None and sb.rank == 0
    assert sa is not None and sa.rank is None and sa.type_correct is False
    assert ev.total()["hit@5"] == 0.5 and ev.total()["type_accuracy"] == 0.5


def test_duplicates_and_late_events_do_not_break_the_chain() -> None:
    ev = OnlineEvaluator()
    ev.add_event(Event("e1", "u", "i1", "view", 100))
    ev.add_prediction(pred("u", "e1", ["i2"], {"view": 1.0}))
    assert ev.add_event(Event("e1", "u", "i1", "view", 100)) is None  # replayed again
    assert ev.add_event(Event("e0", "u", "i0", "view", 50)) is None  # late: older than newest
    s = ev.add_event(Event("e2", "u", "i2", "view", 100))  # same timestamp, new id: next
    assert s is not None and s.rank == 0
    assert ev.add_prediction(pred("u", "e1", ["i2"], {"view": 1.0})) is None  # at-least-once
    summary = ev.summary()
    assert summary["duplicate_events"] == 1 and summary["late_events"] == 1
    assert summary["duplicate_predictions"] == 1 and ev.scored == 1


def test_window_covers_recent_predictions_only() -> None:
    ev = OnlineEvaluator(window=2)
    ev.add_event(Event("e0", "u", "i0", "view", 0))
    for n in range(1, 5):
        ev.add_prediction(pred("u", f"e{n - 1}", [f"i{n}" if n > 2 else "no"], {"view": 1.0}))
        ev.add_event(Event(f"e{n}", "u", f"i{n}", "view", n))
    assert ev.scored == 4
    assert ev.total()["hit@5"] == 0.5
    assert ev.windowed()["hit@5"] == 1.0
    assert ev.summary()["window_size"] == 2


def test_waiting_maps_are_bounded() -> None:
    ev = OnlineEvaluator(max_waiting=3)
    for n in range(10):
        ev.add_event(Event(f"e{n}", f"u{n}", "i", "view", 0))
        ev.add_prediction(pred(f"u{n}", f"e{n}", ["i"], {"view": 1.0}))
    assert ev.summary()["waiting_for_next_event"] == 3 and ev.expired == 7
