"""`python -m chaos`: the whole platform, every service twice, under faults (issue 13).

The chaos run starts an isolated platform (its own Kafka, PostgreSQL and Redis from the
launcher), two instances of every service and of the gateway, the notifier's stand-ins
(SMTP sink, SMS provider, print queue), drives a bounded load through the real entry
points, injects faults at seeded random moments, waits for the end conditions and checks
the issue's invariants (`chaos.invariants`). `tests/chaos/test_chaos_short.py` is the
short version inside `make test`.

The stand-ins and the customer-journey helpers are the end-to-end tests' own
(tests/e2e_harness.py, services/notifier/tests/notifier_servers.py): pytest finds them on
its `pythonpath`; `python -m chaos` puts the same folders on sys.path here.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
for _folder in (REPO / "tests", REPO / "services/notifier/tests"):
    if str(_folder) not in sys.path:
        sys.path.append(str(_folder))
