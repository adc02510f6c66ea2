"""Apache Airflow provider for archiving Toloka projects, pools and trainings.

Importing this package stays cheap: it only describes the provider to Airflow, so the
scheduler and DAG processor never pay for ``requests`` when they merely list providers.
"""

from __future__ import annotations

from typing import Any

__version__ = "1.0.0.dev0"

_UI_BASE_URL = "https://platform.toloka.ai"


def get_provider_info() -> dict[str, Any]:
    """Describe the provider to Airflow's ``ProvidersManager`` (entry point ``apache_airflow_provider``)."""
    return {
        "package-name": "airflow-provider-toloka",
        "name": "Toloka",
        "description": "Archive Toloka crowdsourcing projects, pools and trainings from Airflow DAGs.",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": "Toloka",
                "external-doc-url": "https://toloka.ai/docs/api/",
                "tags": ["service"],
            }
        ],
        "hooks": [{"integration-name": "Toloka", "python-modules": ["airflow_provider_toloka.hooks.toloka"]}],
        "operators": [
            {"integration-name": "Toloka", "python-modules": ["airflow_provider_toloka.operators.archive"]}
        ],
        "sensors": [
            {"integration-name": "Toloka", "python-modules": ["airflow_provider_toloka.sensors.operation"]}
        ],
        "triggers": [
            {"integration-name": "Toloka", "python-modules": ["airflow_provider_toloka.triggers.operation"]}
        ],
        "connection-types": [
            {
                "connection-type": "toloka",
                "hook-class-name": "airflow_provider_toloka.hooks.toloka.TolokaHook",
                "hook-name": "Toloka",
                "conn-fields": {
                    "environment": {
                        "label": "Environment",
                        "description": "Which Toloka API to call; ignored when Host is set.",
                        "schema": {
                            "type": ["string", "null"],
                            "enum": ["production", "sandbox"],
                            "default": "production",
                        },
                    },
                    "auth_scheme": {
                        "label": "Authorization scheme",
                        "description": "OAuth for OAuth tokens, ApiKey for API keys from the Toloka web UI.",
                        "schema": {
                            "type": ["string", "null"],
                            "enum": ["OAuth", "ApiKey"],
                            "default": "OAuth",
                        },
                    },
                    "ui_base_url": {
                        "label": "Web UI base URL",
                        "description": "Where task links point, e.g. https://platform.toloka.ai",
                        "schema": {"type": ["string", "null"], "default": _UI_BASE_URL},
                    },
                },
                "ui-field-behaviour": {
                    "hidden-fields": ["schema", "login", "port", "extra"],
                    "relabeling": {"password": "API token", "host": "Host override"},
                    "placeholders": {
                        "password": "OAuth token or API key from the Toloka requester profile",
                        "host": "Leave empty for toloka.dev; e.g. http://127.0.0.1:8765 for the emulator",
                    },
                },
            }
        ],
    }
