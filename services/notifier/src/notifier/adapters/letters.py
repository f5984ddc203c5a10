"""Letters as PDF (NT-1, ID-3), laid out after DIN 5008 form B for a DL window envelope.

Positions (mm from the top-left corner of an A4 page):

- address field 20..105 x 45..90 (window of a DL/C6-5 envelope): the return-address line
  (Rücksendeangabe, 7 pt) at the foot of the 17.7 mm endorsement zone, the recipient's
  address from 62.7 mm, text starting at 25 mm from the left edge;
- information block from x = 125 mm, y = 50 mm: date (DD.MM.YYYY, Europe/Berlin) and our
  reference (the first 8 characters of the message key, so the print shop and operators
  can find the job);
- subject line (Betreff, bold, no "Betreff:" label) at 98.5 mm; body below, ragged right;
  left margin 25 mm, right margin 20 mm;
- fold marks at 105 and 210 mm, punch mark at 148.5 mm; page numbers from the second page.

Fonts: by default the PDF core font Helvetica in windows-1252 (all German letters, €, „“);
characters outside it are transliterated (Ł -> L, č -> c), which is acceptable for the
postal address but not perfect for names. Set `LetterSettings.font_path` to a Unicode TTF
(e.g. DejaVuSans) in production to print every name exactly.

The PDF is deterministic for the same message (creation date = the letter date), so a
re-rendered retry produces the same bytes.
"""

from __future__ import annotations

import io
import unicodedata
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from pathlib import Path

from contracts_schemas.common import PostalAddress
from fpdf import FPDF
from fpdf.enums import XPos, YPos

from notifier.domain.messages import RenderedMessage

PAGE_WIDTH = 210.0
LEFT = 25.0
RIGHT_MARGIN = 20.0
TEXT_WIDTH = PAGE_WIDTH - LEFT - RIGHT_MARGIN
RETURN_LINE_Y = 57.0
ADDRESS_Y = 62.7
ADDRESS_LINE_HEIGHT = 4.4
ADDRESS_MAX_LINES = 6
INFO_X = 125.0
INFO_Y = 50.0
SUBJECT_Y = 98.5
FOLD_MARKS = (105.0, 210.0)
PUNCH_MARK = 148.5
BODY_LINE_HEIGHT = 5.0

COUNTRY_NAMES = {
    "AT": "ÖSTERREICH",
    "BE": "BELGIEN",
    "CH": "SCHWEIZ",
    "CZ": "TSCHECHIEN",
    "DK": "DÄNEMARK",
    "ES": "SPANIEN",
    "FR": "FRANKREICH",
    "GB": "VEREINIGTES KÖNIGREICH",
    "IT": "ITALIEN",
    "LU": "LUXEMBURG",
    "NL": "NIEDERLANDE",
    "PL": "POLEN",
    "PT": "PORTUGAL",
    "TR": "TÜRKEI",
}

_TRANSLITERATION = str.maketrans(
    {"Ł": "L", "ł": "l", "Đ": "D", "đ": "d", "ı": "i", "Ħ": "H", "ħ": "h"}
)


@dataclass(frozen=True, slots=True)
class LetterSettings:
    sender_lines: tuple[str, ...] = (
        "Allianz Versicherungs-AG",
        "Königinstraße 28",
        "80802 München",
    )
    return_address: str = "Allianz Versicherungs-AG · Königinstraße 28 · 80802 München"
    contact_lines: tuple[str, ...] = ("Kundenservice: 0800 4520104", "www.allianz.de")
    footer: str = "Allianz Versicherungs-AG · Königinstraße 28 · 80802 München"
    font_path: Path | None = None


@dataclass(frozen=True, slots=True)
class LetterPdf:
    content: bytes
    pages: int


def address_lines(address: PostalAddress) -> list[str]:
    """DIN 5008 address block: name, street, postcode + city, country (abroad only)."""
    lines = [address.recipient, address.street, f"{address.postal_code} {address.city}"]
    if address.country != "DE":
        lines.append(COUNTRY_NAMES.get(address.country, address.country))
    return [" ".join(line.split()) for line in lines]


def _to_cp1252(text: str) -> str:
    """Text the core fonts can print: windows-1252, transliterating the rest."""
    out: list[str] = []
    for ch in unicodedata.normalize("NFC", text.translate(_TRANSLITERATION)):
        try:
            ch.encode("cp1252")
            out.append(ch)
        except UnicodeEncodeError:
            base = "".join(
                c for c in unicodedata.normalize("NFKD", ch) if not unicodedata.combining(c)
            )
            try:
                base.encode("cp1252")
                out.append(base or "?")
            except UnicodeEncodeError:
                out.append("?")
    return "".join(out)


class _LetterDocument(FPDF):
    def __init__(self, settings: LetterSettings) -> None:
        super().__init__(orientation="P", unit="mm", format="A4")
        self.letter_settings = settings
        self.unicode_font = settings.font_path is not None
        if settings.font_path is not None:
            self.add_font("Letter", "", str(settings.font_path))
            self.add_font("Letter", "B", str(settings.font_path))
            self.letter_family = "Letter"
        else:
            self.core_fonts_encoding = "windows-1252"
            self.letter_family = "Helvetica"

    def text_of(self, text: str) -> str:
        return text if self.unicode_font else _to_cp1252(text)

    def use_font(self, size: float, bold: bool = False) -> None:
        self.set_font(self.letter_family, "B" if bold else "", size)

    def footer(self) -> None:
        self.set_y(-18)
        self.use_font(7)
        self.set_text_color(90, 90, 90)
        self.set_x(LEFT)
        self.cell(TEXT_WIDTH / 2, 4, self.text_of(self.letter_settings.footer))
        if self.pages_count > 1:
            self.cell(TEXT_WIDTH / 2, 4, f"Seite {self.page_no()} von {{nb}}", align="R")
        self.set_text_color(0, 0, 0)

    def marks(self) -> None:
        self.set_line_width(0.2)
        for y in (*FOLD_MARKS, PUNCH_MARK):
            self.line(3, y, 8 if y != PUNCH_MARK else 10, y)


