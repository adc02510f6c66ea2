"""The example DAGs run end to end with ``dag.test()`` against the emulator, seeded like the demo."""

from __future__ import annotations

import importlib.util
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from dag_testing import for_dag_test

EXAMPLES = Path(__file__).parent.parent / "example_dags"
EXAMPLE_DAG_IDS = {
    "example_toloka_archive",
    "example_toloka_asset",
    "example_toloka_cascade",
    "example_toloka_deferrable",
    "example_toloka_housekeeping",
    "example_toloka_sensor",
    "example_toloka_wait_until_archivable",
}


def load_dag(name: str):
    """The example's DAG, ready for ``.test()``."""
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return for_dag_test(module.dag)


def test_examples_import_without_errors(toloka_conn):
    from airflow_provider_toloka.compat import dag_bag

    bag = dag_bag(str(EXAMPLES))
    assert bag.import_errors == {}
    assert set(bag.dags) == EXAMPLE_DAG_IDS


@pytest.mark.parametrize("dag_id", sorted(EXAMPLE_DAG_IDS))
def test_every_example_task_runs_in_the_pool_named_by_toloka_pool(toloka_conn, monkeypatch, dag_id):
    monkeypatch.setenv("TOLOKA_POOL", "toloka")
    assert {task.pool for task in load_dag(dag_id).tasks} == {"toloka"}
    monkeypatch.delenv("TOLOKA_POOL")
    assert {task.pool for task in load_dag(dag_id).tasks} == {"default_pool"}


def test_archive_example_archives_pools_training_and_project(airflow_db, demo):
    run = load_dag("example_toloka_archive").test()
    assert run.state == "success"
    for kind, object_id in [("pool", "2001"), ("pool", "2002"), ("training", "3001"), ("project", "1001")]:
        assert demo.object(kind, object_id)["status"] == "ARCHIVED"


def test_sensor_example_waits_for_the_operation(airflow_db, demo):
    run = load_dag("example_toloka_sensor").test()
    assert run.state == "success"
    assert demo.object("pool", "2401")["status"] == "ARCHIVED"
    assert len(demo.operations(type="POOL.ARCHIVE")) == 1


def test_cascade_example_closes_and_archives_the_whole_project(airflow_db, demo):
    run = load_dag("example_toloka_cascade").test()
    assert run.state == "success"
    for kind, object_id in [("pool", "2201"), ("pool", "2204"), ("training", "3201"), ("project", "1003")]:
        assert demo.object(kind, object_id)["status"] == "ARCHIVED"
    assert [op["parameters"]["pool_id"] for op in demo.operations(type="POOL.CLOSE")] == ["2204"]


def test_deferrable_example_waits_in_the_trigger(airflow_db, demo, monkeypatch):
    from airflow_provider_toloka.triggers.operation import TolokaOperationTrigger

    waited_on = []
    run_trigger = TolokaOperationTrigger.run

    async def recording_run(trigger):
        waited_on.append(trigger.operation_id)
        async for event in run_trigger(trigger):
            yield event

    monkeypatch.setattr(TolokaOperationTrigger, "run", recording_run)
    # Long enough that no operation has ended before its task checks it, even when dag.test() moves slowly
    # from one task to the next on a busy machine (with 0.5 s the sensor sometimes found SUCCESS at once).
    demo.operation_duration = 5
    run = load_dag("example_toloka_deferrable").test()
    assert run.state == "success"
    for kind, object_id in [("pool", "2101"), ("training", "3101"), ("project", "1002")]:
        assert demo.object(kind, object_id)["status"] == "ARCHIVED"
    # dag.test() runs each trigger inline. Both waiting operators defer on the operation Toloka just
    # accepted; the sensor defers only if the pool's archive is still running when it first looks, which a
    # busy machine (a slow task start) may not reach even with 5 s operations.
    operations = {op["id"]: op["type"] for op in demo.operations()}
    assert set(waited_on) <= set(operations)
    assert {operations[op_id] for op_id in waited_on} >= {"TRAINING.ARCHIVE", "PROJECT.ARCHIVE"}


