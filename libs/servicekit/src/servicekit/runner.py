"""Run a service process: its HTTP API and its background loops, stopped together.

uvicorn captures SIGINT/SIGTERM while it serves and re-raises them when it is done, so
the HTTP server ending is what stops the loops. A loop that dies takes the process down
(non-zero exit) so the supervisor restarts it; nothing limps on half-working.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import uvicorn
from fastapi import FastAPI

from servicekit.logging import get_logger

log = get_logger(__name__)

Loop = Callable[[asyncio.Event], Coroutine[Any, Any, None]]


async def serve(app: FastAPI | None, host: str, port: int, loops: Sequence[Loop] = ()) -> None:
    stop = asyncio.Event()
    running = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        running.add_signal_handler(sig, stop.set)
    tasks = [
        asyncio.create_task(loop(stop), name=getattr(loop, "__name__", "loop")) for loop in loops
    ]
    server = None
    if app is not None:
        config = uvicorn.Config(app, host=host, port=port, log_config=None, access_log=False)
        server = uvicorn.Server(config)
        tasks.append(asyncio.create_task(server.serve(), name="http"))
    stopper = asyncio.create_task(stop.wait(), name="stop")
    done, _ = await asyncio.wait([*tasks, stopper], return_when=asyncio.FIRST_COMPLETED)
    stop.set()
    if server is not None:
        server.should_exit = True
    failed = [t for t in done if t is not stopper and t.exception() is not None]
    for task in failed:
        log.error("loop_failed", loop=task.get_name(), error=repr(task.exception()))
    await asyncio.gather(*tasks, return_exceptions=True)
    stopper.cancel()
    if failed:
        raise SystemExit(1)
