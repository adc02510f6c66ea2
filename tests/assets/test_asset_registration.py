"""What Airflow's ``ProvidersManager`` finds under the provider's ``asset-uris``: the factory and the
OpenLineage converter, each reached the way Airflow reaches it (never by importing them here).

The factory is called by Airflow's hook lineage collector (``create_asset(scheme="toloka", ...)``), the
converter by the OpenLineage provider (``ProvidersManager().asset_to_openlineage_converters``). The
converter builds the OpenLineage client's real ``Dataset`` (a dev dependency; the provider needs none).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from airflow.providers.common.compat.sdk import HookLineageCollector
from airflow.sdk import Asset
from openlineage.client.event_v2 import Dataset


def providers_manager():
    """Where the minor's task runtime keeps the asset resources (the older home is deprecated on 3.3)."""
    try:
        from airflow.sdk.providers_manager_runtime import ProvidersManagerTaskRuntime  # 3.2+
    except ImportError:  # 3.0, 3.1
        from airflow.providers_manager import ProvidersManager

        return ProvidersManager()
    return ProvidersManagerTaskRuntime()


def test_hook_lineage_collector_builds_toloka_assets_with_the_factory():
    collector = HookLineageCollector()
    asset = collector.create_asset(
        scheme="toloka",
        uri=None,
        asset_kwargs={"api_url": "https://Sandbox.Toloka.dev:443/api/v1", "kind": "pool", "object_id": 7},
        asset_extra={"operation_id": "op-1"},
    )
    assert asset == Asset("toloka://sandbox.toloka.dev/pools/7", extra={"operation_id": "op-1"})


def test_factory_refuses_an_unknown_kind_naming_the_choices():
    factory = providers_manager().asset_factories["toloka"]
    with pytest.raises(ValueError, match="kind='task' is not valid: use one of project, pool, training"):
        factory(api_url="https://toloka.dev", kind="task", object_id=1)


@pytest.mark.parametrize(
    ("uri", "namespace", "name"),
    [
        ("toloka://toloka.dev/projects/1003", "toloka://toloka.dev", "projects/1003"),
        ("toloka://127.0.0.1:8765/trainings/20", "toloka://127.0.0.1:8765", "trainings/20"),
    ],
)
def test_openlineage_converter_names_the_object_under_its_api_host(uri, namespace, name):
    convert = providers_manager().asset_to_openlineage_converters["toloka"]
    dataset = convert(Asset(uri), None)
    assert isinstance(dataset, Dataset)
    assert (dataset.namespace, dataset.name) == (namespace, name)


def test_registering_the_scheme_imports_no_openlineage():
    """Airflow imports the handler's module wherever it parses a DAG; OpenLineage may not be installed."""
    code = (
        "import json, sys\n"
        "from airflow.providers_manager import ProvidersManager\n"
        "ProvidersManager().initialize_providers_asset_uri_resources()\n"
        "import airflow_provider_toloka.assets\n"
        "print(json.dumps(sorted(m for m in sys.modules if 'openlineage' in m)))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(result.stdout.splitlines()[-1]) == []
