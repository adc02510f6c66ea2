"""What test modules in several folders share to run a DAG with ``dag.test()``."""

from __future__ import annotations

from typing import Any


def for_dag_test(dag: Any) -> Any:
    """The DAG, ready for ``.test()``: Airflow 3.0's SDK DAG has none (`airflow dags test` converts it)."""
    if not hasattr(dag, "test"):
        from airflow.models.dag import DAG

        dag = DAG.from_sdk_dag(dag)
    return dag
