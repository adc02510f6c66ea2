"""Apache Airflow provider for archiving Toloka projects, pools and trainings.

Importing this package stays cheap: it only describes the provider to Airflow, so the
scheduler and DAG processor never pay for ``requests`` when they merely list providers.
"""

from __future__ import annotations

from typing import Any

__version__ = "1.0.0.dev0"


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
            {
                "integration-name": "Toloka",
                "python-modules": [
                    "airflow_provider_toloka.operators.archive",
                    "airflow_provider_toloka.operators.housekeeping",
                ],
            }
        ],
        "sensors": [
            {"integration-name": "Toloka", "python-modules": ["airflow_provider_toloka.sensors.operation"]}
        ],
        "extra-links": [
            "airflow_provider_toloka.links.TolokaProjectLink",
            "airflow_provider_toloka.links.TolokaPoolLink",
            "airflow_provider_toloka.links.TolokaTrainingLink",
            "airflow_provider_toloka.links.TolokaOperationLink",
        ],
        # toloka://<api host>/{projects|pools|trainings}/<id>: read by Airflow 3.0-3.3 alike. (The older
        # "dataset-uris" key is read only by Airflow 2, which this provider does not support.)
        "asset-uris": [
            {
                "schemes": ["toloka"],
                "handler": "airflow_provider_toloka.assets.normalize_toloka_uri",
                "factory": "airflow_provider_toloka.assets.create_asset",
                "to_openlineage_converter": "airflow_provider_toloka.assets.convert_asset_to_openlineage",
            }
        ],
        "triggers": [
            {
                "integration-name": "Toloka",
                "python-modules": [
                    "airflow_provider_toloka.triggers.operation",
                    "airflow_provider_toloka.triggers.cascade",
                ],
            }
        ],
        "connection-types": [
            {
                "connection-type": "toloka",
                "hook-class-name": "airflow_provider_toloka.hooks.toloka.TolokaHook",
                "hook-name": "Toloka",
                "conn-fields": {
                    "environment": {
                        "label": "Environment",
                        "description": (
                            "production calls https://toloka.dev/api/v1, sandbox calls "
                            "https://sandbox.toloka.dev/api/v1. Ignored when Host override is set."
                        ),
                        "schema": {
                            "type": ["string", "null"],
                            "enum": ["production", "sandbox"],
                            "default": "production",
                        },
                    },
                    "auth_scheme": {
                        "label": "Authorization scheme",
                        "description": (
                            "OAuth for an OAuth token (header 'Authorization: OAuth <token>'), "
                            "ApiKey for an API key made in the Toloka web UI."
                        ),
                        "schema": {
                            "type": ["string", "null"],
                            "enum": ["OAuth", "ApiKey"],
                            "default": "OAuth",
                        },
                    },
                    "ui_base_url": {
                        "label": "Web UI base URL",
                        "description": (
                            "Where the task buttons in Airflow link to, e.g. https://platform.toloka.ai. "
                            "Leave empty for the environment's own web UI."
                        ),
                        "schema": {"type": ["string", "null"]},
                    },
                    "act_under_account_id": {
                        "label": "Act under account",
                        "description": (
                            "Id of a shared account the token's user is a member of: every request acts "
                            "under it (header X-Act-Under-Account-ID). Empty: the token's own account."
                        ),
                        "schema": {"type": ["string", "null"], "maxLength": 128},
                    },
                    "max_retries": {
                        "label": "Retries",
                        "description": "Retries after HTTP 429, 5xx or a dropped connection (default 5).",
                        "schema": {"type": ["integer", "null"], "minimum": 0, "maximum": 100},
                    },
                    "timeout": {
                        "label": "Request timeout (seconds)",
                        "description": "Seconds to wait for one answer from Toloka (default 30).",
                        "schema": {"type": ["number", "null"], "minimum": 1},
                    },
                    "requests_per_second": {
                        "label": "Requests per second",
                        "description": (
                            "This connection's share of the account's limit (Toloka's is 300). Each task "
                            "then paces its requests from the first one. Empty: slow down on HTTP 429."
                        ),
                        "schema": {"type": ["number", "null"], "exclusiveMinimum": 0, "maximum": 300},
                    },
                    "rate_limit_storage_uri": {
                        "label": "Rate limit storage",
                        "description": (
                            "A Redis every worker and triggerer reaches, e.g. redis://host:6379/0 "
                            "(also rediss://, redis+sentinel://, redis+cluster://), without its password: "
                            "all requests of this account then share one budget of Requests per second, "
                            "which must be set. Empty: each task keeps its own pace."
                        ),
                        "schema": {"type": ["string", "null"]},
                    },
                    # Its own field, never in the URI: Airflow's UI and REST API redact an extra whose
                    # name says "password" (on every supported minor, with no configuration).
                    "rate_limit_storage_password": {
                        "label": "Rate limit storage password",
                        "description": (
                            "The Rate limit storage's password (Sentinel: the master's), masked by "
                            "Airflow. Empty: the store asks for none."
                        ),
                        "schema": {"type": ["string", "null"], "format": "password"},
                    },
                },
                "ui-field-behaviour": {
                    # Everything Toloka needs has a field of its own above, so the raw JSON is hidden too.
                    "hidden-fields": ["schema", "login", "port", "extra"],
                    "relabeling": {"password": "API token", "host": "Host override"},
                    "placeholders": {
                        "password": "OAuth token or API key from your Toloka requester profile",
                        "host": "empty for the environment, or e.g. http://127.0.0.1:8765 (local emulator)",
                    },
                },
            }
        ],
    }
