"""``reset()`` (one emulator for many cases) and the injected refusals 400 and 403."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize(
    ("kind", "status", "code"), [("400", 400, "VALIDATION_ERROR"), ("403", 403, "ACCESS_DENIED")]
)
def test_injected_refusals_answer_with_tolokas_error_and_change_nothing(
    toloka_emulator, api, kind, status, code
):
    toloka_emulator.add_pool("10", project_id="1")
    toloka_emulator.inject_fault(kind, path="/archive")

    refused = api.post("/pools/10/archive")

    assert refused.status_code == status
    assert refused.json()["code"] == code
    assert toloka_emulator.operations() == []
    assert api.post("/pools/10/archive").status_code == 202


def test_reset_forgets_the_world_and_the_trouble_but_keeps_serving(toloka_emulator, api):
    toloka_emulator.add_pool("10", project_id="1")
    api.post("/pools/10/archive")
    toloka_emulator.inject_fault("500", count=5)
    toloka_emulator.rate_limit = 1
    toloka_emulator.latency = 0.5

    toloka_emulator.reset()

    assert toloka_emulator.requests == []
    assert toloka_emulator.operations() == []
    assert toloka_emulator.rate_limit is None
    assert toloka_emulator.latency == 0
    assert api.get("/pools/10").status_code == 404
    toloka_emulator.add_pool("10", project_id="1")
    assert api.post("/pools/10/archive").status_code == 202
