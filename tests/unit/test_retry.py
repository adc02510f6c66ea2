from __future__ import annotations

import pendulum
import pytest

from airflow_provider_toloka.retry import backoff_delay, parse_retry_after


@pytest.mark.parametrize(
    ("header", "seconds"), [("3", 3.0), ("0", 0.0), ("9999", 300.0), (None, None), ("soon", None)]
)
def test_retry_after_seconds(header, seconds):
    assert parse_retry_after(header) == seconds


def test_retry_after_http_date():
    when = pendulum.now("UTC").add(seconds=30).format("ddd, DD MMM YYYY HH:mm:ss [GMT]")
    assert 25 <= parse_retry_after(when) <= 31


def test_backoff_grows_is_capped_and_has_equal_jitter():
    # Equal jitter: every delay in the upper half of the ceiling (full jitter would draw from 0 up).
    for attempt, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (10, 30.0)]:
        delays = [backoff_delay(attempt, initial=1.0, maximum=30.0) for _ in range(200)]
        assert all(ceiling / 2 <= delay <= ceiling for delay in delays)
        assert len(set(delays)) > 1


def test_retry_after_is_a_floor_with_a_little_jitter():
    delays = {backoff_delay(1, initial=0.01, maximum=0.1, retry_after=2.0) for _ in range(20)}
    assert all(2.0 <= d <= 2.3 for d in delays)
    assert len(delays) > 1


def test_a_provider_error_without_an_http_answer_is_not_a_retryable_500():
    # AirflowException gives every TolokaError a status_code of 500; only Toloka's answers count.
    from airflow_provider_toloka.exceptions import TolokaError
    from airflow_provider_toloka.retry import describe_fault, is_retryable

    error = TolokaError("Toloka answered GET /x with HTTP 302 redirecting to 'https://elsewhere'")
    assert not is_retryable(error, transient=(ConnectionError,))
    assert describe_fault(error).startswith("TolokaError: ")
