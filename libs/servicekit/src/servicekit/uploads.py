"""Uploads from customers (claims attachments, secure-message attachments) and where their
bytes are kept.

Validation: an upload is accepted only when it is not empty, not larger than the
configured limit, and its bytes are a PDF, JPEG, PNG or HEIC file. The type is sniffed
from the content with `puremagic` (magic numbers, no native library); the file name and
the declared `Content-Type` are never trusted - an `.exe` renamed `.pdf` is refused. The
outcome is a typed value, never an exception: `Upload` or `RejectedUpload` with a reason
and a German detail for the customer, which a route turns into a 4xx problem (413 for too
large, 415 for a type not accepted, 422 for an empty file: `RejectedUpload.status`).

Storage: `BlobStore` is the port for binary content, so an object store can replace the
database later. `PostgresBlobStore` keeps blobs in a table of the service's schema (create
it in a migration with `blobs_table_sql()`), on the unit of work's connection, so the bytes
and the rows that refer to them commit or roll back together: nothing half-stored.
`InMemoryBlobStore` is its twin for unit tests (an attribute of an in-memory unit of work
rolls back with it).
"""

from __future__ import annotations

import hashlib
import re
import struct
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

import puremagic

from servicekit.db import Connection

DEFAULT_MAX_UPLOAD_BYTES = 10 * 1024 * 1024


class ContentType(StrEnum):
    """The only content types the portal accepts from customers."""

    PDF = "application/pdf"
    JPEG = "image/jpeg"
    PNG = "image/png"
    HEIC = "image/heic"


ACCEPTED_CONTENT_TYPES = frozenset(ContentType)

