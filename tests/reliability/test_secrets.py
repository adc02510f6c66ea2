"""The token never shows: not in logs (DEBUG included), exceptions, XCom, rendered fields, log files or repr.

Real tasks run (``dag.test()`` of the example DAG, and operators whose requests fail in every way), then
everything they could have written is searched for the token.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import pytest
from task_instance_stub import RecordingTI

from airflow_provider_toloka.emulator.server import TolokaEmulator
from airflow_provider_toloka.exceptions import TolokaError
from airflow_provider_toloka.hooks.toloka import TolokaHook
from airflow_provider_toloka.operators.archive import TolokaArchivePoolOperator

TOKEN = "sEcReT-tOkEn-7f3a9c21"


@pytest.fixture
def secret_emu(monkeypatch):
    with TolokaEmulator(tokens=(TOKEN,), operation_duration=0.3) as emu:
        monkeypatch.setenv("AIRFLOW_CONN_TOLOKA_DEFAULT", emu.airflow_conn_json())
        yield emu


def database_texts(dag_id: str) -> list[str]:
    """XCom values and rendered template fields the DAG run left in the metadata database."""
    from airflow.models.renderedtifields import RenderedTaskInstanceFields
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        xcoms = session.query(XComModel).filter(XComModel.dag_id == dag_id).all()
        rendered = (
            session.query(RenderedTaskInstanceFields)
            .filter(RenderedTaskInstanceFields.dag_id == dag_id)
            .all()
        )
        return [json.dumps(x.value, default=str) for x in xcoms] + [
            json.dumps(r.rendered_fields, default=str) for r in rendered
        ]


def log_file_texts() -> list[str]:
    logs = Path(os.environ["AIRFLOW_HOME"]) / "logs"
    return [p.read_text(errors="replace") for p in logs.rglob("*") if p.is_file()] if logs.exists() else []


def test_example_dag_run_leaks_no_token(secret_emu, caplog, capfd):
    import importlib.util
    import subprocess
    import sys

    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], check=True, capture_output=True)
    secret_emu.load_seed("demo")
    path = Path(__file__).parents[2] / "example_dags" / "example_toloka_archive.py"
    spec = importlib.util.spec_from_file_location("example_toloka_archive_secrets", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    dag = module.dag
    # Airflow 3.0's SDK DAG has no test(); `airflow dags test` there converts it to the scheduler's DAG.
    if not hasattr(dag, "test"):
        from airflow.models.dag import DAG

        dag = DAG.from_sdk_dag(dag)

    with caplog.at_level(logging.DEBUG):
        run = dag.test()

    assert run.state == "success"
    captured = capfd.readouterr()
    stored = database_texts(dag.dag_id)
    texts = [captured.out, captured.err, caplog.text, *stored, *log_file_texts()]
    texts += [repr(task) for task in dag.tasks] + [repr(TolokaHook())]
    # The search is not vacuous: the run's own output and XComs were captured.
    assert "Archive of pool 2001 submitted" in captured.out + captured.err + caplog.text
    assert any("operation" in text or "POOL.ARCHIVE" in text for text in stored)
    for text in texts:
        assert TOKEN not in text


def run_failing(operator: TolokaArchivePoolOperator) -> tuple[BaseException, dict[str, object]]:
    ti = RecordingTI()
    with pytest.raises((TolokaError, ValueError)) as err:
        operator.execute({"ti": ti})
    return err.value, ti.pushed


@pytest.mark.parametrize(
    "arrange",
    ["open pool (409)", "unknown pool (404)", "retries spent (503)", "connection drops", "operation fails"],
)
def test_failing_tasks_leak_no_token(secret_emu, caplog, capfd, arrange):
    secret_emu.add_pool("10", project_id="1", status="OPEN" if arrange == "open pool (409)" else "CLOSED")
    pool_id = "999" if arrange == "unknown pool (404)" else "10"
    if arrange == "retries spent (503)":
        secret_emu.inject_fault("503", count=10)
    if arrange == "connection drops":
        secret_emu.inject_fault("drop", count=10)
    if arrange == "operation fails":
        secret_emu.fail_next("pool", "10", details={"reason": "export running"})
    operator = TolokaArchivePoolOperator(task_id="archive", pool_id=pool_id, poll_interval=0.05)
    operator.hook = TolokaHook(max_retries=2, retry_min_wait=0.01, retry_max_wait=0.02)

    with caplog.at_level(logging.DEBUG):
        error, pushed = run_failing(operator)

    captured = capfd.readouterr()
    texts = [captured.out, captured.err, caplog.text, str(error), repr(error), json.dumps(pushed)]
    texts += [repr(operator), repr(operator.hook), repr(operator.hook.settings)]
    # DEBUG lines were captured too (urllib3 logs each new connection at DEBUG).
    assert "Starting new HTTP connection" in captured.out + captured.err + caplog.text
    cause: Any = error.__cause__ or error.__context__
    while cause is not None:
        texts.append(repr(cause))
        cause = cause.__cause__ or cause.__context__
    for text in texts:
        assert TOKEN not in text


@pytest.mark.parametrize(
    ("status", "body", "content_type"),
    [
        (400, {"code": "VALIDATION_ERROR", "message": f"bad header: OAuth {TOKEN}"}, "application/json"),
        (401, f"<html>token {TOKEN} is revoked</html>", "text/html"),
        (200, f"<html>hello {TOKEN}</html>", "text/html"),
    ],
)
def test_a_server_that_echoes_the_token_does_not_make_it_leak(
    scripted_server, monkeypatch, caplog, capfd, status, body, content_type
):
    monkeypatch.setenv("AIRFLOW_CONN_TOLOKA_DEFAULT", scripted_server.conn_json(TOKEN))
    scripted_server.set_answer(status, body, content_type)
    hook = TolokaHook(max_retries=0)

    with caplog.at_level(logging.DEBUG), pytest.raises(TolokaError) as err:
        hook.archive_pool("10")

    captured = capfd.readouterr()
    assert "***" in str(err.value) or status == 401
    for text in (str(err.value), repr(err.value), captured.out, captured.err, caplog.text):
        assert TOKEN not in text


@pytest.mark.parametrize("arrange", ["success", "unknown operation (404)", "outage (503)", "outage (drops)"])
async def test_the_trigger_leaks_no_token(secret_emu, monkeypatch, caplog, capfd, arrange):
    from airflow_provider_toloka.triggers.operation import TolokaOperationTrigger

    conn = json.loads(secret_emu.airflow_conn_json())
    conn["extra"]["max_retries"] = 1  # a short retry budget (the connection extra) keeps this fast
    monkeypatch.setenv("AIRFLOW_CONN_TOLOKA_DEFAULT", json.dumps(conn))
    secret_emu.add_pool("10", project_id="1")
    operation_id = "op-1" if arrange == "unknown operation (404)" else TolokaHook().archive_pool("10")["id"]
    if arrange == "outage (503)":
        secret_emu.inject_fault("503", count=20, path="/operations")
    if arrange == "outage (drops)":
        secret_emu.inject_fault("drop", count=20, path="/operations")
    trigger = TolokaOperationTrigger(operation_id=operation_id, poll_interval=0.05)

    with caplog.at_level(logging.DEBUG):
        events = [event.payload async for event in trigger.run()]

    captured = capfd.readouterr()
    texts = [json.dumps(events, default=str), repr(trigger), json.dumps(trigger.serialize(), default=str)]
    texts += [captured.out, captured.err, caplog.text]
    # The search is not vacuous: the trigger's event says what happened, and the HTTP exchanges were
    # logged at DEBUG (httpcore traces each request's headers being sent).
    [event] = events
    status, said = {
        "success": ("success", None),
        "unknown operation (404)": ("error", "HTTP 404 DOES_NOT_EXIST"),
        # Past the retry budget, the wait rides the outage out (logged as it begins and ends) and succeeds.
        "outage (503)": ("success", None),
        "outage (drops)": ("success", None),
    }[arrange]
    assert event["status"] == status
    assert said is None or said in event["message"]
    if arrange.startswith("outage"):
        assert "answers again" in caplog.text
    assert "send_request_headers.started" in caplog.text
    for text in texts:
        assert TOKEN not in text
