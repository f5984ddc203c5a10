"""Render an `OutgoingMessage` into its final German text (NT-5), with the NT-5 guard.

Templates live in `notifier/templates/<channel>/<kind>.txt` (Jinja2, `StrictUndefined`: a
missing context value is an error, never an empty string). A template's `subject` block is
the subject line; the rest is the plain-text body. E-mails also get an HTML alternative: the
plain text laid into `email/_layout.html`, which is autoescaped, so names and titles can
never inject markup. Dates are shown as DD.MM.YYYY in Europe/Berlin, money as `1.234,56 €`.

Every rendered text passes `guard_rendered` before it is returned: the scanner of
`domain.guard` (IBANs, diagnoses, password assignments) plus the values the caller marks as
withheld (`plan.withheld_values(event)`). Withheld values that are also fixed wording of
the templates (e.g. a sensitive document titled "Dokument") are ordinary words, not data.

The channels guard the stored text once more right before sending (defence in depth,
without withheld values): a full scan of whatever is about to go out, whoever rendered it.
"""

from __future__ import annotations

import html as html_lib
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import date, datetime
from typing import Any

from jinja2 import (
    BaseLoader,
    Environment,
    PackageLoader,
    StrictUndefined,
    Template,
    nodes,
    select_autoescape,
)
from markupsafe import Markup, escape
from servicekit.clock import BERLIN, berlin_date

from notifier.domain.guard import ensure_clean
from notifier.domain.messages import ChannelKind, OutgoingMessage, RenderedMessage

CLAIM_STATUS_LABELS: Mapping[str, str] = {
    "reported": "Eingegangen",
    "in_review": "In Bearbeitung",
    "documents_requested": "Unterlagen angefordert",
    "assessment": "In Begutachtung",
    "approved": "Leistung bewilligt",
    "paid": "Zahlung veranlasst",
    "rejected": "Leistung abgelehnt",
    "closed": "Abgeschlossen",
}
CLAIM_STATUS_FALLBACK = "Aktualisiert"

MTAN_PURPOSE_LABELS: Mapping[str, str] = {
    "password": "die Änderung Ihres Passworts",
    "email": "die Änderung Ihrer E-Mail-Adresse",
    "mobile": "die Änderung Ihrer Mobilfunknummer",
    "bank_details": "die Änderung Ihrer Bankverbindung",
    "disable_2fa": "das Ausschalten der 2-Faktor-Authentifizierung",
    "cancel_account": "die Kündigung Ihres Zugangs",
    "other": "eine sicherheitsrelevante Änderung",
}


@dataclass(frozen=True, slots=True)
class RenderSettings:
    """Wording shared by all templates; configured per environment."""

    portal_name: str = "Meine Allianz"
    portal_url: str = "https://www.allianz.de/meine-allianz/"
    service_phone: str = "0800 4520104"
    service_hours: str = "montags bis freitags von 8 bis 20 Uhr"
    signature: str = "Ihre Allianz"


class RenderError(Exception):
    """A template could not be rendered (unknown template, missing context value)."""


# ---------------------------------------------------------------- formatting filters


def _as_date(value: date | datetime | str) -> date:
    if isinstance(value, str):
        value = date.fromisoformat(value) if len(value) == 10 else datetime.fromisoformat(value)
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("naive datetime in a template context")
        return berlin_date(value)
    return value


def _as_berlin(value: datetime | str) -> datetime:
    instant = datetime.fromisoformat(value) if isinstance(value, str) else value
    if instant.tzinfo is None:
        raise ValueError("naive datetime in a template context")
    return instant.astimezone(BERLIN)


def de_date(value: date | datetime | str) -> str:
    """31.03.2026 (a datetime is first converted to Europe/Berlin)."""
    return _as_date(value).strftime("%d.%m.%Y")


def de_time(value: datetime | str) -> str:
    """14:35 (Europe/Berlin)."""
    return _as_berlin(value).strftime("%H:%M")


def de_datetime(value: datetime | str) -> str:
    """31.03.2026 um 14:35 Uhr (Europe/Berlin)."""
    instant = _as_berlin(value)
    return f"{instant:%d.%m.%Y} um {instant:%H:%M} Uhr"


def de_int(value: int) -> str:
    """1.500"""
    return f"{value:,}".replace(",", ".")


def eur(cents: int) -> str:
    """Integer cents as German EUR: 123456 -> `1.234,56 €`."""
    sign = "-" if cents < 0 else ""
    euros, rest = divmod(abs(cents), 100)
    return f"{sign}{de_int(euros)},{rest:02d} €"


_LINKABLE = re.compile(r"https?://[^\s<>\"']+|[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_TRAILING = ".,:;!?)]"
_LINK = Markup('<a href="{0}" rel="noopener">{0}</a>')  # format() escapes the value
_MAILTO = Markup('<a href="mailto:{0}">{0}</a>')


def linkify(line: str) -> Markup:
    """`line` escaped, its URLs and e-mail addresses as links - what Jinja's `urlize`
    makes of the templates' lines (`rel="noopener"`, `mailto:`), at a fraction of its
    cost (it tries a dozen patterns on every word)."""
    if "@" not in line and "://" not in line:
        return escape(line)  # nothing to link: most lines
    out: list[Markup] = []
    at = 0
    for found in _LINKABLE.finditer(line):
        target = found.group(0).rstrip(_TRAILING)
        out.append(escape(line[at : found.start()]))
        if "@" in target and "://" not in target:
            out.append(_MAILTO.format(target))
        else:
            out.append(_LINK.format(target))
        at = found.start() + len(target)
    out.append(escape(line[at:]))
    return Markup("").join(out)


