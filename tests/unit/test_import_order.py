"""Each rule has one home, and modules import each other in one direction only (issue 25).

Each check runs in a fresh interpreter: in this process the package is already imported, so an
import circle or an upward import would go unnoticed.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "airflow_provider_toloka"


def _loaded_after(module: str) -> set[str]:
    """The package's modules loaded by importing ``module`` first, in a fresh interpreter."""
    code = (
        "import importlib, json, sys\n"
        f"importlib.import_module({module!r})\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('airflow_provider_toloka'))))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(json.loads(result.stdout.splitlines()[-1]))


def test_exceptions_first_loads_no_other_package_module() -> None:
    # exceptions <-> retry was a circle (TolokaApiError.from_answer used parse_retry_after).
    assert _loaded_after("airflow_provider_toloka.exceptions") == {
        "airflow_provider_toloka",
        "airflow_provider_toloka.exceptions",
    }


@pytest.mark.parametrize(
    ("module", "not_loaded"),
    [
        # housekeeping took the cascade's concurrency from the operator module, one layer up.
        ("airflow_provider_toloka.housekeeping.run", "airflow_provider_toloka.operators.archive"),
        ("airflow_provider_toloka.cascade", "airflow_provider_toloka.operators.archive"),
        # The rule of which refusals time clears lives in archivable, which needs nothing of the cascade.
        ("airflow_provider_toloka.archivable", "airflow_provider_toloka.cascade.execute"),
    ],
)
def test_no_upward_import(module: str, not_loaded: str) -> None:
    assert not_loaded not in _loaded_after(module)


def _string_constants(path: Path) -> list[str]:
    """String literals of a module, docstrings left out (they may name a code without deciding on it)."""
    tree = ast.parse(path.read_text())
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
    ]


@pytest.mark.parametrize(
    "code", ["THERE_IS_REJECTED_ASSIGNMENT", "TRAINING_ARCHIVE_CONFLICT", "UNARCHIVED_POOLS_CONFLICT"]
)
def test_codes_time_clears_are_written_once(code: str) -> None:
    # The cascade and housekeeping kept their own copies of the rule archivable.time_clears states.
    # The emulator plays Toloka, and exceptions.py maps each code to its hint: neither decides.
    homes = sorted(
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if "emulator" not in path.parts and path.name != "exceptions.py" and code in _string_constants(path)
    )
    assert homes == ["archivable.py"]


def test_cascade_concurrency_is_the_cascade_s() -> None:
    from airflow_provider_toloka.cascade import archive_project_cascade
    from airflow_provider_toloka.cascade.execute import DEFAULT_MAX_CONCURRENCY, MAX_CONCURRENCY
    from airflow_provider_toloka.hooks.answer import PAGE_LIMIT
    from airflow_provider_toloka.operators import archive

    # The operator's names stay importable, and are the cascade's own values, not copies.
    assert archive.DEFAULT_MAX_CONCURRENCY is DEFAULT_MAX_CONCURRENCY
    assert MAX_CONCURRENCY == PAGE_LIMIT
    defaults = archive_project_cascade.__kwdefaults__ or {}
    assert defaults["max_concurrency"] == DEFAULT_MAX_CONCURRENCY


def test_only_the_public_sensor_and_trigger_modules_are_named_operation() -> None:
    # The status rules were a third operation.py at the top; they are operation_status.py. The sensor
    # and trigger keep theirs: DAGs import the sensor from there, and Airflow's DB stores the trigger's
    # classpath for every deferred task, so renaming it would break waits in flight on upgrade.
    named = sorted(str(path.relative_to(PACKAGE)) for path in PACKAGE.rglob("operation.py"))
    assert named == ["sensors/operation.py", "triggers/operation.py"]


def test_every_provider_exception_lives_in_exceptions() -> None:
    from airflow_provider_toloka import exceptions, housekeeping
    from airflow_provider_toloka.housekeeping import report

    # TolokaHousekeepingFailed was defined in housekeeping/report.py; its old paths still work.
    assert exceptions.TolokaHousekeepingFailed.__module__ == "airflow_provider_toloka.exceptions"
    assert (
        report.TolokaHousekeepingFailed
        is housekeeping.TolokaHousekeepingFailed
        is exceptions.TolokaHousekeepingFailed
    )
    defined_elsewhere = sorted(
        f"{path.relative_to(PACKAGE)}: {node.name}"
        for path in PACKAGE.rglob("*.py")
        if path.name != "exceptions.py" and "emulator" not in path.parts
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.ClassDef)
        and node.name.startswith("Toloka")
        and node.name.endswith(("Failed", "Error"))
    )
    assert defined_elsewhere == []


def test_names_that_clashed_stay_apart() -> None:
    from airflow_provider_toloka.cascade import plan, watch
    from airflow_provider_toloka.triggers import reader

    # CascadePlan.training_of (a property) had a module-level function of the same name beside it, and
    # the cascade's _Waiter read as the trigger reader's Waiter.
    assert not hasattr(plan, "training_of")
    assert (
        plan.required_training_id({"quality_control": {"training_requirement": {"training_pool_id": 7}}})
        == "7"
    )
    assert not hasattr(watch, "_Waiter")
    assert hasattr(reader, "Waiter")


def test_the_archive_base_class_says_so_and_keeps_its_old_name() -> None:
    from airflow_provider_toloka.operators import archive

    assert archive.TolokaArchiveOperator is archive.TolokaArchiveBaseOperator
    for operator in (archive.TolokaArchivePoolOperator, archive.TolokaArchiveTrainingOperator):
        assert operator.__bases__ == (archive.TolokaArchiveBaseOperator,)
    # Methods named for what they do: one may defer (raise), the other pushes to XCom.
    assert not hasattr(archive.TolokaArchiveBaseOperator, "_finish")
    assert not hasattr(archive.TolokaArchiveBaseOperator, "_follow")


def test_the_cascade_branch_lives_in_cascade() -> None:
    # The project operator held the cascade's option checks, its shared-pace hook and its held-back
    # handling; they are cascade/task.py's, and the operator only hands over to it.
    source = (PACKAGE / "operators" / "archive.py").read_text()
    names = {
        node.id if isinstance(node, ast.Name) else node.attr
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Name | ast.Attribute)
    }
    cascade_own = {"SharedThrottle", "TolokaCascadeHeldBack", "archive_project_cascade", "validate_count"}
    assert not names & cascade_own


def _imported(path: Path) -> set[str]:
    """Every module ``path`` imports: at the top, inside functions and under ``TYPE_CHECKING`` alike."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def test_the_emulator_server_imports_its_control_api_and_not_the_reverse() -> None:
    # control.py named TolokaEmulator (under TYPE_CHECKING) while server.py imported control inside a
    # function: a circle hidden from a plain import. control now steers a protocol.
    emulator = PACKAGE / "emulator"
    assert "airflow_provider_toloka.emulator.control" in _imported(emulator / "server.py")
    assert "airflow_provider_toloka.emulator.server" not in _imported(emulator / "control.py")
    assert "airflow_provider_toloka.emulator.server" not in _loaded_after(
        "airflow_provider_toloka.emulator.control"
    )


def test_no_class_name_is_defined_twice() -> None:
    # housekeeping/report.py and triggers/reader.py each had an Outcome: a project's, and a wait's.
    defined = [
        node.name
        for path in PACKAGE.rglob("*.py")
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.ClassDef)
    ]
    assert sorted({name for name in defined if defined.count(name) > 1}) == []
