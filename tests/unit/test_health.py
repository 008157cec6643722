"""Liveness and readiness verdicts (stream/health.py) from signals, on a fake clock."""

from __future__ import annotations

from nextbehavior.stream.health import GroupState, Health

READY_GROUP = GroupState(joined=True, rebalancing=False, recovering=False, assigned=2)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make() -> tuple[Health, Clock]:
    clock = Clock()
    return Health(stall_s=60, clock=clock), clock


def test_ready_needs_model_group_recovery_and_broker() -> None:
    health, _ = make()
    verdict = health.readiness(READY_GROUP)
    assert not verdict.ok and verdict.status == 503
    assert verdict.reason == "no model loaded"
    health.model_loaded("v1")
    verdict = health.readiness(READY_GROUP)
    assert verdict.ok and verdict.status == 200 and verdict.reason == ""
    assert verdict.body() == {
        "ok": True,
        "reason": "",
        "model_version": "v1",
        "assigned": 2,
        "rebalancing": False,
        "recovering": False,
        "broker": "ok",
        "outputs": "ok",
    }
    cases = {
        GroupState(False, False, False, 0): "consumer group not joined yet",
        GroupState(True, True, False, 2): "rebalancing",
        GroupState(True, False, True, 2): "table recovery in progress",
    }
    for group, reason in cases.items():
        assert health.readiness(group).reason == reason
    # More workers than partitions: joined with nothing assigned is ready (a standby).
    assert health.readiness(GroupState(True, False, False, 0)).ok


def test_broker_down_fails_readiness_at_once_and_liveness_after_stall() -> None:
    health, clock = make()
    health.model_loaded("v1")
    health.report_broker(False, "connection refused", source="probe")
    ready = health.readiness(READY_GROUP)
    assert not ready.ok and ready.reason == "broker unreachable: connection refused"
    assert ready.body()["broker"] == "down"
    assert health.liveness().ok
    clock.now += 61
    live = health.liveness()
    assert not live.ok and live.status == 503
    assert live.reason == "broker unreachable for 61s: connection refused"
    health.report_broker(True, source="probe")
    assert health.liveness().ok and health.readiness(READY_GROUP).ok


def test_broker_is_ok_only_when_every_source_says_so() -> None:
    health, clock = make()
    health.model_loaded("v1")
    health.report_broker(False, "send timed out", source="pipeline")
    clock.now += 30
    health.report_broker(False, "metadata failed", source="probe")
    health.report_broker(False, "send timed out again", source="pipeline")  # keeps its start
    problem = health.broker_problem()
    assert problem == ("send timed out again", 30.0)
    health.report_broker(True, source="probe")
    assert not health.readiness(READY_GROUP).ok
    health.report_broker(True, source="pipeline")
    assert health.readiness(READY_GROUP).ok


def test_stalled_loop_fails_liveness() -> None:
    health, clock = make()
    assert health.liveness().ok  # no beat yet: starting
    health.beat()
    clock.now += 30
    assert health.liveness().ok
    clock.now += 31
    verdict = health.liveness()
    assert not verdict.ok and verdict.reason == "event loop stalled for 61s"
    health.beat()
    assert health.liveness().ok


def test_stuck_partition_with_input_fails_liveness() -> None:
    health, clock = make()
    tp = ("events", 1)
    health.assigned([tp, ("events", 0)])
    health.offsets(tp, position=10, highwater=10)
    clock.now += 600  # idle for long: caught up is fine
    health.offsets(tp, highwater=10)
    assert health.liveness().ok and health.lag() == {tp: 0}
    health.offsets(tp, highwater=15)  # input arrives
    clock.now += 30
    health.offsets(tp, position=12)  # progress
    clock.now += 45
    assert health.liveness().ok  # 45 s since the last progress
    clock.now += 20
    verdict = health.liveness()
    assert not verdict.ok
    assert verdict.reason == "events[1] stuck for 65s with 3 records waiting"
    assert verdict.checks["lag"] == 3
    health.offsets(tp, position=15)
    assert health.liveness().ok and health.lag() == {tp: 0}


def test_positions_only_move_forward_and_revoked_partitions_are_forgotten() -> None:
    health, _ = make()
    tp = ("events", 0)
    health.offsets(tp, position=20, highwater=25)
    health.offsets(tp, position=18)  # an older committed offset read late
    assert health.lag() == {tp: 5}
    health.assigned([("events", 1)])
    assert health.lag() == {}


def test_ready_waits_until_the_producer_knows_every_output_topic() -> None:
    health, _ = make()
    health.model_loaded("v1")
    health.outputs_pending(["preds", "dlq", "app-sequences-changelog"])
    verdict = health.readiness(READY_GROUP)
    assert not verdict.ok and verdict.body()["outputs"] == "pending"
    assert verdict.reason == "no metadata yet for app-sequences-changelog, dlq, preds"
    health.output_known("preds")
    health.output_known("app-sequences-changelog")
    assert health.readiness(READY_GROUP).reason == "no metadata yet for dlq"
    health.output_known("dlq")
    assert health.readiness(READY_GROUP).ok
