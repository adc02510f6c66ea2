"""The provider's operators, sensors, triggers and hooks, found by walking the package.

Tests that must cover each of them (its docs page, its request path) compare against this list, so a new
class fails them until it is covered.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil

from airflow.providers.common.compat.sdk import BaseHook, BaseOperator
from airflow.triggers.base import BaseTrigger

import airflow_provider_toloka

ROLES = ("hooks", "operators", "sensors", "triggers")


def public_classes() -> set[type]:
    """Every operator, sensor, trigger and hook the package defines, found by walking it."""
    found = set()
    for role in ROLES:
        package = importlib.import_module(f"{airflow_provider_toloka.__name__}.{role}")
        for module_info in pkgutil.iter_modules(package.__path__):
            module = importlib.import_module(f"{package.__name__}.{module_info.name}")
            for name, cls in vars(module).items():
                if (
                    inspect.isclass(cls)
                    and cls.__module__ == module.__name__
                    and not name.startswith("_")
                    and issubclass(cls, (BaseOperator, BaseTrigger, BaseHook))
                ):
                    found.add(cls)
    # A base class (TolokaArchiveBaseOperator) is documented through the classes users instantiate.
    return {cls for cls in found if not any(other is not cls and issubclass(other, cls) for other in found)}
