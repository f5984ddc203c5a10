"""Uploads are judged by their bytes: only PDF, JPEG, PNG and HEIC, not empty, not too large;
the storage port's in-memory twin keeps the PostgreSQL store's put semantics."""

from __future__ import annotations

import struct

import pytest
from servicekit.uploads import (
    Blob,
    BlobConflict,
    ContentType,
    InMemoryBlobStore,
    RejectedUpload,
    RejectionReason,
    Upload,
    UploadPolicy,
    blobs_table_sql,
    safe_filename,
    sniff_content_type,
    validate_upload,
)

PDF = b"%PDF-1.7\n1 0 obj\n<< /Type /Catalog >>\nendobj\ntrailer\n<< /Root 1 0 R >>\n%%EOF\n"
JPEG = (
    b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    + bytes(40)
    + (b"\xff\xd9")
)
JPEG_EXIF = b"\xff\xd8\xff\xe1\x00\x10Exif\x00\x00" + bytes(50)
PNG = (
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x02\x00\x00\x00"
    b"\x90wS\xde"
)
# A Windows executable: MZ header and the DOS stub's message.
EXE = (
    b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00"
    + bytes(100)
    + (b"This program cannot be run in DOS mode.\r\r\n$")
)


def ftyp(major: bytes, *compatible: bytes) -> bytes:
    body = major + bytes(4) + b"".join(compatible)
    return struct.pack(">I", 8 + len(body)) + b"ftyp" + body + bytes(64)


HEIC = ftyp(b"heic", b"mif1", b"heic")
HEIC_GENERIC_BRAND = ftyp(b"mif1", b"mif1", b"heic")


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (PDF, ContentType.PDF),
        (JPEG, ContentType.JPEG),
        (JPEG_EXIF, ContentType.JPEG),
        (PNG, ContentType.PNG),
        (HEIC, ContentType.HEIC),
        (ftyp(b"heix", b"mif1", b"heix"), ContentType.HEIC),
        (ftyp(b"hevc", b"msf1", b"hevc"), ContentType.HEIC),
        (HEIC_GENERIC_BRAND, ContentType.HEIC),
    ],
)
def test_accepted_formats_are_recognised_from_their_bytes(
    content: bytes, expected: ContentType
) -> None:
    assert sniff_content_type(content) is expected
    result = validate_upload("anything.bin", content)
    assert isinstance(result, Upload)
    assert result.content_type is expected
    assert result.size == len(content)


def test_an_exe_renamed_pdf_is_refused_whatever_it_declares() -> None:
    result = validate_upload("rechnung.pdf", EXE, declared_type="application/pdf")
    assert isinstance(result, RejectedUpload)
    assert result.reason is RejectionReason.UNSUPPORTED_TYPE
    assert result.status == 415
    assert "PDF" in result.detail
    assert "nicht unterstützt" in result.detail
    assert result.filename == "rechnung.pdf"


def test_an_exe_with_a_pdf_signature_further_in_is_still_an_exe() -> None:
    assert sniff_content_type(EXE + b"%PDF-1.4\n%%EOF") is None


@pytest.mark.parametrize(
    "content",
    [
        b"hello, this is plain text",
        b"<html><body>not a picture</body></html>",
        b"PK\x03\x04" + bytes(40),  # a zip (docx, xlsx...)
        ftyp(b"isom", b"isom", b"mp41"),  # an mp4 video
        ftyp(b"avif", b"mif1", b"avif"),  # AVIF: HEIF, but not HEIC
        ftyp(b"mif1", b"mif1", b"avif"),
        b"GIF89a" + bytes(20),
    ],
)
def test_other_formats_are_refused(content: bytes) -> None:
    result = validate_upload("foto.jpg", content, declared_type="image/jpeg")
    assert isinstance(result, RejectedUpload)
    assert result.reason is RejectionReason.UNSUPPORTED_TYPE


def test_an_empty_file_is_refused() -> None:
    result = validate_upload("leer.pdf", b"", declared_type="application/pdf")
    assert isinstance(result, RejectedUpload)
    assert result.reason is RejectionReason.EMPTY
    assert result.status == 422
    assert result.detail == "Die Datei ist leer."
    assert result.problem_type == "urn:portal:problem:upload-empty"


def test_the_size_limit_is_configurable_and_inclusive() -> None:
    policy = UploadPolicy(max_bytes=len(PDF))
    assert isinstance(validate_upload("a.pdf", PDF, policy), Upload)
    too_large = validate_upload("a.pdf", PDF + b" ", policy)
    assert isinstance(too_large, RejectedUpload)
    assert too_large.reason is RejectionReason.TOO_LARGE
    assert too_large.status == 413
    assert "zu groß" in too_large.detail


def test_the_default_limit_is_ten_megabytes_and_named_in_the_detail() -> None:
    big = PDF + bytes(10 * 1024 * 1024)
    result = validate_upload("gross.pdf", big)
    assert isinstance(result, RejectedUpload)
    assert "10 MB" in result.detail


def test_a_policy_without_room_is_a_configuration_error() -> None:
    with pytest.raises(ValueError, match="positive"):
        UploadPolicy(max_bytes=0)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\x\\rechnung.pdf", "rechnung.pdf"),
        ("a\x00b\nc.pdf", "abc.pdf"),
        ("", "upload"),
        (None, "upload"),
        (".hidden", "hidden"),
        ("x" * 300, "x" * 200),
    ],
)
def test_file_names_lose_paths_and_control_characters(given: str | None, expected: str) -> None:
    assert safe_filename(given) == expected


async def test_the_in_memory_blob_store_keeps_the_put_semantics() -> None:
    store = InMemoryBlobStore()
    blob = Blob("b-1", ContentType.PDF, PDF)
    await store.put(blob)
    await store.put(Blob("b-1", ContentType.PDF, PDF))  # the same again: a no-op
    with pytest.raises(BlobConflict):
        await store.put(Blob("b-1", ContentType.PDF, PDF + b"x"))
    assert await store.get("b-1") == blob
    await store.delete("b-1")
    assert await store.get("b-1") is None
    await store.delete("b-1")  # deleting what is gone is fine


def test_the_blobs_table_ddl_checks_its_name() -> None:
    assert "CREATE TABLE IF NOT EXISTS attachments_blobs" in blobs_table_sql("attachments_blobs")
    with pytest.raises(ValueError, match="table name"):
        blobs_table_sql("blobs; DROP TABLE x")
