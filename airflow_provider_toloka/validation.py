"""Checks on user-supplied values, run before any request is sent.

A templated id that renders to ``"5/../../projects/7"`` must never reach the server, and a
``poll_interval`` of ``0`` must not turn into a busy loop: both fail here with the parameter,
the value and the fix in the message.
"""

from __future__ import annotations

import math
import re
from typing import Any

_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:77]}..."


def validate_id(param: str, value: Any) -> str:
    """Return the id as ``str``; accept ``str`` or ``int``, 1-64 characters of ``[A-Za-z0-9_-]``."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ValueError(
            f"{param}={_shown(value)} ({type(value).__name__}) is not a Toloka id: pass a str or int "
            f"such as {param}='1234567'."
        )
    text = str(value)
    if not _ID_PATTERN.fullmatch(text):
        raise ValueError(
            f"{param}={_shown(value)} is not a valid Toloka id: use 1-64 letters, digits, '_' or '-' "
            f"(e.g. {param}='1234567'); if it came from a template, check what the template rendered."
        )
    return text


def validate_seconds(param: str, value: Any, *, or_none: str = "") -> float:
    """Return a positive, finite number of seconds; zero, negatives, NaN and infinity are refused."""
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ValueError(
            f"{param}={_shown(value)} is not valid: "
            f"pass a positive number of seconds{or_none}, e.g. {param}=30."
        )
    return float(value)


def validate_optional_seconds(param: str, value: Any) -> float | None:
    """Like ``validate_seconds``, but ``None`` (no limit) is allowed."""
    return None if value is None else validate_seconds(param, value, or_none=" or None")


def validate_count(
    param: str, value: Any, *, minimum: int = 0, maximum: int | None = None, why_maximum: str = ""
) -> int:
    """Return a whole number of at least ``minimum`` and at most ``maximum`` (retry budgets, concurrency).

    :param why_maximum: the reason for the upper bound, told to the user with it.
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{param}={_shown(value)} is not valid: pass a whole number >= {minimum}.")
    if maximum is not None and value > maximum:
        raise ValueError(f"{param}={_shown(value)} is not valid: pass at most {maximum}{why_maximum}.")
    return value
