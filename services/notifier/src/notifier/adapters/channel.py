"""The port every delivery channel implements (NT-1), and its error classification.

A channel sends one rendered message and returns the provider's reference (SMTP
Message-ID, SMS provider message id, print-job reference). It raises

- `RetryableSendError` when trying again later may succeed (timeouts, connection errors,
  5xx, throttling, the provider's own temporary failures), optionally with the provider's
  `retry_after`;
- `PermanentSendError` when the same message will never be accepted (invalid recipient,
  rejected content, ...); the delivery goes to the dead-letter store (NT-4).

Error messages carry a classification and the provider's status only, never message text
or addresses: they are stored as `Delivery.last_error` and shown to operators.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Protocol, runtime_checkable

from notifier.domain.messages import ChannelKind, OutgoingMessage, RenderedMessage


class SendError(Exception):
    """A channel could not send a message."""


class RetryableSendError(SendError):
    def __init__(self, reason: str, *, retry_after: timedelta | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class PermanentSendError(SendError):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class MessageExpiredError(PermanentSendError):
    """NT-4 defence in depth: a channel was handed a message past its `not_after`."""

    def __init__(self) -> None:
        super().__init__("expired: not_after has passed")


@runtime_checkable
class Channel(Protocol):
    """Sends one message on one channel; returns the provider reference."""

    async def send(self, message: OutgoingMessage, rendered: RenderedMessage) -> str: ...


def refuse_if_expired(message: OutgoingMessage, now: datetime) -> None:
    """Raise `MessageExpiredError` if `message` may no longer be sent (NT-4)."""
    if message.not_after is not None and now >= message.not_after:
        raise MessageExpiredError


class ChannelRouter:
    """Dispatches a message to the channel configured for its `ChannelKind`."""

    def __init__(self, channels: Mapping[ChannelKind, Channel]) -> None:
        self._channels = dict(channels)

    async def send(self, message: OutgoingMessage, rendered: RenderedMessage) -> str:
        channel = self._channels.get(message.channel)
        if channel is None:
            # Configuration, not the message: retry so that a fixed deployment sends it.
            raise RetryableSendError(f"no {message.channel.value} channel configured")
        return await channel.send(message, rendered)

    async def close(self) -> None:
        """Release what the channels hold open (the SMTP session pool)."""
        for channel in self._channels.values():
            close = getattr(channel, "close", None)
            if close is not None:
                await close()
