"""Per-recipient rate limits (NT-6). Pure over a list of past send times.

A *bucket* is (channel, rate class, recipient). Codes and credential e-mails (login code,
mTAN, password reset, username reminder, activation letter) have their own, stricter
bucket, so that a flood of code requests cannot starve claim or document notices, and
notices cannot block a login.

Each rule is a set of sliding windows ("at most N sends in any period P"); a send is
allowed when every window has room. What the caller counts as past sends: every message
of the bucket that was SENT or is SENDING (an attempt in flight counts).

Defaults (documented in the README; tune per environment):

| bucket          | windows                   | over the limit |
|-----------------|---------------------------|----------------|
| e-mail, notice  | 10 / 1 h, 40 / 24 h       | defer          |
| e-mail, code    | 5 / 1 h, 10 / 24 h        | drop           |
| SMS, code       | 5 / 15 min, 15 / 24 h     | drop           |
| SMS, notice     | 5 / 1 h, 15 / 24 h        | defer          |
| letter, code    | 3 / 30 days               | drop           |
| letter, notice  | 5 / 30 days               | defer          |
| letter, document| 20 / 24 h, 100 / 30 days  | defer          |

*Defer*: a legitimate notice waits until the window has room (it still expires at its
`not_after`). *Drop*: a code that cannot go out now is useless later, and a flood of code
requests is an attack (SMS pumping, mail bombing) or a loop; the message becomes
SUPPRESSED, visible to operators.

Documents that go by post (DOC-4) have a bucket of their own: they are the insurer's
correspondence (policies, bills, written-form notices), not portal notices, so the letter
notice limit must not hold them back until they expire; the generous limit only catches an
upstream loop.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from notifier.domain.messages import ChannelKind, MessageKind, OutgoingMessage


class OverLimit(StrEnum):
    DEFER = "defer"
    DROP = "drop"


class RateClass(StrEnum):
    CODE = "code"
    NOTICE = "notice"
    DOCUMENT = "document"


@dataclass(frozen=True, slots=True)
class Window:
    limit: int
    period: timedelta

    def __post_init__(self) -> None:
        if self.limit < 1 or self.period <= timedelta(0):
            raise ValueError("a window needs limit >= 1 and a positive period")


@dataclass(frozen=True, slots=True)
class RateRule:
    windows: tuple[Window, ...]
    on_exceed: OverLimit


@dataclass(frozen=True, slots=True)
class RateDecision:
    allowed: bool
    #: Earliest instant at which the send would be allowed (when not allowed).
    retry_at: datetime | None = None
    action: OverLimit | None = None


ALLOWED = RateDecision(allowed=True)


def _default_rules() -> dict[tuple[ChannelKind, RateClass], RateRule]:
    hour, day = timedelta(hours=1), timedelta(days=1)
    return {
        (ChannelKind.EMAIL, RateClass.NOTICE): RateRule(
            (Window(10, hour), Window(40, day)), OverLimit.DEFER
        ),
        (ChannelKind.EMAIL, RateClass.CODE): RateRule(
            (Window(5, hour), Window(10, day)), OverLimit.DROP
        ),
        (ChannelKind.SMS, RateClass.CODE): RateRule(
            (Window(5, timedelta(minutes=15)), Window(15, day)), OverLimit.DROP
        ),
        (ChannelKind.SMS, RateClass.NOTICE): RateRule(
            (Window(5, hour), Window(15, day)), OverLimit.DEFER
        ),
        (ChannelKind.LETTER, RateClass.CODE): RateRule(
            (Window(3, timedelta(days=30)),), OverLimit.DROP
        ),
        (ChannelKind.LETTER, RateClass.NOTICE): RateRule(
            (Window(5, timedelta(days=30)),), OverLimit.DEFER
        ),
        (ChannelKind.LETTER, RateClass.DOCUMENT): RateRule(
            (Window(20, day), Window(100, timedelta(days=30))), OverLimit.DEFER
        ),
    }


@dataclass(frozen=True)
class RateLimits:
    rules: Mapping[tuple[ChannelKind, RateClass], RateRule] = field(default_factory=_default_rules)

    def rule_for(self, message: OutgoingMessage) -> RateRule:
        return self.rules[(message.channel, rate_class(message))]


DEFAULT_RATE_LIMITS = RateLimits()


def rate_class(message: OutgoingMessage) -> RateClass:
    if message.kind is MessageKind.DOCUMENT_LETTER:
        return RateClass.DOCUMENT
    return RateClass.CODE if message.is_code else RateClass.NOTICE


def bucket_of(message: OutgoingMessage) -> str:
    """Stable bucket id; the recipient is hashed so the id holds no personal data."""
    digest = hashlib.sha256(message.recipient.encode()).hexdigest()[:32]
    return f"{message.channel.value}:{rate_class(message).value}:{digest}"


def check(rule: RateRule, sent_at: Iterable[datetime], now: datetime) -> RateDecision:
    """NT-6: may one more message go to this bucket at `now`, given its past send times?"""
    times = sorted(sent_at)
    retry_at: datetime | None = None
    for window in rule.windows:
        recent = [t for t in times if t > now - window.period]
        if len(recent) >= window.limit:
            # The oldest sends must leave the window until only limit-1 remain in it.
            frees_at = recent[len(recent) - window.limit] + window.period
            retry_at = frees_at if retry_at is None else max(retry_at, frees_at)
    if retry_at is None:
        return ALLOWED
    return RateDecision(allowed=False, retry_at=retry_at, action=rule.on_exceed)
