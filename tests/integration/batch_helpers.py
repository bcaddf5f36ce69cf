"""Running a batch worker in a test: on its own event loop in a thread, since the test's reads block."""

from __future__ import annotations

import asyncio
import sys
import threading
import traceback
from collections.abc import Iterator
from contextlib import contextmanager

from aigc_gateway.batch import BatchWorker

STOP_TIMEOUT_S = 45.0


def kafka_thread_stack() -> str:
    """Where the worker's Kafka thread is right now (for failure messages)."""
    frames = sys._current_frames()
    for thread in threading.enumerate():
        if thread.name.startswith("aigc-batch-kafka") and thread.ident in frames:
            stack = traceback.extract_stack(frames[thread.ident])
            return " <- ".join(f"{f.name}" for f in reversed(stack[-12:]))
    return "(no Kafka thread)"


@contextmanager
def running(worker: BatchWorker) -> Iterator[list[BaseException]]:
    """Runs ``worker`` until the block ends, then stops it; yields the list its error lands in, and
    raises that error after the block."""
    errors: list[BaseException] = []

    def target() -> None:
        try:
            asyncio.run(worker.run())
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=target, name="batch-worker", daemon=True)
    thread.start()
    try:
        yield errors
    finally:
        worker.stop()
        thread.join(timeout=STOP_TIMEOUT_S)
        assert not thread.is_alive(), (
            f"the worker did not stop; its Kafka thread is in {kafka_thread_stack()}"
        )
    if errors:
        raise errors[0]
