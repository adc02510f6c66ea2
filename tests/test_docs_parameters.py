"""Every public parameter is documented: each of every operator, sensor, trigger and hook is on its page."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest
from provider_classes import public_classes

import airflow_provider_toloka
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

DOCS = Path(__file__).parent.parent / "docs"
# Each class and the pages that document its parameters.
PAGES: dict[type, list[str]] = {
    TolokaArchivePoolOperator: ["operators.md"],
    TolokaArchiveTrainingOperator: ["operators.md"],
    TolokaArchiveProjectOperator: ["operators.md", "cascade.md"],
    TolokaHousekeepingOperator: ["housekeeping.md"],
    TolokaOperationSensor: ["sensor.md"],
    TolokaOperationTrigger: ["deferrable.md"],
    TolokaCascadeTrigger: ["deferrable.md"],
    TolokaHousekeepingTrigger: ["deferrable.md"],
    TolokaHook: ["hook.md"],
    TolokaAsyncHook: ["hook.md"],
}


def parameters(cls: type) -> list[str]:
    """The keyword arguments the provider adds (Airflow documents its own, like ``task_id``)."""
    names: list[str] = []
    for klass in cls.__mro__:
        if not klass.__module__.startswith(airflow_provider_toloka.__name__) or "__init__" not in vars(klass):
            continue
        for parameter in inspect.signature(klass.__init__).parameters.values():
            if parameter.name == "self" or parameter.kind in (
                parameter.VAR_POSITIONAL,
                parameter.VAR_KEYWORD,
            ):
                continue
            if parameter.name not in names:
                names.append(parameter.name)
    return names


def test_every_public_class_has_a_page():
    assert public_classes() == set(PAGES), "add each new operator, sensor, trigger or hook to PAGES"


@pytest.mark.parametrize(
    ("cls", "name"),
    [pytest.param(cls, name, id=f"{cls.__name__}.{name}") for cls in PAGES for name in parameters(cls)],
)
def test_every_parameter_is_on_its_page(cls, name):
    text = "\n".join((DOCS / page).read_text() for page in PAGES[cls])
    # In code (`name` or `name=...`), or as a keyword argument in a code block.
    assert re.search(rf"`{name}[`=]|\b{name}=", text), f"{cls.__name__}({name}=...) is not on {PAGES[cls]}"
