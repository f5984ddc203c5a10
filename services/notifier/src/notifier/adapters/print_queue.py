"""Hand letters to the print shop (NT-1): the `PrintQueue` port, a directory queue, and the
letter `Channel`.

Directory queue contract (what the print shop reads):

- `<message_key>.pdf`  the letter, A4, DIN 5008 form B;
- `<message_key>.enclosure-<n>.pdf` (document letters, DOC-4) the enclosed documents, to
  be printed after the letter and put into the same envelope;
- `<message_key>.json` the manifest (`PrintJobManifest`): file name, SHA-256 and page count
  of the PDF, the enclosures (file name and SHA-256, in order), the recipient's address
  lines, the message kind and key, creation time.

All are written atomically (temporary file in the same directory, fsync, `os.replace`,
fsync of the directory), the PDFs first and the manifest last: **a manifest's presence
means its PDFs are complete**; the print shop picks up manifests only and ignores `.tmp` files.
Submitting the same message again is recognised by its manifest and not rewritten; once the
print shop has moved a job away, it de-duplicates on `message_key` (the manifest carries it).
The remaining crash window - the manifest was renamed but the notifier died before it
recorded SENT - ends in a resubmission that finds the manifest (or the print shop's
de-duplication) and is harmless.

HTTP variant (a port, not implemented here): `POST {base_url}/print-jobs` as
`multipart/form-data` with a `manifest` part (the same JSON) and a `document` part
(`application/pdf`), header `Idempotency-Key: <message_key>`; `201`/`200` = accepted with
`{"job_id": ...}` (the provider reference), `409` = already have this key (success), `429`
and `5xx` retryable, other `4xx` permanent. Implement `PrintQueue.submit` with an injected
`httpx.AsyncClient` when the print shop offers it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Protocol
from uuid import uuid4

from pydantic import AwareDatetime, BaseModel, ConfigDict
from servicekit.clock import Clock, SystemClock, berlin_date

from notifier.adapters.channel import PermanentSendError, RetryableSendError, refuse_if_expired
from notifier.adapters.documents_http import DocumentSource
from notifier.adapters.letters import (
    LetterSettings,
    NotPrintable,
    address_lines,
    enclosure_pdf,
    render_letter_pdf,
)
from notifier.adapters.render import guard_rendered
from notifier.domain.messages import ChannelKind, OutgoingMessage, RenderedMessage

MANIFEST_SCHEMA = "notifier.print-job.v1"


class EnclosureEntry(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    file: str
    sha256: str


class PrintJobManifest(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_name: str = MANIFEST_SCHEMA
    message_key: str
    kind: str
    file: str
    sha256: str
    pages: int
    recipient: list[str]
    country: str
    created_at: AwareDatetime
    #: DOC-4: documents enclosed with the letter, in print order.
    enclosures: list[EnclosureEntry] = []


@dataclass(frozen=True, slots=True)
class PrintJob:
    message_key: str
    kind: str
    pdf: bytes
    pages: int
    recipient_lines: list[str]
    country: str
    created_at: datetime
    #: PDFs enclosed with the letter (a document letter's document), in print order.
    enclosures: tuple[bytes, ...] = ()


class PrintQueue(Protocol):
    """Where letters go; returns the print shop's job reference. Idempotent per key."""

    async def submit(self, job: PrintJob) -> str: ...


class DirectoryPrintQueue:
    """A directory shared with the print shop (NFS/SFTP drop, or a synced bucket)."""

    def __init__(self, root: Path, *, file_mode: int = 0o640) -> None:
        self.root = root
        self.file_mode = file_mode

    async def submit(self, job: PrintJob) -> str:
        return await asyncio.to_thread(self._submit, job)

    def _submit(self, job: PrintJob) -> str:
        self.root.mkdir(parents=True, exist_ok=True)
        pdf_name = f"{job.message_key}.pdf"
        manifest_path = self.root / f"{job.message_key}.json"
        reference = f"print-dir:{job.message_key}"
        if manifest_path.exists():
            return reference  # already queued: a resend is recognised (NT-4)
        enclosures = [
            EnclosureEntry(
                file=f"{job.message_key}.enclosure-{n}.pdf",
                sha256=hashlib.sha256(content).hexdigest(),
            )
            for n, content in enumerate(job.enclosures, start=1)
        ]
        manifest = PrintJobManifest(
            message_key=job.message_key,
            kind=job.kind,
            file=pdf_name,
            sha256=hashlib.sha256(job.pdf).hexdigest(),
            pages=job.pages,
            recipient=job.recipient_lines,
            country=job.country,
            created_at=job.created_at,
            enclosures=enclosures,
        )
        for entry, content in zip(enclosures, job.enclosures, strict=True):
            self._write_atomically(self.root / entry.file, content)
        self._write_atomically(self.root / pdf_name, job.pdf)
        self._write_atomically(manifest_path, manifest.model_dump_json(indent=2).encode())
        return reference

    def _write_atomically(self, target: Path, content: bytes) -> None:
        temporary = target.with_name(f".{target.name}.{uuid4().hex}.tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, self.file_mode)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(content)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                temporary.unlink()
            raise
        _fsync_directory(target.parent)


def _fsync_directory(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # not supported on this platform/filesystem
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class LetterChannel:
    """`Channel` for letters: renders the DIN 5008 PDF and submits it to a `PrintQueue`.

    A document letter (DOC-4, `message.document_id`) first fetches its enclosure from
    `documents` (the documents service's print route) - here, at send time in the delivery
    worker, so a failed fetch is a failed attempt, retried with backoff like a failed send.
    """

    def __init__(
        self,
        queue: PrintQueue,
        settings: LetterSettings | None = None,
        *,
        clock: Clock | None = None,
        documents: DocumentSource | None = None,
    ) -> None:
        self._queue = queue
        self.settings = settings or LetterSettings()
        self._clock = clock or SystemClock()
        self._documents = documents

    async def send(self, message: OutgoingMessage, rendered: RenderedMessage) -> str:
        now = self._clock.now()
        refuse_if_expired(message, now)
        if message.channel is not ChannelKind.LETTER or message.postal_address is None:
            raise PermanentSendError("letter without a postal address")
        guard_rendered(rendered)
        address = message.postal_address
        letter_date = berlin_date(message.occurred_at)
        enclosures = await self._enclosures(message, letter_date)
        pdf = render_letter_pdf(
            rendered,
            address,
            letter_date,
            reference=message.message_key[:8],
            settings=self.settings,
        )
        job = PrintJob(
            message_key=message.message_key,
            kind=message.kind.value,
            pdf=pdf.content,
            pages=pdf.pages,
            recipient_lines=address_lines(address),
            country=address.country,
            created_at=now,
            enclosures=enclosures,
        )
        try:
            return await self._queue.submit(job)
        except OSError as error:
            raise RetryableSendError(f"print queue: {type(error).__name__}") from error

    async def _enclosures(self, message: OutgoingMessage, letter_date: date) -> tuple[bytes, ...]:
        if message.document_id is None:
            return ()
        if self._documents is None:
            # Configuration, not the message: retried, like a channel that is not configured.
            raise RetryableSendError("no documents service configured for enclosures")
        fetched = await self._documents.fetch(message.document_id)
        try:
            return (await asyncio.to_thread(enclosure_pdf, fetched.data, letter_date),)
        except NotPrintable as error:
            raise PermanentSendError(f"documents: {error}") from error
