"""IBAN validation and masking (CT-4).

Validation follows ISO 13616: a two-letter country code, two check digits and a
country-specific BBAN; the length is fixed per country (SWIFT IBAN registry); the
whole number satisfies ISO 7064 MOD 97-10 (rearranged number mod 97 == 1). Input is
normalised first: every whitespace character removed, letters upper-cased.

The full IBAN never leaves the contracts service in an event, e-mail or SMS (NT-5):
`Iban.masked` keeps the country code, the check digits and the last two characters,
printed in groups of four like the paper form: `DE89 **** **** **** **** 00`.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from dataclasses import dataclass

from contracts.domain.errors import CommandRejected, ReasonCode

#: IBAN length per country code (SWIFT IBAN registry). Overseas territories use the
#: code of their country (French territories FR, Åland FI, Jersey/Guernsey/Isle of Man GB).
IBAN_LENGTHS: Mapping[str, int] = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22,
    "BH": 22, "BI": 27, "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24,
    "DE": 22, "DJ": 27, "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18,
    "FK": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27,
    "GT": 28, "HN": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26,
    "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20,
    "LU": 20, "LV": 21, "LY": 25, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MN": 20,
    "MR": 27, "MT": 31, "MU": 30, "NI": 28, "NL": 18, "NO": 15, "OM": 23, "PK": 24,
    "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "RU": 33, "SA": 24,
    "SC": 31, "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25,
    "SV": 28, "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
    "YE": 30,
}  # fmt: skip

#: Countries in the SEPA scheme: premiums are collected by SEPA direct debit, so only
#: accounts there can be used. EU member states, EEA states, and the non-EU members.
SEPA_COUNTRIES: frozenset[str] = frozenset(
    {
        # EU
        "AT", "BE", "BG", "CY", "CZ", "DE", "DK", "EE", "ES", "FI", "FR", "GR", "HR",
        "HU", "IE", "IT", "LT", "LU", "LV", "MT", "NL", "PL", "PT", "RO", "SE", "SI",
        "SK",
        # EEA
        "IS", "LI", "NO",
        # other scheme members
        "AD", "CH", "GB", "GI", "MC", "SM", "VA",
    }
)  # fmt: skip

_ALPHANUMERIC = frozenset(string.ascii_uppercase + string.digits)
_MASK_KEEP_HEAD = 4  # country code and check digits
_MASK_KEEP_TAIL = 2


class InvalidIban(CommandRejected):
    """The customer typed an IBAN that cannot be right; `detail` says why, in German."""


def normalise_iban(raw: str) -> str:
    """Remove all whitespace and upper-case: ` de89 3704 0044 ` -> `DE8937040044`."""
    return "".join(raw.split()).upper()


def _mod97(iban: str) -> int:
    rearranged = iban[4:] + iban[:4]
    digits = "".join(str(int(char, 36)) for char in rearranged)
    return int(digits) % 97


def _group4(text: str) -> str:
    return " ".join(text[i : i + 4] for i in range(0, len(text), 4))


@dataclass(frozen=True, repr=False)
class Iban:
    """A validated, normalised IBAN. Build it with `parse_iban` (or `Iban.parse`)."""

    value: str

    @classmethod
    def parse(cls, raw: str) -> Iban:
        return parse_iban(raw)

    @property
    def country(self) -> str:
        return self.value[:2]

    @property
    def is_sepa(self) -> bool:
        return self.country in SEPA_COUNTRIES

    @property
    def formatted(self) -> str:
        """Print form in groups of four: `DE89 3704 0044 0532 0130 00`."""
        return _group4(self.value)

    @property
    def masked(self) -> str:
        """`DE89 **** **** **** **** 00`: safe for events, views and notifications."""
        hidden = len(self.value) - _MASK_KEEP_HEAD - _MASK_KEEP_TAIL
        return _group4(self.value[:_MASK_KEEP_HEAD] + "*" * hidden + self.value[-_MASK_KEEP_TAIL:])

    def __repr__(self) -> str:  # keep full IBANs out of logs and tracebacks
        return f"Iban({self.masked!r})"

    __str__ = __repr__


def parse_iban(raw: str) -> Iban:
    """Normalise and validate an IBAN typed by a customer; raise `InvalidIban` if wrong."""
    value = normalise_iban(raw)
    if not value or not set(value) <= _ALPHANUMERIC:
        raise InvalidIban(
            ReasonCode.IBAN_INVALID_CHARACTERS,
            "Die IBAN darf nur Buchstaben und Ziffern enthalten. Bitte prüfen Sie Ihre Eingabe.",
        )
    country = value[:2]
    expected_length = IBAN_LENGTHS.get(country)
    if expected_length is None:
        raise InvalidIban(
            ReasonCode.IBAN_UNKNOWN_COUNTRY,
            "Die IBAN muss mit einem gültigen Ländercode beginnen, zum Beispiel DE.",
        )
    if len(value) != expected_length:
        raise InvalidIban(
            ReasonCode.IBAN_WRONG_LENGTH,
            f"Eine IBAN mit dem Ländercode {country} hat {expected_length} Stellen, "
            f"Ihre Eingabe hat {len(value)}. Bitte prüfen Sie Ihre Eingabe.",
        )
    check_digits = value[2:4]
    # 00, 01 and 99 are never issued (ISO 13616); 01 and 98 are congruent mod 97.
    if not check_digits.isdigit() or not 2 <= int(check_digits) <= 98 or _mod97(value) != 1:
        raise InvalidIban(
            ReasonCode.IBAN_WRONG_CHECKSUM,
            "Die IBAN ist ungültig: Die Prüfziffer passt nicht. "
            "Bitte prüfen Sie, ob Sie sich vertippt haben.",
        )
    return Iban(value)
