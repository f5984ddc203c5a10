"""CT-4: IBAN validation (ISO 13616 length per country, mod-97) and masking."""

from __future__ import annotations

import pytest
from contracts.domain.errors import CommandRejected, ReasonCode
from contracts.domain.iban import IBAN_LENGTHS, SEPA_COUNTRIES, Iban, InvalidIban, parse_iban
from hypothesis import given
from hypothesis import strategies as st

GERMAN = "DE89370400440532013000"
AUSTRIAN = "AT611904300234573201"
DUTCH = "NL91ABNA0417164300"


def check_digits(country: str, bban: str) -> str:
    numeric = "".join(str(int(char, 36)) for char in bban + country + "00")
    return f"{98 - int(numeric) % 97:02d}"


def make_iban(country: str, bban: str) -> str:
    return country + check_digits(country, bban) + bban


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("DE89 3704 0044 0532 0130 00", GERMAN),
        ("AT61 1904 3002 3457 3201", AUSTRIAN),
        ("NL91 ABNA 0417 1643 00", DUTCH),
        ("CH93 0076 2011 6238 5295 7", "CH9300762011623852957"),
        ("GB29 NWBK 6016 1331 9268 19", "GB29NWBK60161331926819"),
    ],
)
def test_ct4_valid_ibans_are_accepted_and_normalised(raw: str, expected: str) -> None:
    iban = parse_iban(raw)
    assert iban.value == expected
    assert iban.is_sepa


@pytest.mark.parametrize(
    "raw",
    [
        "de89 3704 0044 0532 0130 00",
        "  DE89370400440532013000  ",
        "De89\u00a03704\t0044 0532 0130 00",
        "DE 89 37 04 00 44 05 32 01 30 00",
    ],
)
def test_ct4_spaces_and_lowercase_are_normalised(raw: str) -> None:
    assert parse_iban(raw) == Iban(GERMAN)


@pytest.mark.parametrize(
    "raw",
    [
        "DE88370400440532013000",  # check digits wrong
        "DE89370400440532013001",  # last digit mistyped
        "DE89370400440523013000",  # two digits swapped
        "AT621904300234573201",
        "NL91ABNA0417164301",
    ],
)
def test_ct4_wrong_checksum_is_refused(raw: str) -> None:
    with pytest.raises(InvalidIban) as refused:
        parse_iban(raw)
    assert refused.value.code is ReasonCode.IBAN_WRONG_CHECKSUM
    assert "Prüfziffer" in refused.value.detail


@pytest.mark.parametrize(
    ("raw", "country", "expected_length"),
    [
        ("DE8937040044053201300", "DE", 22),  # one digit short
        ("DE893704004405320130000", "DE", 22),  # one digit too many
        ("AT6119043002345732011", "AT", 20),
        ("NL91ABNA041716430", "NL", 18),
    ],
)
def test_ct4_wrong_length_for_the_country_is_refused(
    raw: str, country: str, expected_length: int
) -> None:
    with pytest.raises(InvalidIban) as refused:
        parse_iban(raw)
    assert refused.value.code is ReasonCode.IBAN_WRONG_LENGTH
    assert f"{country} hat {expected_length} Stellen" in refused.value.detail


@pytest.mark.parametrize(
    "raw", ["", "   ", "DE89-3704-0044-0532-0130-00", "DE89370400440532013€00"]
)
def test_ct4_anything_but_letters_and_digits_is_refused(raw: str) -> None:
    with pytest.raises(InvalidIban) as refused:
        parse_iban(raw)
    assert refused.value.code is ReasonCode.IBAN_INVALID_CHARACTERS


@pytest.mark.parametrize("raw", ["XX89370400440532013000", "1234567890", "D"])
def test_ct4_unknown_country_code_is_refused(raw: str) -> None:
    with pytest.raises(InvalidIban) as refused:
        parse_iban(raw)
    assert refused.value.code is ReasonCode.IBAN_UNKNOWN_COUNTRY


def test_ct4_check_digits_01_are_refused_although_congruent_to_98() -> None:
    bban = next(
        bban
        for account in range(10_000)
        if check_digits("DE", bban := f"37040044{account:010d}") == "98"
    )
    assert parse_iban(f"DE98{bban}").value == f"DE98{bban}"
    with pytest.raises(InvalidIban) as refused:
        parse_iban(f"DE01{bban}")
    assert refused.value.code is ReasonCode.IBAN_WRONG_CHECKSUM


def test_ct4_invalid_iban_is_a_customer_refusal_in_german() -> None:
    with pytest.raises(CommandRejected) as refused:
        parse_iban("DE00")
    assert "IBAN" in refused.value.detail


@pytest.mark.parametrize(
    ("raw", "masked"),
    [
        (GERMAN, "DE89 **** **** **** **** 00"),
        (AUSTRIAN, "AT61 **** **** **** **01"),
        (DUTCH, "NL91 **** **** **** 00"),
    ],
)
def test_ct4_masked_iban_keeps_country_check_digits_and_last_two(raw: str, masked: str) -> None:
    assert parse_iban(raw).masked == masked


def test_ct4_full_iban_stays_out_of_repr_and_str() -> None:
    iban = parse_iban(GERMAN)
    assert GERMAN not in repr(iban)
    assert GERMAN not in str(iban)
    assert iban.formatted == "DE89 3704 0044 0532 0130 00"


def test_ct4_non_sepa_ibans_are_valid_ibans_but_not_sepa() -> None:
    turkish = parse_iban("TR33 0006 1005 1978 6457 8413 26")
    assert not turkish.is_sepa
    assert "TR" not in SEPA_COUNTRIES


@given(
    country=st.sampled_from(sorted(IBAN_LENGTHS)),
    digits=st.text(alphabet="0123456789", min_size=40, max_size=40),
)
def test_ct4_any_well_formed_iban_validates_and_masks_into_the_event_field(
    country: str, digits: str
) -> None:
    bban = digits[: IBAN_LENGTHS[country] - 4]
    iban = parse_iban(make_iban(country, bban))
    assert iban.country == country
    masked = iban.masked
    compact = masked.replace(" ", "")
    assert len(compact) == len(iban.value)
    assert compact.startswith(iban.value[:4])
    assert compact.endswith(iban.value[-2:])
    assert set(compact[4:-2]) == {"*"}
    if iban.is_sepa:
        assert len(masked) <= 40  # BankDetailsChanged.iban_masked max_length