def test_wait_until_archivable_example_waits_out_the_rejection_window(airflow_db, demo, monkeypatch):
    """With the pool inside its window, the task defers; the trigger lets the emulator's time pass instead of
    sleeping, and the resumed task archives the pool."""
    import datetime as dt

    from airflow.providers.standard.triggers.temporal import DateTimeTrigger
    from airflow.triggers.base import TriggerEvent

    demo.add_pool("2501", project_id="1005", status="CLOSED", last_rejection=demo.now - dt.timedelta(days=8))
    waits: list[float] = []

    async def let_time_pass(trigger):
        # What the real trigger would sleep (until its moment, by the wall clock) passes on Toloka's clock.
        waits.append((trigger.moment - dt.datetime.now(dt.UTC)).total_seconds())
        demo.advance_clock(max(0.0, waits[-1]))
        yield TriggerEvent(trigger.moment)

    monkeypatch.setattr(DateTimeTrigger, "run", let_time_pass)
    run = load_dag("example_toloka_wait_until_archivable").test()
    assert run.state == "success"
    assert demo.object("pool", "2501")["status"] == "ARCHIVED"
    assert demo.object("project", "1005")["status"] == "ARCHIVED"
    assert sum(waits) >= dt.timedelta(days=1).total_seconds() - 60  # the day left of the window
    assert len(demo.operations(type="POOL.ARCHIVE")) == 1


def return_value(run, task_id: str):
    """What a task of the run returned, read back from the metadata database."""
    import json

    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = (
            session.query(XComModel)
            .filter_by(dag_id=run.dag_id, run_id=run.run_id, task_id=task_id, key="return_value")
            .one()
        )
        return json.loads(row.value) if isinstance(row.value, str) else row.value


def _approval_operator():
    from airflow_provider_toloka.compat import approval_operator

    return approval_operator()


def _airflow_at_least(version: str) -> bool:
    from importlib.metadata import version as installed

    from packaging.version import Version

    return Version(installed("apache-airflow")) >= Version(version)


# Answering under dag.test(): on 3.3+ the approval task waits in ``awaiting_input`` and the hitlDetails
# route resumes it. On 3.1 and 3.2 it defers to HITLTrigger, which dag.test() runs inline
# (InProcessTestSupervisor.run_trigger_in_process); see serve_approval_trigger_inline.
needs_approval = pytest.mark.skipif(
    _approval_operator() is None, reason="ApprovalOperator needs Airflow 3.1+ (compat.approval_operator)"
)


@pytest.fixture
def serve_approval_trigger_inline(monkeypatch):
    """Airflow 3.1, 3.2: let dag.test()'s inline trigger ask for the approval's answer, as a triggerer does.

    HITLTrigger asks its supervisor for the answer (``GetHITLDetailResponse``; ``UpdateHITLDetail`` when it
    times out). The triggerer's supervisor serves both (``TriggerRunnerSupervisor._handle_request`` in
    ``airflow/jobs/triggerer_job_runner.py``), but dag.test() runs the trigger under
    ``InProcessTestSupervisor``, whose ``ActivitySubprocess._handle_request`` answers "Unhandled request"
    (the trigger then fails on None). This adds those two branches, the triggerer's own code, and nothing
    else: the answer still comes from the hitlDetails route through the execution API and the DB. 3.3 needs
    none (no trigger), nor does 3.0 (no ApprovalOperator).
    """
    if _airflow_at_least("3.3") or _approval_operator() is None:
        return
    from airflow.jobs.triggerer_job_runner import HITLDetailResponseResult
    from airflow.sdk.execution_time.comms import GetHITLDetailResponse, UpdateHITLDetail
    from airflow.sdk.execution_time.supervisor import InProcessTestSupervisor

    handle_request = InProcessTestSupervisor._handle_request

    def _handle_request(self, msg, log, req_id):
        if isinstance(msg, GetHITLDetailResponse):
            answer = self.client.hitl.get_detail_response(ti_id=msg.ti_id)
        elif isinstance(msg, UpdateHITLDetail):
            answer = self.client.hitl.update_response(
                ti_id=msg.ti_id, chosen_options=msg.chosen_options, params_input=msg.params_input
            )
        else:
            return handle_request(self, msg, log, req_id)
        self.send_msg(HITLDetailResponseResult.from_api_response(response=answer), request_id=req_id)
        return None

    monkeypatch.setattr(InProcessTestSupervisor, "_handle_request", _handle_request)


