from __future__ import annotations

import math

import pytest

from airflow_provider_toloka.validation import (
    validate_count,
    validate_id,
    validate_optional_seconds,
    validate_seconds,
)


@pytest.mark.parametrize(
    ("value", "expected"), [("42", "42"), (42, "42"), ("a-b_C9", "a-b_C9"), ("x" * 64, "x" * 64)]
)
def test_valid_ids_become_strings(value, expected):
    assert validate_id("pool_id", value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "",
        " ",
        "12 ",
        "5/../../projects/7",
        "..",
        "a/b",
        "%2e%2e",
        "пул",
        "x" * 65,
        "x" * 10_000,
        "1?a=b",
        "1#",
        "\n",
    ],
)
def test_ids_that_could_escape_the_path_are_refused_naming_the_parameter(value):
    with pytest.raises(ValueError, match=r"pool_id=.*not a valid Toloka id.*1-64 letters") as err:
        validate_id("pool_id", value)
    assert len(str(err.value)) < 400, "a 10 kB id must not be echoed whole"


@pytest.mark.parametrize("value", [None, 1.5, True, ["1"], b"1"])
def test_ids_of_the_wrong_type_are_refused(value):
    with pytest.raises(ValueError, match=r"training_id=.*is not a Toloka id: pass a str or int"):
        validate_id("training_id", value)


@pytest.mark.parametrize("value", [0, -1, math.nan, math.inf, "10", True, None])
def test_bad_seconds_are_refused(value):
    with pytest.raises(ValueError, match=r"poll_interval=.*positive number of seconds"):
        validate_seconds("poll_interval", value)


def test_optional_seconds_accept_none_and_numbers():
    assert validate_optional_seconds("timeout", None) is None
    assert validate_optional_seconds("timeout", 2) == 2.0


def test_counts():
    assert validate_count("max_retries", 0) == 0
    with pytest.raises(ValueError, match="max_retries=-1"):
        validate_count("max_retries", -1)
