"""The short chaos run inside `make test` (issue 13): two instances of every service on an
isolated platform of its own (one broker), a bounded load, and each fault kind at a fixed
seed - kill -9 of four processes, a SIGSTOP past the session timeout, a broker restart, a
PostgreSQL immediate-shutdown restart. Every invariant of the issue must hold; the full
run is `make chaos`.

Its outcome does not depend on timing: the run waits for exactly its end conditions
(outboxes empty, every group's lag 0, nothing left to send) and only then compares what
was accepted with what the stores hold. A journey that could not finish under the faults
is abandoned, never a failure: only accepted writes are promised."""

from __future__ import annotations

import pytest

from chaos.run import Config, run, table

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1800)]

SHORT = Config(
    seed=20261127, load_seconds=75, concurrency=3, brokers=1, kills=4, pauses=1,
    broker_restarts=1, postgres_restarts=1, warmup_seconds=10,
)  # fmt: skip


def test_chaos_nothing_accepted_is_lost_or_doubled_while_every_kind_of_fault_strikes() -> None:
    result = run(SHORT)
    report = table(result)
    print(report)
    assert result.faults == {"kill": 4, "pause": 1, "broker": 1, "postgres": 1}, report
    assert not result.fault_errors, report
    assert result.ledger.journeys_started > 0, report
    failed = [f"{c.rule} {c.what}" for c in result.checks if not c.ok]
    assert failed == [], report
    assert (result.lost, result.doubled) == (0, 0), report
