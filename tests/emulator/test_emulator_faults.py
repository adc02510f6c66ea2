"""Injected faults, rate limit, latency and the request log: the trouble a robust client must survive."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests


@pytest.fixture
def pool(toloka_emulator):
    toloka_emulator.add_pool("10", project_id="1")
    return "10"


@pytest.mark.parametrize(
    ("kind", "status", "code"),
    [
        ("429", 429, "TOO_MANY_REQUESTS"),
        ("500", 500, "INTERNAL_ERROR"),
        ("503", 503, "REMOTE_SERVICE_UNAVAILABLE"),
    ],
)
def test_json_faults_answer_with_tolokas_error_and_change_nothing(
    toloka_emulator, api, pool, kind, status, code
):
    toloka_emulator.inject_fault(kind, path="/archive")

    faulted = api.post(f"/pools/{pool}/archive")

    assert faulted.status_code == status
    assert faulted.json()["code"] == code
    assert faulted.json()["request_id"] == faulted.headers["X-Request-Id"]
    assert "Retry-After" not in faulted.headers
    assert toloka_emulator.operations() == []
    assert api.post(f"/pools/{pool}/archive").status_code == 202  # the fault was used up


@pytest.mark.parametrize(("kind", "status"), [("502", 502), ("504", 504)])
def test_gateway_faults_answer_with_a_proxy_html_page(toloka_emulator, api, pool, kind, status):
    toloka_emulator.inject_fault(kind)

    faulted = api.get(f"/pools/{pool}")

    assert faulted.status_code == status
    assert faulted.headers["Content-Type"].startswith("text/html")
    assert f"<h1>{status}" in faulted.text
    with pytest.raises(ValueError):  # noqa: PT011 (requests raises its own JSONDecodeError subclass)
        faulted.json()


def test_429_sends_retry_after_only_when_asked(toloka_emulator, api, pool):
    toloka_emulator.inject_fault("429", count=2, retry_after=3)

    first, second, third = (api.get(f"/pools/{pool}") for _ in range(3))

    assert [r.status_code for r in (first, second, third)] == [429, 429, 200]
    assert first.headers["Retry-After"] == "3"


def test_faults_match_path_and_method(toloka_emulator, api, pool):
    toloka_emulator.inject_fault("500", path="/archive", method="POST")

    assert api.get(f"/pools/{pool}").status_code == 200
    assert api.post(f"/pools/{pool}/close").status_code == 204
    assert api.post(f"/pools/{pool}/archive").status_code == 500


def test_drop_closes_the_connection_without_an_answer(toloka_emulator, api, pool):
    toloka_emulator.inject_fault("drop", path="/archive")

    with pytest.raises(requests.ConnectionError):
        api.post(f"/pools/{pool}/archive")

    assert toloka_emulator.operations() == []
    dropped = toloka_emulator.requests[-1]
    assert (dropped.method, dropped.path, dropped.status) == ("POST", "/api/v1/pools/10/archive", 0)
    assert api.post(f"/pools/{pool}/archive").status_code == 202  # the same session recovers


def test_drop_after_handling_loses_the_answer_but_keeps_the_effect(stopped_clock_emulator, stopped_api):
    # The emulator's clock is stopped: the archive still runs when the client asks again.
    toloka_emulator, api, pool = stopped_clock_emulator, stopped_api, "10"
    toloka_emulator.add_pool(pool, project_id="1")
    toloka_emulator.inject_fault("drop", path="/archive", when="after")

    with pytest.raises(requests.ConnectionError):
        api.post(f"/pools/{pool}/archive")

    [operation] = toloka_emulator.operations(type="POOL.ARCHIVE")
    assert operation["parameters"] == {"pool_id": pool}
    retried = api.post(f"/pools/{pool}/archive")  # what a retrying client meets
    assert retried.status_code == 409
    assert retried.json()["payload"] == {"operation_id": operation["id"]}


def test_slow_delays_and_then_answers_normally(toloka_emulator, api, pool):
    toloka_emulator.inject_fault("slow", delay=0.5, path="/archive")

    with ThreadPoolExecutor(1) as executor:
        archive_url, headers = f"{api.base}/pools/{pool}/archive", dict(api.session.headers)
        slow = executor.submit(requests.post, archive_url, headers=headers, timeout=10)
        while not slow.done():  # reads sent while the archive request waits
            api.get(f"/pools/{pool}")
        response = slow.result()

    assert response.status_code == 202
    assert toloka_emulator.operations(type="POOL.ARCHIVE")[0]["parameters"] == {"pool_id": pool}
    records = toloka_emulator.requests  # in the order they were answered
    archive = next(i for i, r in enumerate(records) if r.path.endswith("/archive"))
    overtook = [r for r in records[:archive] if r.time > records[archive].time]
    assert overtook, "reads that arrived after the archive request were answered before it"


def test_a_slow_answer_trips_a_client_timeout(toloka_emulator, api, pool):
    toloka_emulator.inject_fault("slow", delay=0.5)

    with pytest.raises(requests.Timeout):
        api.session.get(f"{api.base}/pools/{pool}", timeout=0.1)


def test_rate_limit_answers_429_with_retry_after_past_the_limit(stopped_clock_emulator, stopped_api):
    toloka_emulator, api, pool = stopped_clock_emulator, stopped_api, "10"
    toloka_emulator.add_pool(pool, project_id="1")
    toloka_emulator.rate_limit = 10

    # The emulator's clock is stopped, so all eleven come within one of its seconds, however slow the
    # machine is; the eleventh is one too many.
    responses = [api.get(f"/pools/{pool}") for _ in range(11)]

    assert [r.status_code for r in responses] == [200] * 10 + [429]
    assert responses[-1].json()["code"] == "TOO_MANY_REQUESTS"
    assert responses[-1].headers["Retry-After"] == "1"
    assert api.get(f"/pools/{pool}").status_code == 429  # the same second of the emulator's
    toloka_emulator.advance_clock(0.99)
    assert api.get(f"/pools/{pool}").status_code == 429
    toloka_emulator.advance_clock(0.02)  # a second after the first ten
    assert api.get(f"/pools/{pool}").status_code == 200
    toloka_emulator.rate_limit = None
    assert all(api.get(f"/pools/{pool}").status_code == 200 for _ in range(30))


def test_latency_is_added_to_every_request(toloka_emulator, api, pool):
    toloka_emulator.latency = 0.5

    # Not one of them, authorised or not, answers within a client time-out shorter than the latency.
    for method, path, session in [
        ("GET", f"/pools/{pool}", api.session),
        ("POST", f"/pools/{pool}/archive", api.session),
        ("GET", "/operations", api.session),
        ("GET", f"/pools/{pool}", requests.Session()),  # no token: answered 401, just as late
    ]:
        with pytest.raises(requests.Timeout):
            session.request(method, api.base + path, timeout=0.1)

    toloka_emulator.latency = 0
    assert api.get(f"/pools/{pool}").status_code == 200


def test_the_request_log_records_every_request_with_its_final_status(toloka_emulator, api, pool):
    toloka_emulator.inject_fault("503", method="GET")
    api.get(f"/pools/{pool}")
    api.post(f"/pools/{pool}/archive")
    requests.get(f"{api.base}/pools/{pool}", timeout=5)  # no token

    records = toloka_emulator.requests

    assert [(r.method, r.path, r.status) for r in records] == [
        ("GET", "/api/v1/pools/10", 503),
        ("POST", "/api/v1/pools/10/archive", 202),
        ("GET", "/api/v1/pools/10", 401),
    ]
    assert all(r.time <= time.time() and r.duration >= 0 for r in records)
    toloka_emulator.clear_requests()
    assert toloka_emulator.requests == []


def test_unknown_faults_are_refused(toloka_emulator):
    with pytest.raises(ValueError, match="Unknown fault kind"):
        toloka_emulator.inject_fault("418")
    with pytest.raises(ValueError, match="only for kind"):
        toloka_emulator.inject_fault("500", when="after")