# A test whose approver fails leaves dag.test() waiting for an answer: bounded past the approver's deadline.
APPROVAL_TEST_TIMEOUT = 300


class Approver:
    """A person in the "Required actions" page: waits for the approval request, then answers it.

    It answers through Airflow's own REST route (``PATCH .../hitlDetails``) on an in-process api-server
    app sharing the test's metadata DB: that is what resumes the task on every minor. (On 3.3 the task
    waits in ``awaiting_input`` and only that route moves it on; a bare write to ``hitl_detail`` is never
    seen. On 3.1 and 3.2 the trigger that ``dag.test()`` runs inline polls the row the route writes.)
    ``before_answer`` runs first, e.g. to change Toloka between the dry run and the real run.
    """

    def __init__(self, dag_id: str, task_id: str, answer: str, before_answer=None, deadline: float = 240):
        self.dag_id, self.task_id, self.answer = dag_id, task_id, answer
        self.before_answer = before_answer
        self.deadline = deadline
        self.request: dict | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="approver", daemon=True)

    def __enter__(self):
        # Imported here, in the test's thread: importing Airflow's modules from two threads at once deadlocks.
        # All models, so that the approver's first query can set up every mapper: on 3.1 a TaskInstance
        # query before anything imported DagCode fails ("expression 'DagCode' failed to locate a name").
        from airflow.models import import_all_models

        import_all_models()
        from airflow.api_fastapi.app import create_app, get_auth_manager
        from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
        from airflow.models.hitl import HITLDetail
        from airflow.models.taskinstance import TaskInstance
        from airflow.utils.session import create_session
        from fastapi.testclient import TestClient

        self._airflow = SimpleNamespace(
            create_app=create_app,
            get_auth_manager=get_auth_manager,
            User=SimpleAuthManagerUser,
            HITLDetail=HITLDetail,
            TaskInstance=TaskInstance,
            create_session=create_session,
            TestClient=TestClient,
        )
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.thread.join(timeout=30)
        assert not self.thread.is_alive(), "the approver thread did not finish"
        if self.error is not None:
            raise self.error

    def _run(self) -> None:
        try:
            run_id, self.request = self._wait_for_request()
            if self.before_answer is not None:
                self.before_answer()
            self._respond(run_id)
        except BaseException as error:  # reported by __exit__, in the test's thread
            self.error = error

    def _wait_for_request(self) -> tuple[str, dict]:
        af = self._airflow
        HITLDetail, TaskInstance = af.HITLDetail, af.TaskInstance

        stop = time.monotonic() + self.deadline  # bounded: a bug fails the test instead of hanging it
        while time.monotonic() < stop:
            with af.create_session() as session:
                row = (
                    session.query(
                        TaskInstance.run_id, HITLDetail.subject, HITLDetail.body, HITLDetail.options
                    )
                    .join(HITLDetail, HITLDetail.ti_id == TaskInstance.id)
                    .filter(TaskInstance.dag_id == self.dag_id, TaskInstance.task_id == self.task_id)
                    .filter(HITLDetail.responded_at.is_(None))
                    .first()
                )
            if row is not None:
                return row.run_id, {"body": row.body, "options": row.options}
            time.sleep(0.2)
        raise TimeoutError(f"no approval request from {self.dag_id}.{self.task_id} in {self.deadline} s")

    def _respond(self, run_id: str) -> None:
        af = self._airflow
        app = af.create_app(apps="core")
        token = af.get_auth_manager().generate_jwt(af.User(username="approver", role="ADMIN"))
        url = f"/api/v2/dags/{self.dag_id}/dagRuns/{run_id}/taskInstances/{self.task_id}/-1/hitlDetails"
        with af.TestClient(app) as client:
            response = client.patch(
                url,
                json={"chosen_options": [self.answer], "params_input": {}},
                headers={"Authorization": f"Bearer {token}"},
            )
        assert response.status_code == 200, response.text


