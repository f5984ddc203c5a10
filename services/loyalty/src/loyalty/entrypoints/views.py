"""JSON shapes of the loyalty API (LOY-10: the statement explains every figure)."""

from __future__ import annotations

import dataclasses
from datetime import date, datetime
from fractions import Fraction
from typing import Any

from loyalty.domain.ledger import Ledger


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if type(value).__name__.endswith("Reason"):
            fields = {"kind": type(value).__name__.removesuffix("Reason").lower(), **fields}
        return fields
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, Fraction):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def statement(ledger: Ledger) -> dict[str, Any]:
    """Balance, lots with expiry, the next expiry, pending credits and the full history."""
    body: dict[str, Any] = _plain(ledger)
    body["lots"] = [lot for lot in body["lots"] if lot["remaining"] > 0]
    body["history"] = list(reversed(body["history"]))
    return body
