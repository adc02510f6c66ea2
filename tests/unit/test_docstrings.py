"""Every parameter a DAG author can pass is in the class docstring, and the hooks' readers say what they read.

Issue 25 found ``durable`` (``ResumableJobMixin``'s, passed through) and the hooks' ``get_*`` methods
without a word; Airflow's docs and an IDE show these docstrings, so a gap is a parameter nobody finds.
"""

from __future__ import annotations

import inspect

import pytest

from airflow_provider_toloka.hooks.toloka import TolokaHook
from airflow_provider_toloka.hooks.toloka_async import TolokaAsyncHook
from airflow_provider_toloka.operators.archive import (
    TolokaArchivePoolOperator,
    TolokaArchiveProjectOperator,
    TolokaArchiveTrainingOperator,
)
from airflow_provider_toloka.operators.housekeeping import TolokaHousekeepingOperator
from airflow_provider_toloka.sensors.operation import TolokaOperationSensor
from airflow_provider_toloka.triggers.cascade import TolokaCascadeTrigger, TolokaHousekeepingTrigger
from airflow_provider_toloka.triggers.operation import TolokaOperationTrigger

# Passed through **kwargs to a base class of Airflow's, yet part of what the operator promises.
PASSED_THROUGH = {TolokaArchivePoolOperator: ["durable"]}


def _own_docs(cls: type) -> str:
    return "".join(c.__doc__ or "" for c in cls.__mro__ if c.__module__.startswith("airflow_provider_toloka"))


@pytest.mark.parametrize(
    "cls",
    [
        TolokaArchivePoolOperator,
        TolokaArchiveProjectOperator,
        TolokaArchiveTrainingOperator,
        TolokaHousekeepingOperator,
        TolokaOperationSensor,
        TolokaOperationTrigger,
        TolokaCascadeTrigger,
        TolokaHousekeepingTrigger,
    ],
)
def test_every_parameter_is_in_the_docstring(cls: type) -> None:
    params = [
        name
        for name, param in inspect.signature(cls.__init__).parameters.items()
        if name != "self" and param.kind not in (param.VAR_KEYWORD, param.VAR_POSITIONAL)
    ]
    params += PASSED_THROUGH.get(cls, [])
    docs = _own_docs(cls)
    assert [name for name in params if f":param {name}:" not in docs] == []


@pytest.mark.parametrize("hook", [TolokaHook, TolokaAsyncHook])
def test_every_public_get_method_says_what_it_reads(hook: type) -> None:
    undocumented = [
        name
        for name, member in vars(hook).items()
        if name.startswith("get_") and callable(getattr(member, "__func__", member)) and not member.__doc__
    ]
    assert undocumented == []
