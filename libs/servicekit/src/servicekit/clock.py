"""The only door to the wall clock. Domain code receives a Clock; tests pass a FixedClock."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Protocol
from zoneinfo import ZoneInfo

BERLIN = ZoneInfo("Europe/Berlin")


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class FixedClock:
    """A clock that stands still until moved; for tests and 'as of' operator runs."""

    def __init__(self, at: datetime) -> None:
        if at.tzinfo is None:
            raise ValueError("FixedClock needs an aware datetime")
        self._at = at

    def now(self) -> datetime:
        return self._at

    def set(self, at: datetime) -> None:
        self._at = at

    def advance(self, by: timedelta) -> None:
        self._at += by


class FileClock:
    """Business time read from a file when it exists, else the system clock.

    For test and staging environments only (PORTAL_CLOCK_FILE): end-to-end tests move the
    platform's business time by rewriting the file. Production never sets it.
    """

    def __init__(self, path: Path) -> None:
        self._path = path

    def now(self) -> datetime:
        try:
            text = self._path.read_text().strip()
        except FileNotFoundError:
            return datetime.now(UTC)
        at = datetime.fromisoformat(text)
        if at.tzinfo is None:
            raise ValueError(f"{self._path} must hold an aware ISO datetime, got {text!r}")
        return at


def berlin_date(at: datetime) -> date:
    """The Europe/Berlin calendar date of an instant (the business calendar)."""
    return at.astimezone(BERLIN).date()


def start_of_berlin_day(day: date) -> datetime:
    """00:00 Europe/Berlin on `day`, as an aware UTC datetime."""
    return datetime(day.year, day.month, day.day, tzinfo=BERLIN).astimezone(UTC)
