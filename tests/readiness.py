"""Waiting for a service process the tests started to answer `/health/ready`.

Start-up takes as long as the machine lets it: on a loaded two-core machine every service
imports its stack, migrates and joins its consumer groups at once, and a fixed deadline
(90 s was one) fails a healthy run. So there is no deadline: a process is waited for while
it works, and given up when it exits or spends no processor time for `STALLED_AFTER`
seconds without becoming ready - hung, not starved. pytest-timeout stays the last guard
(a process that answers 503 forever keeps busy answering).
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

STALLED_AFTER = 60.0


@dataclass
class Startup:
    """One starting process: its name, the process, its base URL and its log."""

    name: str
    process: subprocess.Popen[bytes]
    url: str
    log: Path
    stalled_after: float = STALLED_AFTER
    last_answer: str = "no answer"
    _cpu: int = -1
    _busy_at: float = field(default_factory=time.monotonic)

    def ready(self, answer: httpx.Response | httpx.HTTPError) -> bool:
        """Whether `answer` (to GET /health/ready) says ready; raises when the process
        exited or stalled."""
        if isinstance(answer, httpx.Response) and answer.status_code == 200:
            return True
        self.last_answer = (
            f"{answer.status_code} {answer.text}" if isinstance(answer, httpx.Response)
            else repr(answer)
        )  # fmt: skip
        if self.process.poll() is not None:
            raise RuntimeError(f"{self.name} exited:\n{self._tail()}")
        if self._idle_seconds() > self.stalled_after:
            raise RuntimeError(
                f"{self.name} not ready and idle for {self.stalled_after:.0f} s "
                f"(last answer: {self.last_answer}):\n{self._tail()}"
            )
        return False

    def _idle_seconds(self) -> float:
        cpu = cpu_ticks(self.process.pid)
        if cpu != self._cpu:
            self._cpu, self._busy_at = cpu, time.monotonic()
        return time.monotonic() - self._busy_at

    def _tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


def cpu_ticks(pid: int) -> int:
    """User plus system processor time the process used so far, in clock ticks (Linux)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return -1
    fields = stat.rsplit(")", 1)[1].split()  # after "pid (command)": state is field 3
    return int(fields[11]) + int(fields[12])  # utime, stime: fields 14 and 15


def wait_ready(startup: Startup) -> None:
    while True:
        try:
            answer: httpx.Response | httpx.HTTPError = httpx.get(
                f"{startup.url}/health/ready", timeout=1
            )
        except httpx.HTTPError as error:
            answer = error
        if startup.ready(answer):
            return
        time.sleep(0.2)


async def wait_ready_async(startup: Startup) -> None:
    async with httpx.AsyncClient(base_url=startup.url, timeout=1.0) as client:
        while True:
            try:
                answer: httpx.Response | httpx.HTTPError = await client.get("/health/ready")
            except httpx.HTTPError as error:
                answer = error
            if startup.ready(answer):
                return
            await asyncio.sleep(0.1)
