"""The documents service's print route: where a document letter's enclosure comes from
(DOC-4, NT-1).

`GET {base_url}/internal/documents/{document_id}/print` with the notifier's service
credentials (HTTP Basic, as the system `PORTAL_DOCUMENTS_SYSTEM`, default `notifier`; the
documents service must grant that system the operation `documents`). It answers the stored
bytes of a document whose delivery is `post`.

Called by the letter channel in the delivery worker, at send time - never in the intake
transaction - so a failed fetch is a failed attempt, retried with backoff like any send:

| answer | classification |
|--------|----------------|
| 200 | the enclosure (at most `max_bytes`, else permanent) |
| 404 | permanent: no such document, or not one to print |
| 401, 403 | retryable: our credentials or grant are wrong (configuration, not the message) |
| 408, 429, 5xx, timeouts, connection errors | retryable (`Retry-After` honoured) |
| other 4xx | permanent |

Errors carry the status and a classification only, never content.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol
from urllib.parse import quote

import httpx
from servicekit.auth import basic_authorization

from notifier.adapters.channel import PermanentSendError, RetryableSendError


@dataclass(frozen=True, slots=True)
class FetchedDocument:
    data: bytes
    content_type: str


class DocumentSource(Protocol):
    """Fetches the bytes of a document that goes by post."""

    async def fetch(self, document_id: str) -> FetchedDocument: ...


@dataclass(frozen=True, slots=True)
class DocumentsApiSettings:
    base_url: str
    system: str
    secret: str
    timeout: float = 30.0
    max_bytes: int = 25 * 1024 * 1024


class HttpDocumentSource:
    def __init__(self, http: httpx.AsyncClient, settings: DocumentsApiSettings) -> None:
        self._http = http
        self.settings = settings
        self._authorization = basic_authorization(settings.system, settings.secret)

    async def fetch(self, document_id: str) -> FetchedDocument:
        settings = self.settings
        url = (
            f"{settings.base_url.rstrip('/')}/internal/documents/"
            f"{quote(document_id, safe='')}/print"
        )
        try:
            async with self._http.stream(
                "GET", url, headers={"Authorization": self._authorization}, timeout=settings.timeout
            ) as response:
                _raise_for(response)
                data = bytearray()
                async for chunk in response.aiter_bytes():
                    data += chunk
                    if len(data) > settings.max_bytes:
                        raise PermanentSendError("documents: enclosure larger than allowed")
                content_type = response.headers.get("content-type", "application/octet-stream")
        except httpx.TimeoutException as error:
            raise RetryableSendError("documents: timeout") from error
        except httpx.HTTPError as error:
            raise RetryableSendError(f"documents: {type(error).__name__}") from error
        if not data:
            raise PermanentSendError("documents: empty document")
        return FetchedDocument(bytes(data), content_type.split(";")[0].strip().lower())


def _raise_for(response: httpx.Response) -> None:
    status = response.status_code
    if status == 200:
        return
    if status == 404:
        raise PermanentSendError("documents: 404 (unknown or not for post)")
    if status in (401, 403):
        raise RetryableSendError(f"documents: {status} (credentials or grant of the notifier)")
    if status in (408, 429) or status >= 500:
        raise RetryableSendError(f"documents: {status}", retry_after=_retry_after(response))
    raise PermanentSendError(f"documents: {status}")


def _retry_after(response: httpx.Response) -> timedelta | None:
    value = response.headers.get("retry-after", "")
    return timedelta(seconds=int(value)) if value.isdigit() else None