@pytest.mark.timeout(APPROVAL_TEST_TIMEOUT)
def test_housekeeping_example_plans_then_archives_the_idle_projects(
    airflow_db, demo, serve_approval_trigger_inline
):
    if _approval_operator() is None:
        # Airflow 3.0: no approval step, the real run follows the dry run.
        run = load_dag("example_toloka_housekeeping").test()
    else:
        with Approver("example_toloka_housekeeping", "approve", "Approve") as approver:
            run = load_dag("example_toloka_housekeeping").test()
        # The person saw the dry run's table: the projects to archive and each skipped one with its reason.
        body = approver.request["body"]
        for row in (
            "| 1101 | archive |",
            "| 1102 | archive |",
            "| 1003 | skip: open |",
            "| 1104 | skip: recent",
        ):
            assert row in body

    assert run.state == "success"
    plan, archive = (return_value(run, task_id) for task_id in ("plan", "archive_idle_projects"))
    assert plan["dry_run"] is True
    assert plan["archived"] == archive["archived"] == ["1101", "1102"]
    assert list(plan["skipped"]["open"]) == ["1003", "1103"]
    assert "1104" in plan["skipped"]["recent_activity"]
    if _approval_operator() is not None:  # the real run looked only at the approved plan
        assert archive["counts"]["checked"] == 2
    for kind, object_id in [("pool", "5101"), ("pool", "5102"), ("training", "6101"), ("project", "1101")]:
        assert demo.object(kind, object_id)["status"] == "ARCHIVED"
    assert demo.object("project", "1102")["status"] == "ARCHIVED"
    for project_id in ("1001", "1002", "1003", "1004", "1103", "1104"):
        assert demo.object("project", project_id)["status"] == "ACTIVE"


@pytest.mark.timeout(APPROVAL_TEST_TIMEOUT)
@needs_approval
def test_housekeeping_example_archives_only_approved_projects_unchanged_since_the_dry_run(
    airflow_db, demo, serve_approval_trigger_inline
):
    """The real run handles exactly the approved plan: a project opened after the dry run is skipped, with
    why; the approved one still unchanged is archived, and nothing outside the plan is looked at."""

    def change_toloka():
        demo.add_pool("5199", project_id="1102", status="OPEN")  # someone starts labelling again

    with Approver("example_toloka_housekeeping", "approve", "Approve", before_answer=change_toloka):
        run = load_dag("example_toloka_housekeeping").test()

    assert run.state == "success"
    archive = return_value(run, "archive_idle_projects")
    assert archive["archived"] == ["1101"]
    assert list(archive["skipped"]["open"]) == ["1102"]
    assert archive["counts"]["checked"] == 2  # only the plan's projects were looked at
    assert demo.object("project", "1101")["status"] == "ARCHIVED"
    assert demo.object("project", "1102")["status"] == "ACTIVE"


@pytest.mark.timeout(APPROVAL_TEST_TIMEOUT)
@needs_approval
def test_housekeeping_example_archives_nothing_when_the_plan_is_rejected(
    airflow_db, demo, serve_approval_trigger_inline
):
    with Approver("example_toloka_housekeeping", "approve", "Reject"):
        run = load_dag("example_toloka_housekeeping").test()

    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert states["archive_idle_projects"] == "skipped"
    assert demo.operations(type="PROJECT.ARCHIVE") == []
    for project_id in ("1101", "1102"):
        assert demo.object("project", project_id)["status"] == "ACTIVE"


def test_the_asset_example_needs_the_connection_and_never_guesses_a_host(monkeypatch):
    """Without ``toloka_default`` where it is parsed, the asset example fails to import, naming the
    connection: scheduling on a hand-written production URI would wait on an asset nothing updates."""
    from airflow_provider_toloka.compat import dag_bag

    monkeypatch.delenv("AIRFLOW_CONN_TOLOKA_DEFAULT", raising=False)
    bag = dag_bag(str(EXAMPLES / "example_toloka_asset.py"))

    assert "example_toloka_asset" not in bag.dags
    [error] = bag.import_errors.values()
    assert "toloka_default" in error
