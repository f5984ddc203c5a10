"""Print a customer token signed with the development key of `make run` (never production).

python -m servicekit.devtoken CUSTOMER_ID [--sms]
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from servicekit.auth import mint_token

DEV_KEY = Path(".local/run/dev-key.json")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("customer_id")
    parser.add_argument("--sms", action="store_true", help="as after a login with SMS code")
    args = parser.parse_args()
    key = json.loads(DEV_KEY.read_text())
    methods = ("pwd", "sms") if args.sms else ("pwd",)
    expires = datetime.now(UTC) + timedelta(hours=8)
    print(mint_token(key, args.customer_id, "portal", expires, methods=methods))


if __name__ == "__main__":
    main()
