"""Test-only DAG, scheduled on pool 11's ``toloka://`` asset: the scheduler starts it after the archive.

``example_toloka_archive`` archives pool 11 on ``toloka_default`` with no ``outlets`` of its own; the
operator's ``toloka_archive`` alias turns that into an event of this asset. The URI comes from the
connection at parse time (``toloka_asset_uri``, from the metadata DB through the dag-processor's
supervisor, on every minor): the emulator's host:port, as in production ``toloka.dev``. No fallback: a
parse that could not read the connection fails this DAG, and the asset test with it.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG, Asset, task

from airflow_provider_toloka.assets import toloka_asset_uri

POOL = Asset(toloka_asset_uri("pool", "11"))

with DAG(
    dag_id="toloka_on_pool_archived",
    schedule=[POOL],
    start_date=datetime(2026, 1, 1),
    catchup=False,
) as dag:

    @task
    def report(*, triggering_asset_events=None) -> list[dict]:
        return [dict(event.extra) for events in (triggering_asset_events or {}).values() for event in events]

    report()
