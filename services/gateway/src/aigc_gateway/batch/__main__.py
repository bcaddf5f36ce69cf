"""``python -m aigc_gateway.batch``: batch workers as their own process (a Deployment on Kubernetes).

The same settings as the gateway (``AIGC_GATEWAY_*``): ports, tenants, prices, Kafka, Redis. The
process runs ``AIGC_GATEWAY_BATCH__WORKERS`` workers (at least one) and no tracker and no gRPC
server; give each process its own ``AIGC_GATEWAY_BATCH__WORKER_INDEX_BASE`` so transactional ids
stay unique. SIGTERM lets the batch in hand commit, then leaves the consumer group.
"""

from __future__ import annotations

import asyncio
import signal
import sys

from aigc_common.errors import ConfigError
from aigc_common.runtime import ProcessRuntime
from aigc_common.settings import load_settings
from aigc_gateway.app import build_gateway
from aigc_gateway.settings import GatewaySettings


async def serve(settings: GatewaySettings) -> None:
    batch = settings.batch.model_copy(
        update={"enabled": True, "tracker": False, "workers": max(1, settings.batch.workers)}
    )
    settings = settings.model_copy(update={"batch": batch})
    runtime = ProcessRuntime("batch-worker", settings)
    runtime.start()
    wiring = await build_gateway(settings, runtime)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await wiring.close()
        runtime.stop()


def main() -> None:
    try:
        settings = load_settings(GatewaySettings)
        asyncio.run(serve(settings))
    except ConfigError as exc:
        print(f"aigc-batch-worker: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
