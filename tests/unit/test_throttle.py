"""``SharedThrottle``: when a cascade's workers may send, on a fake clock (one thread at a time)."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from airflow_provider_toloka import throttle as throttle_module
from airflow_provider_toloka.throttle import AsyncPacer, SharedThrottle


class FakeClock:
    """Stands in for the ``time`` module: ``sleep`` moves the clock instead of waiting."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept = 0.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        self.slept += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(throttle_module, "time", fake)
    return fake


def send(throttle: SharedThrottle, clock: FakeClock, count: int, *, status: int = 200) -> list[float]:
    """``count`` requests one after another, each answered at once; the times they went out."""
    sent = []
    for _ in range(count):
        throttle.before_request()
        sent.append(clock.now)
        throttle.after_response(status, None)
    return sent


def hit_the_limit(
    throttle: SharedThrottle, clock: FakeClock, accepted: int, *, retry_after: float = 1.0
) -> None:
    """``accepted`` answers spread over half a second, then a 429."""
    for _ in range(accepted):
        throttle.before_request()
        throttle.after_response(200, None)
        clock.now += 0.5 / accepted
    throttle.after_response(429, retry_after)


def test_no_pace_and_no_waiting_until_the_first_429(clock):
    throttle = SharedThrottle()

    send(throttle, clock, 500)

    assert clock.slept == 0
    assert throttle.rate is None


def test_a_429_pauses_everyone_for_retry_after(clock):
    throttle = SharedThrottle()
    hit_the_limit(throttle, clock, 100, retry_after=2.0)
    refused_at = clock.now

    throttle.before_request()

    assert clock.now == pytest.approx(refused_at + 2.0)
    assert throttle.refusals == 1


def test_after_the_pause_the_pace_is_just_under_what_toloka_accepted(clock):
    throttle = SharedThrottle()
    hit_the_limit(throttle, clock, 100)
    # Answers to requests sent before the 429 still arrive during the pause; they were accepted too.
    for _ in range(20):
        throttle.after_response(200, None)

    sent = send(throttle, clock, 300)

    assert throttle.rate == pytest.approx(120 * 0.95)
    gaps = [b - a for a, b in itertools.pairwise(sent)]
    assert min(gaps) == pytest.approx(1 / throttle.rate)
    assert (sent[-1] - sent[0]) / len(gaps) == pytest.approx(1 / throttle.rate, rel=0.02)


def test_threads_late_for_their_slots_do_not_send_more_than_a_seconds_worth(clock):
    throttle = SharedThrottle()
    hit_the_limit(throttle, clock, 100)
    send(throttle, clock, 1)  # the pause ends, the pace is set
    rate = throttle.rate
    assert rate is not None
    # Slots handed out, then the CPU wakes every thread late and at once: without the cap they would
    # all go in the same instant.
    late_slots = [clock.now + i / rate for i in range(int(rate))]
    throttle._next_slot = late_slots[-1] + 1 / rate
    clock.now = late_slots[-1] + 0.5
    sent = send(throttle, clock, 2 * int(rate))

    window = [t for t in sent if t < sent[0] + 1.0]
    assert len(window) <= rate


def test_a_429_met_at_a_trickle_pauses_but_sets_no_pace(clock):
    throttle = SharedThrottle(min_rate=10)
    hit_the_limit(throttle, clock, 3)

    send(throttle, clock, 50)

    assert throttle.rate is None
    assert clock.slept == pytest.approx(1.0, abs=0.01)  # the pause, nothing after it


def test_the_pace_only_goes_down(clock):
    throttle = SharedThrottle()
    hit_the_limit(throttle, clock, 100)
    send(throttle, clock, 1)
    first = throttle.rate
    # Someone else's burst on the account: a 429 although this task kept to its pace.
    throttle.after_response(429, 1.0)
    for _ in range(200):
        throttle.after_response(200, None)  # however many answers arrive during the pause

    send(throttle, clock, 1)

    assert first is not None
    assert throttle.rate is not None
    assert throttle.rate <= first


