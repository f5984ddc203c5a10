"""JSON shapes of the loyalty API (LOY-10: the statement explains every figure).

Every dataclass of the ledger becomes an object of its fields (a reason also gets its
`kind`: `premium`, `loyalty`, `eilbonus`, `campaign`, `redemption`, `expiry`,
`forfeit`); tuples become arrays, dates and datetimes ISO 8601, fractions "n/d" text.
A statement of 10,000 facts has tens of thousands of such objects, so the encoder works
out each class's fields once, lets the json module's C encoder walk everything else, and
keeps the text of history entries and lots, which never change, and of a customer's
lists of them, which mostly stay the same (`statement_json`).
"""

from __future__ import annotations

import dataclasses
import json
from collections import OrderedDict
from datetime import date, datetime
from fractions import Fraction
from typing import Any

from loyalty.domain.ledger import HistoryEntry, Ledger, Lot

_Fields = tuple[str, ...]
_SHAPES: dict[type, tuple[str | None, _Fields]] = {}


def _shape(cls: type) -> tuple[str | None, _Fields]:
    shape = _SHAPES.get(cls)
    if shape is None:
        name = cls.__name__
        kind = name.removesuffix("Reason").lower() if name.endswith("Reason") else None
        shape = (kind, tuple(f.name for f in dataclasses.fields(cls)))
        _SHAPES[cls] = shape
    return shape


def _default(value: Any) -> Any:
    """What the json encoder cannot write itself: our dataclasses, dates, fractions."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Fraction):
        return str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        kind, names = _shape(type(value))
        body = {name: getattr(value, name) for name in names}
        return body if kind is None else {"kind": kind, **body}
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _json(value: Any) -> str:
    return json.dumps(value, default=_default, separators=(",", ":"))


class _Texts:
    """The JSON text of immutable ledger parts (history entries, lots), by identity: a
    ledger folded on from a snapshot shares them with the one before. Each is kept with
    its text, so its id cannot be reused by another object while it is here."""

    def __init__(self, limit: int = 200_000) -> None:
        self._limit = limit
        self._texts: dict[int, tuple[object, str]] = {}

    def __call__(self, value: object) -> str:
        known = self._texts.get(id(value))
        if known is not None and known[0] is value:
            return known[1]
        text = _json(value)
        if len(self._texts) >= self._limit:
            self._texts.clear()
        self._texts[id(value)] = (value, text)
        return text


_texts = _Texts()


class _Listed:
    """The encoded lists of the customers' latest statements: the lots (kept while the
    next statement has equal lots) and the history (kept for the entries a later
    statement begins with - folded on from the same snapshot, it shares them). Whatever
    is not the same is encoded again, entry by entry, so the body is always the text of
    the ledger's values; at most `limit` bytes are kept, the least recent go first."""

    def __init__(self, limit: int = 16_000_000) -> None:
        self._limit = limit
        self._size = 0
        self._kept: OrderedDict[
            str, tuple[tuple[Lot, ...], bytes, tuple[HistoryEntry, ...], bytes]
        ] = OrderedDict()

    def __call__(self, ledger: Ledger) -> tuple[bytes, bytes]:
        kept = self._kept.pop(ledger.customer_id, None)
        lots, history = ledger.lots, ledger.history
        if kept is not None and kept[0] == lots:
            lots_text = kept[1]
        else:
            lots_text = ",".join(_texts(lot) for lot in lots if lot.remaining > 0).encode()
        if kept is not None and history[: len(kept[2])] == kept[2]:
            newer = ",".join(_texts(entry) for entry in reversed(history[len(kept[2]) :]))
            history_text = b",".join(t for t in (newer.encode(), kept[3]) if t)
        else:
            history_text = ",".join(_texts(entry) for entry in reversed(history)).encode()
        if kept is not None:
            self._size -= len(kept[1]) + len(kept[3])
        self._kept[ledger.customer_id] = (lots, lots_text, history, history_text)
        self._size += len(lots_text) + len(history_text)
        while self._size > self._limit and self._kept:
            _, (_, gone_lots, _, gone_history) = self._kept.popitem(last=False)
            self._size -= len(gone_lots) + len(gone_history)
        return lots_text, history_text


_listed = _Listed()


def statement_json(ledger: Ledger) -> bytes:
    """Balance, lots with points left and their expiry, the next expiry, pending credits
    and the full history (newest first), encoded."""
    _kind, names = _shape(Ledger)
    head = _json({name: getattr(ledger, name) for name in names if name not in _LISTED})
    lots, history = _listed(ledger)
    parts = (head[:-1].encode(), b',"lots":[', lots, b'],"history":[', history, b"]}")
    return b"".join(parts)


_LISTED = frozenset({"lots", "history"})


def statement(ledger: Ledger) -> dict[str, Any]:
    """The statement as plain JSON values."""
    plain: dict[str, Any] = json.loads(statement_json(ledger))
    return plain
