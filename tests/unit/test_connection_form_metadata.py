"""The connection form Airflow's UI draws for type ``toloka`` has the same fields on every supported minor.

Airflow 3.2+ reads ``conn-fields`` / ``ui-field-behaviour`` from ``get_provider_info``; 3.0 and 3.1 call
``TolokaHook.get_connection_form_widgets`` / ``get_ui_field_behaviour``. This asks the api-server's own
service (what ``GET /ui/connections/hook_meta`` answers the React form with) on the installed Airflow.
"""

from __future__ import annotations

import pytest

from airflow_provider_toloka import get_provider_info

CONN_TYPE = get_provider_info()["connection-types"][0]


@pytest.fixture(scope="module")
def toloka_meta():
    from airflow.api_fastapi.core_api.services.ui.connections import HookMetaService

    [meta] = [m for m in HookMetaService.hook_meta_data() if m.connection_type == "toloka"]
    return meta


def test_the_form_has_every_toloka_field_with_its_label(toloka_meta):
    fields = toloka_meta.extra_fields or {}
    assert sorted(fields) == sorted(CONN_TYPE["conn-fields"])
    for name, declared in CONN_TYPE["conn-fields"].items():
        shown = fields[name]
        assert shown["schema"]["title"] == declared["label"]
        assert shown["description"] == declared["description"]
        if "enum" in declared["schema"]:
            assert shown["schema"]["enum"] == declared["schema"]["enum"]
            assert shown["value"] == declared["schema"]["default"]


def test_the_standard_fields_are_relabelled_and_the_unused_hidden(toloka_meta):
    standard = toloka_meta.standard_fields
    assert standard.password.title == "API token"
    assert "OAuth token or API key" in standard.password.placeholder
    assert standard.host.title == "Host override"
    for unused in (standard.login, standard.port, standard.url_schema):
        assert unused.hidden


def test_the_store_password_field_is_a_masked_input(toloka_meta):
    """A password input (what is typed shows as dots) on every minor: 3.2+ from the schema's ``format``,
    3.0 and 3.1 from ``compat``'s ``PasswordField``."""
    shown = (toloka_meta.extra_fields or {})["rate_limit_storage_password"]
    assert shown["schema"]["format"] == "password"
    assert shown["schema"]["title"] == "Rate limit storage password"