# What puremagic names the accepted formats; HEIF with an HEVC brand is HEIC.
_SNIFFED = {
    "application/pdf": ContentType.PDF,
    "image/jpeg": ContentType.JPEG,
    "image/pjpeg": ContentType.JPEG,
    "image/png": ContentType.PNG,
    "image/heic": ContentType.HEIC,
    "image/heic-sequence": ContentType.HEIC,
    "image/heif": ContentType.HEIC,
    "image/heif-sequence": ContentType.HEIC,
}
# ISO base media brands of HEIC still images and sequences (ISO/IEC 23008-12). puremagic
# knows HEIC by its major brand; files whose major brand is the generic `mif1`/`msf1` and
# that list an HEVC brand as compatible are HEIC too (some cameras write them).
_HEIC_BRANDS = frozenset({b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs"})
_GENERIC_HEIF_BRANDS = frozenset({b"mif1", b"msf1"})


class RejectionReason(StrEnum):
    EMPTY = "empty"
    TOO_LARGE = "too-large"
    UNSUPPORTED_TYPE = "unsupported-type"


_STATUS = {
    RejectionReason.EMPTY: 422,
    RejectionReason.TOO_LARGE: 413,
    RejectionReason.UNSUPPORTED_TYPE: 415,
}


@dataclass(frozen=True, slots=True)
class Upload:
    """Accepted content: `content_type` is what the bytes are, whatever was declared."""

    filename: str
    content_type: ContentType
    content: bytes

    @property
    def size(self) -> int:
        return len(self.content)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()


@dataclass(frozen=True, slots=True)
class RejectedUpload:
    """Refused content; `detail` is German and meant for the customer."""

    filename: str
    reason: RejectionReason
    detail: str

    @property
    def status(self) -> int:
        """The HTTP status of the problem a route answers with."""
        return _STATUS[self.reason]

    @property
    def problem_type(self) -> str:
        return f"urn:portal:problem:upload-{self.reason.value}"


@dataclass(frozen=True, slots=True)
class UploadPolicy:
    max_bytes: int = DEFAULT_MAX_UPLOAD_BYTES

    def __post_init__(self) -> None:
        if self.max_bytes <= 0:
            raise ValueError("max_bytes must be positive")


def sniff_content_type(content: bytes) -> ContentType | None:
    """The accepted type these bytes are, judged by their content alone; None otherwise.

    Among puremagic's matches, the most confident decides: bytes that look more like
    something else than like an accepted type are refused."""
    if not content:
        return None
    try:
        matches = puremagic.magic_string(content)
    except (puremagic.PureError, ValueError):
        matches = []
    if matches:
        best = max(m.confidence for m in matches)
        for match in matches:
            if match.confidence == best and match.mime_type in _SNIFFED:
                return _SNIFFED[match.mime_type]
        if any(m.confidence == best and m.mime_type for m in matches):
            return None
    return ContentType.HEIC if _is_generic_heif_with_hevc(content) else None


def _is_generic_heif_with_hevc(content: bytes) -> bool:
    """An ISO BMFF `ftyp` box first, major brand mif1/msf1, an HEVC brand compatible."""
    if len(content) < 16 or content[4:8] != b"ftyp":
        return False
    (box_size,) = struct.unpack(">I", content[:4])
    if box_size < 16 or box_size > len(content) or box_size % 4:
        return False
    major = content[8:12]
    compatible = {content[i : i + 4] for i in range(16, box_size, 4)}
    return major in _GENERIC_HEIF_BRANDS and bool(compatible & _HEIC_BRANDS)


_UNSAFE_NAME = re.compile(r"[\x00-\x1f\x7f/\\]")


def safe_filename(filename: str | None, fallback: str = "upload") -> str:
    """The base name without path parts or control characters, at most 200 characters."""
    name = (filename or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = _UNSAFE_NAME.sub("", name).strip().lstrip(".")
    return name[:200] or fallback


def validate_upload(
    filename: str | None,
    content: bytes,
    policy: UploadPolicy | None = None,
    declared_type: str | None = None,
) -> Upload | RejectedUpload:
    """Accept or refuse an upload by its bytes. `declared_type` (the part's Content-Type)
    is deliberately ignored: it is the caller's claim, not evidence."""
    del declared_type
    policy = policy or UploadPolicy()
    name = safe_filename(filename)
    if not content:
        return RejectedUpload(name, RejectionReason.EMPTY, "Die Datei ist leer.")
    if len(content) > policy.max_bytes:
        limit = _megabytes(policy.max_bytes)
        return RejectedUpload(
            name,
            RejectionReason.TOO_LARGE,
            f"Die Datei ist zu groß. Erlaubt sind höchstens {limit}.",
        )
    kind = sniff_content_type(content)
    if kind is None:
        return RejectedUpload(
            name,
            RejectionReason.UNSUPPORTED_TYPE,
            "Dieses Dateiformat wird nicht unterstützt. Bitte laden Sie eine PDF-, JPEG-, "
            "PNG- oder HEIC-Datei hoch.",
        )
    return Upload(name, kind, content)


def _megabytes(size: int) -> str:
    if size % (1024 * 1024) == 0:
        return f"{size // (1024 * 1024)} MB"
    if size >= 1024:
        return f"{size / (1024 * 1024):.1f} MB".replace(".", ",")
    return f"{size} Byte"


# --- storage ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Blob:
    blob_id: str
    content_type: str
    content: bytes

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()


class BlobConflict(Exception):
    """A blob with this id is stored already, with other content."""


class BlobStore(Protocol):
    """Binary content by id, inside the caller's transaction (PostgreSQL) or not (an object
    store: then write the blob before the rows that refer to it, and let a sweeper remove
    blobs no row refers to)."""

    async def put(self, blob: Blob) -> None:
        """Store it; the same id with the same bytes again is a no-op, other bytes
        `BlobConflict`."""
        ...

    async def get(self, blob_id: str) -> Blob | None: ...

    async def delete(self, blob_id: str) -> None: ...


_TABLE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def _checked_table(table: str) -> str:
    if not _TABLE_NAME.fullmatch(table):
        raise ValueError(f"not a valid table name: {table!r}")
    return table


def blobs_table_sql(table: str = "blobs") -> str:
    """DDL for a service migration: `await conn.execute(blobs_table_sql())`, or paste it."""
    table = _checked_table(table)
    return (
        f"CREATE TABLE IF NOT EXISTS {table} (\n"
        "    blob_id text PRIMARY KEY,\n"
        "    content_type text NOT NULL,\n"
        "    size bigint NOT NULL CHECK (size >= 0),\n"
        "    sha256 text NOT NULL,\n"
        "    content bytea NOT NULL,\n"
        "    stored_at timestamptz NOT NULL DEFAULT now()\n"
        ");\n"
        f"ALTER TABLE {table} ALTER COLUMN content SET STORAGE EXTERNAL;\n"
    )


class PostgresBlobStore:
    """Blobs in a table of the service's schema, on the unit of work's connection.
    `content` is stored EXTERNAL (out of line, uncompressed: what is kept is usually
    compressed or encrypted already)."""

    def __init__(self, conn: Connection, table: str = "blobs") -> None:
        self._conn = conn
        self._table = _checked_table(table)

    async def put(self, blob: Blob) -> None:
        digest = blob.sha256
        inserted = await self._conn.fetchval(
            f"INSERT INTO {self._table} (blob_id, content_type, size, sha256, content)"  # noqa: S608 - checked name
            " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (blob_id) DO NOTHING RETURNING true",
            blob.blob_id,
            blob.content_type,
            len(blob.content),
            digest,
            blob.content,
        )
        if inserted:
            return
        existing = await self._conn.fetchval(
            f"SELECT sha256 FROM {self._table} WHERE blob_id = $1",  # noqa: S608
            blob.blob_id,
        )
        if existing != digest:
            raise BlobConflict(blob.blob_id)

    async def get(self, blob_id: str) -> Blob | None:
        row = await self._conn.fetchrow(
            f"SELECT content_type, content FROM {self._table} WHERE blob_id = $1",  # noqa: S608
            blob_id,
        )
        if row is None:
            return None
        return Blob(blob_id, row["content_type"], bytes(row["content"]))

    async def delete(self, blob_id: str) -> None:
        await self._conn.execute(
            f"DELETE FROM {self._table} WHERE blob_id = $1",  # noqa: S608
            blob_id,
        )


class InMemoryBlobStore:
    """The PostgreSQL store's twin for unit tests, with the same put semantics."""

    def __init__(self) -> None:
        self.blobs: dict[str, Blob] = {}

    async def put(self, blob: Blob) -> None:
        existing = self.blobs.get(blob.blob_id)
        if existing is None:
            self.blobs[blob.blob_id] = blob
        elif existing.sha256 != blob.sha256:
            raise BlobConflict(blob.blob_id)

    async def get(self, blob_id: str) -> Blob | None:
        return self.blobs.get(blob_id)

    async def delete(self, blob_id: str) -> None:
        self.blobs.pop(blob_id, None)
