"""A worker and a triggerer's work in one process, with Airflow's metrics set up from ``[metrics]``.

Run by ``test_metrics.py`` with the ``toloka_default`` connection and ``AIRFLOW__METRICS__*`` in the
environment (and faults set in the emulator). It starts Airflow's metrics as its task runner does, then
archives a pool waited on in the worker and several waited on together by the triggerer's shared reader
(enough that it reads them by page), all drawing on the shared budget. Then the store goes away and comes
back, each step told on stdin once the test has stopped or started it. Prints ``done``.
"""

from __future__ import annotations

import asyncio
import sys

from airflow_provider_toloka import budget
from airflow_provider_toloka.hooks.toloka import TolokaHook
from airflow_provider_toloka.triggers.operation import TolokaOperationTrigger


def start_airflow_metrics() -> None:
    """What Airflow's task runner and triggerer do on start.

    From 3.2 a process picks its metrics logger explicitly (``Stats.initialize`` on 3.2, the module's
    ``initialize`` on 3.3); on 3.0 and 3.1 ``Stats`` picks it from ``[metrics]`` on first use, so there is
    nothing to do.
    """
    try:
        from airflow.sdk.configuration import conf
        from airflow.sdk.observability import stats
        from airflow.sdk.observability.metrics import stats_utils
    except ImportError:
        return
    if hasattr(stats, "initialize"):
        stats.initialize(
            factory=stats_utils.get_stats_factory(),
            export_legacy_names=conf.getboolean("metrics", "legacy_names_on", fallback=True),
        )
    elif hasattr(stats.Stats, "initialize"):
        stats.Stats.initialize(factory=stats_utils.get_stats_factory(stats.Stats))


async def wait_in_triggerer(operation_ids: list[str]) -> None:
    async def wait(operation_id: str) -> None:
        async for _event in TolokaOperationTrigger(operation_id, poll_interval=0.05).run():
            pass

    await asyncio.gather(*(wait(operation_id) for operation_id in operation_ids))


def step(told: str) -> None:
    """Say where this process is and wait until the test has done its part."""
    print(told, flush=True)
    sys.stdin.readline()


def main() -> None:
    start_airflow_metrics()
    hook = TolokaHook(retry_min_wait=0.01, retry_max_wait=0.05)
    operation = hook.archive_pool("10")
    assert operation is not None
    hook.wait_for_operation(operation["id"], poll_interval=0.05, timeout=60)
    deferred = [hook.archive_pool(str(pool_id)) for pool_id in range(11, 21)]
    asyncio.run(wait_in_triggerer([operation["id"] for operation in deferred if operation]))
    # The store lost, then back: asked again at once rather than after RETRY_STORE_AFTER.
    budget.RETRY_STORE_AFTER = 0.0
    step("stop the store")
    hook.get_pool("10")
    step("start the store")
    hook.get_pool("10")
    print("done", flush=True)


if __name__ == "__main__":
    main()
