"""Airflow accepts the provider's metadata and finds it through the entry point."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib import import_module
from pathlib import Path

import airflow
import jsonschema
import pytest

from airflow_provider_toloka import get_provider_info

SCHEMAS = Path(airflow.__file__).parent


def schema(name: str) -> dict:
    return json.loads((SCHEMAS / name).read_text())


def test_provider_info_matches_airflows_schema():
    jsonschema.validate(get_provider_info(), schema("provider_info.schema.json"))


def test_connection_form_and_links_match_the_provider_yaml_schema():
    """The stricter schema Airflow's own providers are checked with (``conn-fields`` in detail)."""
    properties = schema("provider.yaml.schema.json")["properties"]
    info = get_provider_info()
    for key in ("connection-types", "extra-links"):
        jsonschema.validate(info[key], properties[key])


def test_every_named_class_imports():
    info = get_provider_info()
    names = [*info["extra-links"], *(c["hook-class-name"] for c in info["connection-types"])]
    for dotted in names:
        module, _, name = dotted.rpartition(".")
        assert getattr(import_module(module), name)


@pytest.mark.parametrize("command", [["providers", "list"], ["providers", "links"]])
def test_airflow_cli_lists_the_provider(command):
    out = subprocess.run(
        [sys.executable, "-m", "airflow", *command], capture_output=True, text=True, check=True
    ).stdout
    expected = "airflow-provider-toloka" if command[1] == "list" else "TolokaPoolLink"
    assert expected in out
