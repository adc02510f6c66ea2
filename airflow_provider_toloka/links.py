"""Buttons in the Airflow UI that open the Toloka web page of what a task archived or waited for.

In Airflow 3 the api-server never runs provider code to draw these buttons: it reads the URL from
XCom under each link's ``xcom_key``. So the task pushes the URL while it runs (as soon as it is
known, so the button works during a long wait) and ``get_link`` only hands that value back when
the worker finalizes the task.

Toloka does not document its web UI's page paths. The ones used here are those toloka-kit 1.2.3
prints (``/requester/project/<project_id>``, ``/requester/project/<project_id>/pool/<pool_id>``,
``/requester/project/<project_id>/training/<training_id>``); the host is the connection's
``ui_base_url`` extra, so a changed UI can be followed without a new release.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from airflow.providers.common.compat.sdk import BaseOperatorLink

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import BaseOperator, Context, TaskInstanceKey

    from airflow_provider_toloka.hooks.toloka import ObjectKind, TolokaHook

# Which object an operation works on, by the parameter Toloka names it with.
_OPERATION_SUBJECTS: tuple[tuple[ObjectKind, str], ...] = (
    ("pool", "pool_id"),
    ("training", "training_id"),
    ("project", "project_id"),
)


def object_page_url(hook: TolokaHook, kind: ObjectKind, object_id: str) -> str:
    """The web-UI page of a project, pool or training.

    A pool's or training's page sits under its project, which the archive request does not
    return, so this reads the object once (one cheap GET).
    """
    base = f"{hook.settings.ui_base_url}/requester/project"
    if kind == "project":
        return f"{base}/{object_id}"
    found = hook.get_pool(object_id) if kind == "pool" else hook.get_training(object_id)
    return f"{base}/{found['project_id']}/{kind}/{object_id}"


def operation_page_url(hook: TolokaHook, operation: dict[str, Any]) -> str | None:
    """The page of the object an operation works on; Toloka's UI has no page for operations."""
    parameters = operation.get("parameters") or {}
    for kind, parameter in _OPERATION_SUBJECTS:
        if parameters.get(parameter):
            return object_page_url(hook, kind, str(parameters[parameter]))
    return None


class TolokaLink(BaseOperatorLink):
    """Shared behaviour: the URL travels in XCom under ``xcom_key``, pushed by ``persist``."""

    name: ClassVar[str]
    key: ClassVar[str]

    @property
    def xcom_key(self) -> str:
        return self.key

    @classmethod
    def persist(cls, context: Context, url: str) -> None:
        """Store the URL for the running task instance; the button appears at once."""
        context["ti"].xcom_push(key=cls.key, value=url)

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        # Imported here: on Airflow 3.0 it loads the task runner's machinery (~1 s of a DAG's parse).
        from airflow.sdk.bases.xcom import BaseXCom

        # In the worker ``ti_key`` is the running task instance, which has every field XCom needs.
        return BaseXCom.get_value(ti_key=ti_key, key=self.key) or ""  # type: ignore[arg-type]


class TolokaProjectLink(TolokaLink):
    """From ``TolokaArchiveProjectOperator`` to the project's page."""

    name = "Toloka project"
    key = "toloka_project_url"


class TolokaPoolLink(TolokaLink):
    """From ``TolokaArchivePoolOperator`` to the pool's page."""

    name = "Toloka pool"
    key = "toloka_pool_url"


class TolokaTrainingLink(TolokaLink):
    """From ``TolokaArchiveTrainingOperator`` to the training's page."""

    name = "Toloka training"
    key = "toloka_training_url"


class TolokaOperationLink(TolokaLink):
    """From ``TolokaOperationSensor`` to the page of the object the operation works on."""

    name = "Toloka object of the operation"
    key = "toloka_operation_object_url"
