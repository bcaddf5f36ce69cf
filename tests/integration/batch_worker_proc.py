"""A batch worker in its own process, for the crash test in ``test_batch_worker.py``.

    python batch_worker_proc.py BOOTSTRAP TOPIC_PREFIX GROUP [--pause-in-txn SECONDS]

Its scripted pipeline sleeps a little per item so the test can kill it mid-job. With
``--pause-in-txn`` it also holds every transaction open for a moment after the batch's records are
sent and before the commit, printing ``txn-open <n>`` then ``txn-committed <n>`` (flushed), so the
test can SIGKILL it while a transaction holds results that must never become visible.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time
from typing import Any

from aigc.common.v1 import common_pb2
from aigc.events.v1 import events_pb2
from aigc_common.kafka import Topics
from aigc_common.settings import KafkaSettings
from aigc_gateway.batch import BatchWorker, WorkerConfig


async def scripted_process(request: events_pb2.GenerationRequested) -> events_pb2.GenerationResult:
    await asyncio.sleep(0.05)  # long enough that a kill lands mid-job, short enough to finish fast
    return events_pb2.GenerationResult(
        status="succeeded",
        text=f"answer to {request.item_id}",
        usage=common_pb2.Usage(prompt_tokens=3, completion_tokens=4, total_tokens=7),
        bundle_id="bundle-test",
    )


class _PausingProducer:
    """Delegates to the worker's transactional producer; holds each commit for ``pause_s``."""

    def __init__(self, producer: Any, pause_s: float) -> None:
        self._producer = producer
        self._pause_s = pause_s
        self._transactions = 0

    def commit_transaction(self) -> None:
        self._transactions += 1
        # The batch's records are already flushed to the log here, uncommitted.
        print(f"txn-open {self._transactions}", flush=True)
        time.sleep(self._pause_s)
        self._producer.commit_transaction()
        print(f"txn-committed {self._transactions}", flush=True)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._producer, name)


class PausingWorker(BatchWorker):
    """The real worker, with its producer wrapped once connected (test seam, not a product feature)."""

    def __init__(self, *args: Any, pause_s: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._pause_s = pause_s

    def _connect(self) -> None:
        super()._connect()
        if self._pause_s > 0:
            self._producer = _PausingProducer(self._producer, self._pause_s)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("bootstrap")
    parser.add_argument("prefix")
    parser.add_argument("group")
    parser.add_argument("--pause-in-txn", type=float, default=0.0)
    parser.add_argument("--max-poll-records", type=int, default=3)
    args = parser.parse_args()

    worker = PausingWorker(
        KafkaSettings(bootstrap_servers=args.bootstrap, client_id=f"{args.group}-proc"),
        WorkerConfig(
            group_id=args.group,
            worker_index=0,
            topics=Topics.with_prefix(args.prefix),
            concurrency=2,
            max_poll_records=args.max_poll_records,
            poll_timeout_s=0.5,
            session_timeout_s=6.0,
        ),
        scripted_process,
        pause_s=args.pause_in_txn,
    )

    async def run() -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, worker.stop)
        print("worker-started", flush=True)
        await worker.run()

    asyncio.run(run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
