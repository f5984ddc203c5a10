"""Operator accounts (OPS-1): the people who run the platform, not customers.

Operators are a separate kind of account with a separate token audience, so that no
customer route ever accepts an operator's token and the console never accepts a
customer's. Their second factor is mandatory and is a time-based one-time password
(RFC 6238, SHA-1, 6 digits, 30 s steps - what every authenticator app speaks): operators
are few, work at desks and must not depend on the SMS path they may be repairing.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import struct
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import quote

OPERATOR_ROLE = "operator"
TOTP_DIGITS = 6
TOTP_STEP_SECONDS = 30
TOTP_WINDOW = 1  # one step either side: clocks of phones drift


@dataclass
class Operator:
    operator_id: str
    username: str
    username_key: str
    password_hash: str
    totp_secret: str  # base32; stored encrypted
    created_at: datetime
    last_login_at: datetime | None = None
    last_totp_step: int = 0  # a code once used is spent (RFC 6238 section 5.2)
    disabled_at: datetime | None = None


def totp(secret: str, step: int) -> str:
    """The code of time step `step` (RFC 6238 / RFC 4226 dynamic truncation)."""
    key = base64.b32decode(secret.upper() + "=" * (-len(secret) % 8))
    digest = hmac.new(key, struct.pack(">Q", step), hashlib.sha1).digest()
    offset = digest[-1] & 0x0F
    number = struct.unpack(">I", digest[offset : offset + 4])[0] & 0x7FFF_FFFF
    return str(number % 10**TOTP_DIGITS).zfill(TOTP_DIGITS)


def time_step(at: datetime) -> int:
    return int(at.timestamp()) // TOTP_STEP_SECONDS


def matching_step(secret: str, code: str, at: datetime, last_used: int) -> int | None:
    """The time step whose code `code` is, within the window and newer than the last one
    used; None when it matches none (a replayed code matches none)."""
    now = time_step(at)
    for step in range(now - TOTP_WINDOW, now + TOTP_WINDOW + 1):
        if step > last_used and hmac.compare_digest(totp(secret, step), code.strip()):
            return step
    return None


def provisioning_uri(secret: str, username: str, issuer: str = "Portal Operations") -> str:
    """`otpauth://` URI for authenticator apps (as a QR code or typed in)."""
    label = quote(f"{issuer}:{username}")
    return f"otpauth://totp/{label}?secret={secret}&issuer={quote(issuer)}&digits=6&period=30"
