"""NT-5: the guard's fast patterns accept exactly what its straightforward patterns did.

The guard's regular expressions were rewritten so that Python's `re` can skip ahead to
candidate positions (issue 12: each started with a lookbehind or `\\b`, or a cased letter
under IGNORECASE, so the whole matcher ran at every position of every text). A rewrite
that found one leak fewer would be a leak, one that found one more a refused message: the
old patterns are kept here, verbatim, as the reference, and both are run on a large
generated corpus - the scanner's known positives and negatives, real rendered e-mails,
random mutations of both, and hypothesis' texts over the characters that matter (the
separators, the letters with unusual case folds: Kelvin sign, long s, dotted and dotless
i). Compared: every rule's verdict, the IBAN candidates' exact matches (each is
checksummed), the URL removal, and `scan`'s findings.
"""

from __future__ import annotations

import html
import random
import re
from collections.abc import Iterable, Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from notifier.adapters.render import _TAGS
from notifier.domain import guard
from notifier.domain.plan import plan_messages

# ----------------------------------------------------------- the reference: the old patterns

_SEP = r"[ \u00a0\-.]?"
OLD_IBAN_DE = re.compile(rf"(?<![A-Za-z0-9])D{_SEP}E(?:{_SEP}\d){{20}}(?!\d)", re.IGNORECASE)
OLD_IBAN_ANY = re.compile(r"(?<![A-Za-z0-9])[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}(?![A-Za-z0-9])")
OLD_ICD10 = re.compile(r"(?<![A-Za-z0-9])[A-TV-Z]\d{2}\.\d{1,2}[A-Z!+*]?(?![0-9])")
OLD_DIAGNOSIS_WORDS = re.compile(
    r"\b(?:diagnose\w*|diagnosis|befund\w*|icd[- ]?10)\b", re.IGNORECASE
)
OLD_PASSWORD_ASSIGNMENT = re.compile(
    r"\b(?:passwort|kennwort|password|passwd)[ \t]*[:=][ \t]*\S", re.IGNORECASE
)
OLD_URL = re.compile(r"https?://\S+", re.IGNORECASE)


def old_rules(text: str) -> list[str]:
    """The rule part of the old `scan` (withheld values are unchanged code)."""
    rules = []
    if OLD_IBAN_DE.search(text):
        rules.append("iban")
    without_urls = OLD_URL.sub(" ", text)
    if any(guard._iban_checksum_ok(m.group(0)) for m in OLD_IBAN_ANY.finditer(without_urls)):
        rules.append("iban")
    if OLD_ICD10.search(text) or OLD_DIAGNOSIS_WORDS.search(text):
        rules.append("diagnosis")
    if OLD_PASSWORD_ASSIGNMENT.search(text):
        rules.append("password")
    return list(dict.fromkeys(rules))


def assert_same_language(text: str) -> None:
    """Old and new agree on `text`, rule by rule and in `scan`."""
    found = {
        "iban_de": (OLD_IBAN_DE, guard._IBAN_DE),
        "icd10": (OLD_ICD10, guard._ICD10),
        "diagnosis_words": (OLD_DIAGNOSIS_WORDS, guard._DIAGNOSIS_WORDS),
        "password": (OLD_PASSWORD_ASSIGNMENT, guard._PASSWORD_ASSIGNMENT),
    }
    for rule, (old, new) in found.items():
        assert bool(old.search(text)) == bool(new.search(text)), (rule, text)
    old_candidates = [(m.span(), m.group(0)) for m in OLD_IBAN_ANY.finditer(text)]
    assert [(m.span(), m.group(0)) for m in guard._IBAN_ANY.finditer(text)] == old_candidates
    assert guard._URL.sub(" ", text) == OLD_URL.sub(" ", text), text
    assert [f.rule for f in guard.scan(text)] == old_rules(text), text


# ------------------------------------------------------------------------------ the corpus

