"""The port through which contracts has identity send and check mTANs (ID-6, CT-4).

`IdentityMtanService` calls identity's internal API with contracts' own service
credentials (HTTP Basic as the system `PORTAL_IDENTITY_SYSTEM`, default `contracts`;
identity grants that system the operation `mtan`):

- `POST {base}/internal/identity/mtans` `{customer_id, purpose, reference}`: identity
  sends the SMS and answers `{mtan_id, purpose, expires_at}`.
- `POST {base}/internal/identity/mtans/{mtan_id}/consume` `{customer_id, reference}`:
  what the mTAN confirms `{customer_id, purpose, reference, confirmed, confirmed_at}`; a
  confirmed one for exactly this reference is used up by the call (single use).

What identity answers becomes:
- 200: the challenge / the confirmation;
- 404 on consume (unknown mTAN, another customer's): no confirmation (`mtan_required`);
- on request, a problem whose `reason` concerns the customer - 401 `unauthenticated`,
  403 `second_factor_required`, 423 `factor_locked`, 429 `sms_rate_limited`:
  `MtanRefused` with identity's status and German detail;
- anything else - 401/403 without such a reason (our credentials or grant), 5xx,
  timeouts, connection errors, unreadable bodies: `MtanUnavailable` (the API answers 503).

A transaction of contracts that is retried after identity consumed the mTAN (a
serialization conflict, the process killed before it committed, the client's retry landing
on another instance) asks identity again: identity answers the same confirmation to the
same customer and reference while it is fresh, so nothing is kept in this process. That
cannot make a second change: the change is keyed by the mTAN id.

Nothing here logs codes, IBANs or personal data: only statuses and mTAN ids.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol
from urllib.parse import quote

import httpx
from servicekit.auth import basic_authorization
from servicekit.logging import get_logger

from contracts.domain.mtan import (
    MtanChallenge,
    MtanConfirmation,
    MtanRefused,
    MtanUnavailable,
)

log = get_logger(__name__)

#: identity's problem `reason`s that concern the customer, not the call (passed on).
CUSTOMER_REASONS = frozenset(
    {"unauthenticated", "second_factor_required", "factor_locked", "sms_rate_limited"}
)


class MtanPort(Protocol):
    async def request(self, customer_id: str, purpose: str, reference: str) -> MtanChallenge:
        """Have identity send an mTAN for this change; raises MtanRefused/MtanUnavailable."""
        ...

    async def confirmation(
        self, customer_id: str, mtan_id: str, reference: str
    ) -> MtanConfirmation | None:
        """What identity says about the mTAN (using it up when it confirms exactly this
        reference); None for an unknown mTAN; raises MtanUnavailable."""
        ...


class NoMtanService:
    """Without identity configured: nothing is ever confirmed, no mTAN can be sent."""

    async def request(self, customer_id: str, purpose: str, reference: str) -> MtanChallenge:
        raise MtanUnavailable("no mTAN service configured (PORTAL_IDENTITY_BASE_URL)")

    async def confirmation(
        self, customer_id: str, mtan_id: str, reference: str
    ) -> MtanConfirmation | None:
        return None


@dataclass(frozen=True)
class IdentityApiSettings:
    base_url: str
    system: str
    secret: str
    timeout: float = 5.0


class IdentityMtanService:
    def __init__(self, http: httpx.AsyncClient, settings: IdentityApiSettings) -> None:
        self._http = http
        self._settings = settings
        self._authorization = basic_authorization(settings.system, settings.secret)

    async def request(self, customer_id: str, purpose: str, reference: str) -> MtanChallenge:
        body = {"customer_id": customer_id, "purpose": purpose, "reference": reference}
        response = await self._post("/internal/identity/mtans", body)
        if response.status_code == 200:
            data = _json(response)
            try:
                return MtanChallenge(
                    str(data["mtan_id"]), str(data["purpose"]),
                    datetime.fromisoformat(str(data["expires_at"])),
                )  # fmt: skip
            except (KeyError, ValueError) as error:
                raise self._unavailable("request", response.status_code) from error
        problem = _json(response, strict=False)
        reason = str(problem.get("reason", ""))
        if reason in CUSTOMER_REASONS and response.status_code in (401, 403, 423, 429):
            retry = problem.get("retry_after")
            raise MtanRefused(
                response.status_code, reason, str(problem.get("detail") or ""),
                retry if isinstance(retry, int) else None,
            )  # fmt: skip
        raise self._unavailable("request", response.status_code)

    async def confirmation(
        self, customer_id: str, mtan_id: str, reference: str
    ) -> MtanConfirmation | None:
        path = f"/internal/identity/mtans/{quote(mtan_id, safe='')}/consume"
        response = await self._post(path, {"customer_id": customer_id, "reference": reference})
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise self._unavailable("consume", response.status_code)
        data = _json(response)
        try:
            at = data.get("confirmed_at")
            confirmation = MtanConfirmation(
                customer_id=str(data["customer_id"]), purpose=str(data["purpose"]),
                reference=str(data["reference"]), confirmed=data["confirmed"] is True,
                confirmed_at=datetime.fromisoformat(at) if isinstance(at, str) else None,
            )  # fmt: skip
        except (KeyError, ValueError) as error:
            raise self._unavailable("consume", response.status_code) from error
        return confirmation

    async def _post(self, path: str, body: dict[str, str]) -> httpx.Response:
        url = self._settings.base_url.rstrip("/") + path
        try:
            return await self._http.post(
                url, json=body, headers={"Authorization": self._authorization},
                timeout=self._settings.timeout,
            )  # fmt: skip
        except httpx.TimeoutException as error:
            log.error("identity_mtan_unavailable", path=path, error="timeout")
            raise MtanUnavailable("identity: timeout") from error
        except httpx.HTTPError as error:
            log.error("identity_mtan_unavailable", path=path, error=type(error).__name__)
            raise MtanUnavailable(f"identity: {type(error).__name__}") from error

    def _unavailable(self, call: str, status: int) -> MtanUnavailable:
        log.error("identity_mtan_unavailable", call=call, status=status)
        return MtanUnavailable(f"identity answered {status} to the mTAN {call}")


def _json(response: httpx.Response, strict: bool = True) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        data = None
    if isinstance(data, dict):
        return data
    if strict:
        raise MtanUnavailable(f"identity answered {response.status_code} without a JSON object")
    return {}
