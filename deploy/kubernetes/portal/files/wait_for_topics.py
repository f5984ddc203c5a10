"""Wait until every topic a service touches exists (an init container of each service).

PORTAL_KAFKA_BOOTSTRAP: the brokers; PORTAL_WAIT_FOR_TOPICS: comma-separated topic names.
Exits 0 once the broker lists all of them; keeps asking (every 5 s) while the broker is away
or a topic is missing, so the pod starts as soon as the topic operator has made them.
"""

from __future__ import annotations

import asyncio
import os
import sys

from aiokafka.admin import AIOKafkaAdminClient


async def missing_topics(bootstrap: str, wanted: set[str]) -> set[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    await admin.start()
    try:
        return wanted - set(await admin.list_topics())
    finally:
        await admin.close()


async def main() -> int:
    bootstrap = os.environ["PORTAL_KAFKA_BOOTSTRAP"]
    wanted = {t for t in os.environ["PORTAL_WAIT_FOR_TOPICS"].split(",") if t}
    while True:
        try:
            missing = await missing_topics(bootstrap, wanted)
        except Exception as exc:  # the broker not answering yet: ask again
            print(f"kafka at {bootstrap} not answering: {type(exc).__name__}", flush=True)
        else:
            if not missing:
                print(f"all {len(wanted)} topics exist", flush=True)
                return 0
            print(f"waiting for topics: {', '.join(sorted(missing))}", flush=True)
        await asyncio.sleep(5)


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