def claim_status(value: str) -> str:
    return CLAIM_STATUS_LABELS.get(value, CLAIM_STATUS_FALLBACK)


def mtan_purpose(value: str) -> str:
    return MTAN_PURPOSE_LABELS.get(value, MTAN_PURPOSE_LABELS["other"])


FILTERS: Mapping[str, Any] = {
    "de_date": de_date,
    "de_time": de_time,
    "de_datetime": de_datetime,
    "de_int": de_int,
    "eur": eur,
    "claim_status": claim_status,
    "mtan_purpose": mtan_purpose,
    "linkify": linkify,
}

# ---------------------------------------------------------------------- the renderer

_BLANK_RUNS = re.compile(r"\n{3,}")
_TAGS = re.compile(r"<[^>]+>")
_SIGNATURE_DELIMITER = "--"
_BREAK = Markup("<br>")


def _tidy(text: str) -> str:
    lines = [line.rstrip() for line in text.strip().splitlines()]
    return _BLANK_RUNS.sub("\n\n", "\n".join(lines)).strip() + "\n"


def _single_line(text: str) -> str:
    return " ".join(text.split())


def _paragraphs(text: str) -> list[Markup]:
    """The HTML of each paragraph's lines: escaped, linked, joined by `<br>`."""
    return [
        _BREAK.join([linkify(line) for line in block.splitlines()])
        for block in text.strip().split("\n\n")
        if block.strip()
    ]


def guard_rendered(
    rendered: RenderedMessage, withheld: Iterable[str] = (), *, exempt: str = ""
) -> None:
    """NT-5: raise `SensitiveContentError` if any part of `rendered` leaks."""
    parts = [("subject", rendered.subject), ("body", rendered.text)]
    if rendered.html is not None:
        visible = html_lib.unescape(_TAGS.sub(" ", rendered.html))
        parts.append(("html", visible))
        parts.append(("html_source", rendered.html))
    ensure_clean(parts, withheld, exempt=exempt)


class Renderer:
    """Renders messages with the package's templates (or `loader`, for tests)."""

    def __init__(
        self, settings: RenderSettings | None = None, *, loader: BaseLoader | None = None
    ) -> None:
        self.settings = settings or RenderSettings()
        self._env = Environment(
            loader=loader or PackageLoader("notifier", "templates"),
            autoescape=select_autoescape(
                enabled_extensions=("html", "htm", "xml"), default_for_string=False, default=False
            ),
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            auto_reload=False,
        )
        self._env.filters.update(FILTERS)
        self._env.globals.update(asdict(self.settings))
        self._fixed_text = self._collect_fixed_text()

    def render(self, message: OutgoingMessage, *, withheld: Iterable[str] = ()) -> RenderedMessage:
        """Final (subject, text, html) of `message`; raises `SensitiveContentError` (NT-5)."""
        try:
            template = self._env.get_template(message.template)
            subject = _single_line(self._render_block(template, "subject", message.context))
            text = _tidy(template.render(message.context))
            html = self._html(subject, text) if message.channel is ChannelKind.EMAIL else None
        except Exception as error:  # jinja2 raises many types; keep the message out of it
            raise RenderError(f"cannot render {message.template}: {type(error).__name__}") from (
                error
            )
        if message.channel is ChannelKind.EMAIL:
            text = text.replace(f"\n{_SIGNATURE_DELIMITER}\n", f"\n{_SIGNATURE_DELIMITER} \n")
        rendered = RenderedMessage(subject=subject, text=text, html=html)
        guard_rendered(rendered, withheld, exempt=self._fixed_text)
        return rendered

    def _render_block(self, template: Template, block: str, context: Mapping[str, Any]) -> str:
        render_block = template.blocks.get(block)
        if render_block is None:
            return ""
        return "".join(render_block(template.new_context(dict(context))))

    def _html(self, subject: str, text: str) -> str:
        body, _, footer = text.partition(f"\n{_SIGNATURE_DELIMITER}\n")
        layout = self._env.get_template("email/_layout.html")
        return layout.render(
            subject=subject, paragraphs=_paragraphs(body), footer=_paragraphs(footer)
        )

    def _collect_fixed_text(self) -> str:
        """All literal template text, labels and settings: the notifier's own wording."""
        pieces: list[str] = [*asdict(self.settings).values()]
        pieces += [*CLAIM_STATUS_LABELS.values(), CLAIM_STATUS_FALLBACK]
        pieces += MTAN_PURPOSE_LABELS.values()
        pieces.append(_BREAK)  # the layout's line break, written by `_paragraphs`
        loader = self._env.loader
        assert loader is not None
        for name in self._env.list_templates():
            source, _, _ = loader.get_source(self._env, name)
            tree = self._env.parse(source)
            pieces += [data.data for data in tree.find_all(nodes.TemplateData)]
            pieces += [
                const.value for const in tree.find_all(nodes.Const) if isinstance(const.value, str)
            ]
        return "\n".join(pieces)
