from __future__ import annotations

import itertools

import pytest

from airflow_provider_toloka.exceptions import TolokaError
from airflow_provider_toloka.operation_status import describe, is_terminal, operation_status, poll_delays


@pytest.mark.parametrize(
    ("status", "terminal"), [("PENDING", False), ("RUNNING", False), ("SUCCESS", True), ("FAIL", True)]
)
def test_terminal_statuses(status, terminal):
    assert is_terminal({"status": status}) is terminal


@pytest.mark.parametrize("status", ["DONE", None, "success"])
def test_an_undocumented_status_is_an_error_not_a_guess(status):
    with pytest.raises(TolokaError, match=r"operation 'op-1' has status .* none of PENDING, RUNNING"):
        operation_status({"id": "op-1", "status": status})


def test_describe_reads_like_a_progress_line():
    line = describe(
        {
            "id": "op-1",
            "type": "POOL.ARCHIVE",
            "status": "RUNNING",
            "progress": 40,
            "parameters": {"pool_id": "42"},
        }
    )
    assert line == "POOL.ARCHIVE 40% RUNNING (operation op-1, pool_id=42)"


def test_poll_delays_start_short_and_grow_to_the_interval():
    assert list(itertools.islice(poll_delays(5), 6)) == [0.5, 1.0, 2.0, 4.0, 5, 5]
    assert next(poll_delays(0.2)) == 0.2
