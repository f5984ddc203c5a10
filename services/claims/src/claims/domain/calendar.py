"""German working days (CL-3): Monday to Friday, except public holidays from the maintained
`holidays` package - nationwide ones, or those of one federal state when configured."""

from __future__ import annotations

from datetime import date, timedelta
from functools import lru_cache

import holidays


class WorkingDays:
    def __init__(self, federal_state: str | None = None) -> None:
        self.federal_state = federal_state
        self._holidays = _german_holidays(federal_state)

    def is_working_day(self, day: date) -> bool:
        return day.weekday() < 5 and day not in self._holidays

    def add(self, start: date, days: int) -> date:
        """The `days`-th working day after `start` (`start` itself when `days` is 0)."""
        day = start
        remaining = days
        while remaining > 0:
            day += timedelta(days=1)
            if self.is_working_day(day):
                remaining -= 1
        return day

    def between(self, start: date, end: date) -> int:
        """Working days in (start, end]: 0 when `end` is not after `start`."""
        count = 0
        day = start
        while day < end:
            day += timedelta(days=1)
            if self.is_working_day(day):
                count += 1
        return count


@lru_cache(maxsize=32)
def _german_holidays(federal_state: str | None) -> holidays.HolidayBase:
    # Without a subdivision the package lists the nationwide public holidays only.
    return holidays.country_holidays("DE", subdiv=federal_state)