def render_letter_pdf(
    rendered: RenderedMessage,
    address: PostalAddress,
    letter_date: date,
    *,
    reference: str,
    settings: LetterSettings | None = None,
) -> LetterPdf:
    """Lay `rendered` (subject + body) out as a DIN 5008 letter to `address`."""
    settings = settings or LetterSettings()
    pdf = _LetterDocument(settings)
    pdf.set_margins(LEFT, 20, RIGHT_MARGIN)
    pdf.set_auto_page_break(auto=True, margin=25)
    pdf.alias_nb_pages()
    pdf.set_creation_date(datetime.combine(letter_date, time(12), tzinfo=UTC))
    pdf.set_title(pdf.text_of(rendered.subject))
    pdf.set_author(pdf.text_of(settings.sender_lines[0] if settings.sender_lines else ""))
    pdf.add_page()
    pdf.marks()

    # Letterhead (top right).
    pdf.set_xy(INFO_X, 15)
    for i, line in enumerate(settings.sender_lines):
        pdf.use_font(11 if i == 0 else 9, bold=i == 0)
        pdf.set_x(INFO_X)
        pdf.cell(65, 5 if i == 0 else 4.2, pdf.text_of(line), new_x=XPos.LMARGIN, new_y=YPos.NEXT)

    # Address field: return line and recipient.
    pdf.use_font(7)
    pdf.set_xy(LEFT, RETURN_LINE_Y)
    pdf.cell(80, 3.5, pdf.text_of(settings.return_address), border="B")
    pdf.use_font(10)
    pdf.set_xy(LEFT, ADDRESS_Y)
    for line in address_lines(address)[:ADDRESS_MAX_LINES]:
        pdf.set_x(LEFT)
        pdf.cell(80, ADDRESS_LINE_HEIGHT, pdf.text_of(line), new_x=XPos.LMARGIN, new_y=YPos.NEXT)

    # Information block.
    pdf.set_xy(INFO_X, INFO_Y)
    info = [
        *settings.contact_lines,
        "",
        f"Unser Zeichen: {reference}",
        f"Datum: {letter_date:%d.%m.%Y}",
    ]
    pdf.use_font(9)
    for line in info:
        pdf.set_x(INFO_X)
        pdf.cell(65, 4.2, pdf.text_of(line), new_x=XPos.LMARGIN, new_y=YPos.NEXT)

    # Subject and body.
    pdf.set_xy(LEFT, SUBJECT_Y)
    pdf.use_font(11, bold=True)
    pdf.multi_cell(TEXT_WIDTH, BODY_LINE_HEIGHT + 0.5, pdf.text_of(rendered.subject))
    pdf.ln(BODY_LINE_HEIGHT * 1.5)
    pdf.use_font(11)
    pdf.set_x(LEFT)
    pdf.multi_cell(TEXT_WIDTH, BODY_LINE_HEIGHT, pdf.text_of(rendered.text.strip()), align="L")
    content = bytes(pdf.output())
    return LetterPdf(content=content, pages=pdf.pages_count)


#: Magic numbers of what can be enclosed in a letter (judged by the bytes, not the label).
_PDF_MAGIC = b"%PDF-"
_IMAGE_MAGIC = {b"\xff\xd8\xff": "JPEG", b"\x89PNG\r\n\x1a\n": "PNG"}
IMAGE_MARGIN = 15.0


class NotPrintable(ValueError):
    """An enclosure the print shop cannot print (neither PDF nor JPEG/PNG)."""


def enclosure_pdf(data: bytes, letter_date: date) -> bytes:
    """DOC-4: the enclosure of a document letter as a PDF: a PDF as it is, a JPEG or PNG
    scaled onto an A4 page; anything else (HEIC, ...) raises `NotPrintable`."""
    if data.startswith(_PDF_MAGIC):
        return data
    if not any(data.startswith(magic) for magic in _IMAGE_MAGIC):
        raise NotPrintable("enclosure is neither PDF, JPEG nor PNG")
    pdf = FPDF(orientation="P", unit="mm", format="A4")
    pdf.set_creation_date(datetime.combine(letter_date, time(12), tzinfo=UTC))
    pdf.set_margins(IMAGE_MARGIN, IMAGE_MARGIN, IMAGE_MARGIN)
    pdf.set_auto_page_break(auto=False)
    pdf.add_page()
    width, height = pdf.epw, pdf.eph
    try:
        pdf.image(
            io.BytesIO(data),
            x=IMAGE_MARGIN,
            y=IMAGE_MARGIN,
            w=width,
            h=height,
            keep_aspect_ratio=True,
        )
    except Exception as error:  # Pillow/fpdf2 raise many types for broken images
        raise NotPrintable(f"enclosure image unreadable: {type(error).__name__}") from error
    return bytes(pdf.output())
