"""NT-5 guard: the last check before any text leaves the notifier. Pure.

Defence in depth; the first line is the whitelist in `plan.py` (only named, non-sensitive
fields enter a template context). This module scans the *final* text and refuses it when

- it contains a German IBAN: `DE` + 20 digits, spaces/dashes allowed between them (no
  checksum needed: a refused false positive is cheaper than a leaked account number);
- it contains any other IBAN-shaped token whose ISO 13616 mod-97 checksum is valid;
- it contains an ICD-10 diagnosis code (`F32.1`) or a diagnosis/findings keyword;
- it contains a password assignment (`Passwort: ...`);
- it contains a value the caller marks as withheld (a sensitive title, a new contact
  address that must not reach the old one, ...), compared case- and space-insensitively.

Findings name the rule, never the matched value, so they are safe to log (OPS-2).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass

# Performance (issue 12): Python's `re` skips ahead to a candidate position only when a
# pattern starts with a literal or a character set - not with a lookbehind or `\b`, and not
# with a cased letter under IGNORECASE; otherwise it runs the whole matcher at every
# position of the text. So every pattern starts with a plain (flag-free) character set that
# holds every character its first element can match (under IGNORECASE: `k` is also the
# Kelvin sign, `i` also `İ` and `ı`), and the boundary checks follow it as lookbehinds of
# two characters: `X(?<![A-Za-z0-9].)` is `(?<![A-Za-z0-9])X` for a one-character `X`.
# Each accepts exactly the texts the straightforward pattern beside it accepted;
# tests/unit/test_nt5_guard_equivalence.py compares them on a large generated corpus.

#: DE + 20 digits; single separators (space, NBSP, dash, dot) allowed between characters.
#: Was `(?<![A-Za-z0-9])D{sep}E(?:{sep}\d){20}(?!\d)` with IGNORECASE.
_SEP = r"[ \u00a0\-.]?"
_IBAN_DE = re.compile(rf"[Dd](?i:(?<![A-Za-z0-9].){_SEP}E(?:{_SEP}\d){{20}}(?!\d))")
#: Any country: 2 letters, 2 check digits, 11-30 alphanumerics, optional single spaces.
#: Was `(?<![A-Za-z0-9])[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}(?![A-Za-z0-9])`: the same
#: matches (start, end and text - each is checksummed).
_IBAN_ANY = re.compile(r"[A-Z](?<![A-Za-z0-9].)[A-Z]\d{2}(?: ?[A-Z0-9]){11,30}(?![A-Za-z0-9])")
#: ICD-10(-GM) codes with their sub-category (F32.1, M54.16, F43.1G). Only ever searched
#: for (is there one?): it starts at the code's dot, a literal the engine skips to, and
#: looks back for the letter and two digits. Was
#: `(?<![A-Za-z0-9])[A-TV-Z]\d{2}\.\d{1,2}[A-Z!+*]?(?![0-9])`.
_ICD10 = re.compile(r"\.(?<=(?<![A-Za-z0-9])[A-TV-Z]\d\d\.)\d{1,2}[A-Z!+*]?(?![0-9])")
#: Was `\b(?:diagnose\w*|diagnosis|befund\w*|icd[- ]?10)\b` with IGNORECASE.
_DIAGNOSIS_WORDS = re.compile(
    r"[BDIbd\u0130\u0131i](?<!\w.)"
    r"(?i:(?<=d)(?:iagnose\w*|iagnosis)|(?<=b)efund\w*|(?<=i)cd[- ]?10)\b"
)
#: Was `\b(?:passwort|kennwort|password|passwd)[ \t]*[:=][ \t]*\S` with IGNORECASE.
_PASSWORD_ASSIGNMENT = re.compile(
    r"[KPkp\u212a](?<!\w.)(?i:(?<=p)(?:asswort|assword|asswd)|(?<=k)ennwort)[ \t]*[:=][ \t]*\S"
)
#: Withheld values shorter than this are not scanned (they would match ordinary words).
MIN_WITHHELD_LENGTH = 4


class SensitiveContentError(Exception):
    """NT-5: a text was refused. `findings` name the rules, never the matched values."""

    def __init__(self, findings: Iterable[str]) -> None:
        self.findings = tuple(sorted(set(findings)))
        super().__init__(f"NT-5 guard refused the text: {', '.join(self.findings)}")


@dataclass(frozen=True, slots=True)
class Finding:
    rule: str
    where: str = "text"

    def __str__(self) -> str:
        return f"{self.rule} in {self.where}"


def _iban_checksum_ok(candidate: str) -> bool:
    compact = candidate.replace(" ", "").upper()
    if not 15 <= len(compact) <= 34:
        return False
    rearranged = compact[4:] + compact[:4]
    digits = "".join(str(int(ch, 36)) for ch in rearranged)
    return int(digits) % 97 == 1


#: Was `https?://\S+` with IGNORECASE (`h` matches only `h` and `H`).
_URL = re.compile(r"[Hh](?i:ttps?://)\S+")


def _fold(text: str) -> str:
    return " ".join(text.split()).casefold()


#: The exempt wording is the same large text for every scan of a renderer: fold it once.
_fold_exempt = functools.lru_cache(maxsize=16)(_fold)


def scan(
    text: str,
    withheld: Iterable[str] = (),
    *,
    where: str = "text",
    exempt: str = "",
) -> list[Finding]:
    """Every NT-5 finding in `text`.

    `exempt` is fixed wording (template text, labels): a withheld value that appears in it
    is an ordinary word ("Dokument"), not data, and is not reported.
    """
    findings: list[Finding] = []
    if _IBAN_DE.search(text):
        findings.append(Finding("iban", where))
    # Tokens inside URLs (e.g. reset tokens) are not IBANs; a German IBAN is caught above.
    without_urls = _URL.sub(" ", text)
    if any(_iban_checksum_ok(m.group(0)) for m in _IBAN_ANY.finditer(without_urls)):
        findings.append(Finding("iban", where))
    if _ICD10.search(text) or _DIAGNOSIS_WORDS.search(text):
        findings.append(Finding("diagnosis", where))
    if _PASSWORD_ASSIGNMENT.search(text):
        findings.append(Finding("password", where))
    withheld = tuple(withheld)
    folded = _fold(text) if withheld else ""
    folded_exempt = _fold_exempt(exempt) if withheld else ""
    for value in withheld:
        needle = _fold(value)
        if len(needle) < MIN_WITHHELD_LENGTH or needle in folded_exempt:
            continue
        if needle in folded:
            findings.append(Finding("withheld_value", where))
            break
    return list(dict.fromkeys(findings))


def ensure_clean(
    parts: Iterable[tuple[str, str]],
    withheld: Iterable[str] = (),
    *,
    exempt: str = "",
) -> None:
    """Raise `SensitiveContentError` if any `(where, text)` part has a finding."""
    withheld = tuple(withheld)
    findings = [
        str(finding)
        for where, text in parts
        for finding in scan(text, withheld, where=where, exempt=exempt)
    ]
    if findings:
        raise SensitiveContentError(findings)
