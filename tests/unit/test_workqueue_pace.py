"""A paced work queue holds a key re-added right after its sync for as long as that sync took (capped), folding
the adds in between into one sync; an unpaced queue syncs it again at once."""

from __future__ import annotations

import asyncio
import time

from kubesat.controllers.base import MAX_PACE_WAIT, Key, WorkQueue


async def _run(pace: float, sync_seconds: float) -> list[tuple[float, float]]:
    spans: list[tuple[float, float]] = []
    queue: WorkQueue

    async def sync(key: Key) -> None:
        started = time.monotonic()
        await asyncio.sleep(sync_seconds)
        spans.append((started, time.monotonic()))
        if len(spans) == 1:
            for _ in range(5):  # events arriving during the sync
                queue.add(key)

    queue = WorkQueue(sync, "test", pace=pace)
    queue.start()
    try:
        queue.add(("ns", "a"))
        deadline = time.monotonic() + 5
        while len(spans) < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.3)  # no third sync comes
    finally:
        await queue.stop()
    return spans


def test_a_paced_key_waits_as_long_as_its_last_sync_and_syncs_once() -> None:
    spans = asyncio.run(_run(1.0, 0.06))
    assert len(spans) == 2
    gap = spans[1][0] - spans[0][1]
    assert gap >= 0.05


def test_the_wait_is_capped() -> None:
    spans = asyncio.run(_run(1.0, 0.4))
    assert len(spans) == 2
    assert spans[1][0] - spans[0][1] < MAX_PACE_WAIT + 0.15


def test_an_unpaced_key_syncs_again_at_once() -> None:
    spans = asyncio.run(_run(0.0, 0.06))
    assert len(spans) == 2
    assert spans[1][0] - spans[0][1] < 0.04
