"""`python -m chaos` (`make chaos`): the full chaos run; exit code 1 when an invariant fails.

    python -m chaos                        # 3 brokers, 300 s of load, every process killed once
    python -m chaos --seed 1234            # the same faults in the same order again
    python -m chaos --load-seconds 90 --kills 4 --pauses 1 --broker-restarts 1
    python -m chaos --shared               # the platform of PORTAL_* (no broker/db faults)

Set CHAOS_KEEP_LOGS=1 to keep the services' logs (their folder is printed).
"""

from __future__ import annotations

import argparse
import logging
import sys

from chaos.run import Config, run, table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chaos", description=__doc__.split("\n")[0])
    defaults = Config()
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--load-seconds", type=float, default=defaults.load_seconds)
    parser.add_argument("--concurrency", type=int, default=defaults.concurrency)
    parser.add_argument("--brokers", type=int, choices=(1, 3), default=defaults.brokers)
    parser.add_argument("--kills", type=int, help="instances killed (default: all 14 once)")
    parser.add_argument("--pauses", type=int, default=defaults.pauses)
    parser.add_argument("--broker-restarts", type=int, default=defaults.broker_restarts)
    parser.add_argument("--postgres-restarts", type=int, default=defaults.postgres_restarts)
    parser.add_argument("--shared", action="store_true", help="no isolated platform")
    args = parser.parse_args(argv)
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    config = Config(
        seed=args.seed, load_seconds=args.load_seconds, concurrency=args.concurrency,
        brokers=args.brokers, kills=args.kills, pauses=args.pauses,
        broker_restarts=args.broker_restarts, postgres_restarts=args.postgres_restarts,
        isolated=not args.shared, log=lambda line: print(line, flush=True),
    )  # fmt: skip
    result = run(config)
    print(table(result), flush=True)
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