#: The scanner's known positives and negatives (test_nt5_sensitive_data.py and more).
KNOWN = (
    "DE89370400440532013000",
    "DE89 3704 0044 0532 0130 00",
    "de89 3704 0044 0532 0130 00",
    "IBAN: DE89-3704-0044-0532-0130-00.",
    "D E 8 9 3 7 0 4 0 0 4 4 0 5 3 2 0 1 3 0 0 0",
    "D.E.8.9.3.7.0.4.0.0.4.4.0.5.3.2.0.1.3.0.0.0",
    "DE00123456789012345678",
    "DE893704004405320130001",
    "XDE89370400440532013000",
    "\u017fDE89370400440532013000",
    "\u212aDE89370400440532013000",
    "Konto\u00a0DE89\u00a03704\u00a00044\u00a00532\u00a00130\u00a000",
    "GB82 WEST 1234 5698 7654 32",
    "GB82WEST12345698765432",
    "AT611904300234573201",
    "FR1420041010050500013M02606",
    "xAT611904300234573201",
    "AT611904300234573201x",
    "https://portal.example.org/reset?token=DE12ABCDEFGHIJKLMNOP",
    "HTTPS://portal.example.org/reset?token=AT611904300234573201 AT611904300234573201",
    "https://x.example/?AT611904300234573201",
    "Ihr Vorgang SCH-2026-000123 vom 02.03.2026",
    "Rufen Sie uns an: 0800 4520104",
    "+49 151 2345678",
    "X7K2-9PQ4",
    "3bc7dfa0-2d80-59d7-84d0-8fd34a1ffe42",
    "Version 10.2 der Bedingungen",
    "Passwort zurücksetzen: über den folgenden Link",
    "Ihr Passwort bleibt gültig.",
    "1.500 Punkte, 1.234,56 €",
    "Befund: unauffällig",
    "Befunde liegen vor",
    "ICD-10 M54.16",
    "ICD 10",
    "icd10",
    "ICD-100",
    "Behandlung wegen F43.1",
    "F43.1G",
    "U07.1",
    "F32.123",
    "xF32.1",
    "F32.1x",
    "Diagnosis attached",
    "Diagnosen",
    "DIAGNOSE",
    "Prädiagnose",
    "\u0130CD-10",
    "\u0131cd10",
    "Passwort: hunter2hunter2",
    "Ihr Kennwort=abc",
    "\u212aennwort: x",
    "password: x",
    "passwd :\tx",
    "Passwort:",
    "Passwort: ",
    "MeinPasswort: x",
    "Passwort\n: x",
    "Diagnose: F32.1 Depression",
    "Geheim!Kennwort-2026",
)

#: Single characters and pieces hypothesis and the mutations build texts from.
ALPHABET = "DEdeABFGMUVXZTKPkpbfiIsSl0123456789 \u00a0-.:=\t\n/?!+*_äöüß\u017f\u212a\u0130\u0131"
PIECES = (
    "DE", "de", "D E", "DE89", "89", "3704", "0044", "0532", "0130", "00", "GB82", "WEST",
    "AT61", "FR14", "13M0", "F32", "M54", "F43", ".1", ".16", "1G", "Diagnose", "diagnosis",
    "Befund", "befunde", "ICD", "icd", "-10", " 10", "10", "Passwort", "kennwort",
    "PASSWORD", "passwd", "https://", "HTTP://", "http", "://", "x.de/", "Konto ", "IBAN: ",
    "Schaden", "SCH-2026-000123", "27.11.2026", " ",
)  # fmt: skip


def mutations(seed: int, texts: Iterable[str], per_text: int) -> Iterator[str]:
    """Random edits (insert, delete, replace a character or insert a piece) of `texts`."""
    rng = random.Random(seed)
    for text in texts:
        for _ in range(per_text):
            mutated = text
            for _ in range(rng.randint(1, 4)):
                at = rng.randint(0, len(mutated))
                op = rng.randrange(4)
                if op == 0:
                    mutated = mutated[:at] + rng.choice(ALPHABET) + mutated[at:]
                elif op == 1:
                    mutated = mutated[:at] + mutated[at + 1 :]
                elif op == 2:
                    mutated = mutated[:at] + rng.choice(ALPHABET) + mutated[at + 1 :]
                else:
                    mutated = mutated[:at] + rng.choice(PIECES) + mutated[at:]
            yield mutated


# -------------------------------------------------------------------------------- the tests


@pytest.mark.parametrize("text", KNOWN)
def test_nt5_the_fast_guard_agrees_with_the_old_on_the_known_positives_and_negatives(text):
    assert_same_language(text)


def test_nt5_the_fast_guard_agrees_with_the_old_on_20000_mutations_of_the_known_texts():
    for text in mutations(seed=12, texts=KNOWN, per_text=20_000 // len(KNOWN) + 1):
        assert_same_language(text)


def test_nt5_the_fast_guard_agrees_with_the_old_on_mutated_rendered_emails(ev, renderer):
    """Real e-mails (subject, body, visible HTML, HTML source) and 200 mutations of each."""
    parts: list[str] = []
    for event in (ev.claim_status(), ev.document(), ev.points_warning(), ev.cancelled()):
        for message in plan_messages(event, ev.view()):
            rendered = renderer.render(message)
            parts += [rendered.subject, rendered.text]
            if rendered.html is not None:
                parts += [html.unescape(_TAGS.sub(" ", rendered.html)), rendered.html]
    assert parts
    for text in [*parts, *mutations(seed=5, texts=parts, per_text=200)]:
        assert_same_language(text)


PIECE = st.one_of(st.sampled_from(ALPHABET), st.sampled_from(PIECES), st.sampled_from(KNOWN))


@settings(max_examples=1000, deadline=None)
@given(st.lists(PIECE, max_size=12).map("".join))
def test_nt5_the_fast_guard_agrees_with_the_old_on_generated_texts(text):
    assert_same_language(text)


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=60))
def test_nt5_the_fast_guard_agrees_with_the_old_on_any_unicode_text(text):
    assert_same_language(text)
