"""``operation_duration_spread``: many operations that end over a spell, not all at once (for benchmarks)."""

from __future__ import annotations

from airflow_provider_toloka.emulator.state import EmulatorState


def archive_many(spread: float, count: int = 200) -> tuple[EmulatorState, list[float]]:
    now = [1_000_000.0]
    state = EmulatorState(operation_duration=60, clock=lambda: now[0])
    state.operation_duration_spread = spread
    for pool_id in range(count):
        state.add_pool(str(pool_id), project_id="1")
        state.archive("pool", str(pool_id))
    ends = []
    for second in range(0, 100):
        now[0] = 1_000_000.0 + second
        done = sum(op["status"] == "SUCCESS" for op in state.list_operations()[0])
        ends.extend([second] * (done - len(ends)))
    return state, ends


def test_operations_end_spread_over_the_given_seconds():
    _, ends = archive_many(spread=30)
    assert len(ends) == 200
    assert min(ends) >= 60
    assert max(ends) <= 91
    assert len(set(ends)) > 10  # not all together


def test_without_a_spread_every_operation_lasts_the_same():
    _, ends = archive_many(spread=0)
    assert set(ends) == {60}