def test_one_burst_of_429s_is_one_pause(clock):
    throttle = SharedThrottle()
    for _ in range(100):
        throttle.after_response(200, None)
    for _ in range(30):
        throttle.after_response(429, 1.0)
        clock.now += 0.001
    refused_at = clock.now

    throttle.before_request()

    assert throttle.refusals == 30
    assert clock.now == pytest.approx(refused_at + 1.0 - 0.001)
    assert throttle.rate == pytest.approx(95.0)


def test_a_declared_rate_paces_from_the_first_request(clock):
    throttle = SharedThrottle()
    throttle.keep_to(100)

    sent = send(throttle, clock, 500)

    gaps = [b - a for a, b in itertools.pairwise(sent)]
    assert min(gaps) == pytest.approx(1.02 / 100)  # 2 % spare for the network's jitter
    # No second anywhere, the first included, holds more than the declared rate.
    assert max(sum(1 for t in sent if start <= t < start + 1.0) for start in sent) <= 100
    assert throttle.refusals == 0


def test_a_429_still_pauses_and_lowers_a_declared_pace(clock):
    throttle = SharedThrottle()
    throttle.keep_to(100)
    hit_the_limit(throttle, clock, 40, retry_after=2.0)  # someone else's traffic on the account
    refused_at = clock.now

    send(throttle, clock, 1)

    assert clock.now >= refused_at + 2.0
    assert throttle.rate == pytest.approx(40 * 0.95)


def test_a_declared_rate_never_raises_a_pace_learned_from_a_429(clock):
    throttle = SharedThrottle()
    hit_the_limit(throttle, clock, 40)
    send(throttle, clock, 1)

    throttle.keep_to(300)

    assert throttle.rate == pytest.approx(40 * 0.95)


class LoopClock:
    """An event loop's time for ``AsyncPacer``: ``sleep`` moves it and records the wait."""

    def __init__(self) -> None:
        self.now = 50.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_the_async_pacer_spaces_requests_and_waits_not_at_all_when_unset():
    loop_clock = LoopClock()
    unset = AsyncPacer(clock=loop_clock.monotonic, sleep=loop_clock.sleep)

    async def go(pacer: AsyncPacer, count: int) -> list[float]:
        sent = []
        for _ in range(count):
            await pacer.wait()
            sent.append(loop_clock.now)
        return sent

    asyncio.run(go(unset, 50))
    assert loop_clock.sleeps == []

    paced = AsyncPacer(10, clock=loop_clock.monotonic, sleep=loop_clock.sleep)
    sent = asyncio.run(go(paced, 50))
    gaps = [b - a for a, b in itertools.pairwise(sent)]
    assert gaps == pytest.approx([1.02 / 10] * 49)


def test_the_async_pacer_hands_concurrent_requests_successive_slots():
    waits: list[float] = []

    async def no_time_passes(seconds: float) -> None:  # every request asks at the same instant
        waits.append(seconds)

    pacer = AsyncPacer(100, clock=lambda: 50.0, sleep=no_time_passes)

    async def burst() -> None:
        await asyncio.gather(*(pacer.wait() for _ in range(300)))

    asyncio.run(burst())

    # The first goes at once, the others each one interval after the one before.
    assert waits == pytest.approx([i * 1.02 / 100 for i in range(1, 300)])


def test_a_request_sent_ahead_goes_before_the_queued_slots_and_moves_the_next_one_back(clock):
    throttle = SharedThrottle()
    throttle.keep_to(100)
    pace = throttle.rate
    assert pace is not None
    send(throttle, clock, 1)
    # Fifty threads took their slots (what a cascade's queued archives do), none has sent yet.
    queued_until = throttle._next_slot + 49 / pace
    throttle._next_slot = queued_until + 1 / pace

    with throttle.ahead():
        before = clock.now
        throttle.before_request()
        throttle.after_response(200, None)

    assert clock.now == before, "the read waited for the queue"
    # It paid for its turn: the next thread to ask comes one pace interval later than it would have.
    sent = send(throttle, clock, 1)
    assert sent[0] == pytest.approx(queued_until + 2 / pace)


def test_ahead_still_waits_out_a_pause(clock):
    throttle = SharedThrottle()
    throttle.keep_to(100)
    send(throttle, clock, 1)
    throttle.after_response(429, 2.0)
    paused_at = clock.now

    with throttle.ahead():
        sent = send(throttle, clock, 1)

    assert sent[0] >= paused_at + 2.0
