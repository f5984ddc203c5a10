"""CT-2 product lines and carriers, CT-5 configurable point relevance."""

from __future__ import annotations

import pytest
from contracts.domain.catalogue import CARRIER_NAMES, Catalogue, CatalogueConfigError
from contracts_schemas.common import Carrier, ProductLine

PROPERTY_CASUALTY = [
    ProductLine.LIABILITY,
    ProductLine.MOTOR,
    ProductLine.ACCIDENT,
    ProductLine.LEGAL_PROTECTION,
    ProductLine.HOUSEHOLD_CONTENTS,
    ProductLine.BUILDING,
]
LIFE = [
    ProductLine.LIFE,
    ProductLine.PENSION,
    ProductLine.OCCUPATIONAL_DISABILITY,
    ProductLine.COMPANY_PENSION,
]
HEALTH = [
    ProductLine.FULL_HEALTH,
    ProductLine.SUPPLEMENTARY_HEALTH,
    ProductLine.TRAVEL_HEALTH,
    ProductLine.LONG_TERM_CARE,
    ProductLine.COMPANY_HEALTH,
]
NOT_POINT_RELEVANT_BY_DEFAULT = {
    ProductLine.TRAVEL_HEALTH,
    ProductLine.COMPANY_PENSION,
    ProductLine.COMPANY_HEALTH,
    ProductLine.INVESTMENT,
}


def test_ct2_every_product_line_has_an_entry_with_a_german_name() -> None:
    catalogue = Catalogue.default()
    assert set(catalogue.lines) == set(ProductLine)
    assert catalogue.display_name(ProductLine.HOUSEHOLD_CONTENTS) == "Hausratversicherung"
    assert catalogue.display_name(ProductLine.COMPANY_PENSION).endswith("(bAV)")
    assert all(info.display_name for info in catalogue.lines.values())
    assert set(CARRIER_NAMES) == set(Carrier)


@pytest.mark.parametrize("line", PROPERTY_CASUALTY)
def test_ct2_property_casualty_lines_are_issued_by_allianz_versicherungs_ag(
    line: ProductLine,
) -> None:
    assert Catalogue.default().allowed_carriers(line) == (Carrier.ALLIANZ_VERSICHERUNGS_AG,)


@pytest.mark.parametrize("line", LIFE)
def test_ct2_life_pension_and_disability_lines_are_issued_by_allianz_leben(
    line: ProductLine,
) -> None:
    assert Catalogue.default().allowed_carriers(line) == (Carrier.ALLIANZ_LEBENSVERSICHERUNGS_AG,)


@pytest.mark.parametrize("line", HEALTH)
def test_ct2_health_and_care_lines_are_issued_by_allianz_private_kranken(
    line: ProductLine,
) -> None:
    assert Catalogue.default().allowed_carriers(line) == (
        Carrier.ALLIANZ_PRIVATE_KRANKENVERSICHERUNGS_AG,
    )


def test_ct2_investment_products_come_from_the_three_investment_firms() -> None:
    catalogue = Catalogue.default()
    assert set(catalogue.allowed_carriers(ProductLine.INVESTMENT)) == {
        Carrier.ALLIANZ_GLOBAL_INVESTORS,
        Carrier.ALLVEST,
        Carrier.FOURMORE,
    }
    assert not catalogue.carrier_allowed(ProductLine.INVESTMENT, Carrier.ALLIANZ_VERSICHERUNGS_AG)
    assert not catalogue.carrier_allowed(ProductLine.MOTOR, Carrier.ALLVEST)


def test_ct2_every_carrier_issues_at_least_one_line() -> None:
    catalogue = Catalogue.default()
    issued_by = {carrier for info in catalogue.lines.values() for carrier in info.carriers}
    assert issued_by == set(Carrier)


@pytest.mark.parametrize("line", list(ProductLine))
def test_ct5_default_point_relevance(line: ProductLine) -> None:
    expected = line not in NOT_POINT_RELEVANT_BY_DEFAULT
    assert Catalogue.default().is_point_relevant(line) is expected


def test_ct5_operators_override_point_relevance_by_configuration() -> None:
    catalogue = Catalogue.from_config({"travel_health": True, "motor": False})

    assert catalogue.is_point_relevant(ProductLine.TRAVEL_HEALTH)
    assert not catalogue.is_point_relevant(ProductLine.MOTOR)
    # the other lines keep their defaults
    assert catalogue.is_point_relevant(ProductLine.LIABILITY)
    assert not catalogue.is_point_relevant(ProductLine.INVESTMENT)


def test_ct5_overrides_accept_product_line_enum_keys_and_no_config_means_defaults() -> None:
    assert Catalogue.from_config({ProductLine.INVESTMENT: True}).is_point_relevant(
        ProductLine.INVESTMENT
    )
    assert Catalogue.from_config(None) == Catalogue.default()
    assert Catalogue.from_config({}) == Catalogue.default()


def test_ct5_overriding_returns_a_new_catalogue_and_leaves_the_original_untouched() -> None:
    default = Catalogue.default()
    changed = default.with_point_relevance({"liability": False})

    assert default.is_point_relevant(ProductLine.LIABILITY)
    assert not changed.is_point_relevant(ProductLine.LIABILITY)
    with pytest.raises(TypeError):
        default.lines[ProductLine.LIABILITY] = changed.lines[ProductLine.LIABILITY]  # type: ignore[index]


def test_ct5_unknown_product_line_in_configuration_fails_at_start_up() -> None:
    with pytest.raises(CatalogueConfigError, match="travel_healt"):
        Catalogue.from_config({"travel_healt": True})


@pytest.mark.parametrize("value", ["false", 0, 1, None])
def test_ct5_point_relevance_must_be_a_real_boolean(value: object) -> None:
    with pytest.raises(CatalogueConfigError, match="true or false"):
        Catalogue.from_config({"motor": value})


def test_ct5_point_relevant_lines_lists_the_relevant_ones() -> None:
    relevant = Catalogue.default().point_relevant_lines()
    assert relevant == set(ProductLine) - NOT_POINT_RELEVANT_BY_DEFAULT


def test_ct3_only_company_pension_and_company_health_may_be_shown_to_insured_persons() -> None:
    catalogue = Catalogue.default()
    may_show = {line for line, info in catalogue.lines.items() if info.insured_visibility_possible}
    assert may_show == {ProductLine.COMPANY_PENSION, ProductLine.COMPANY_HEALTH}


def test_ct2_an_incomplete_catalogue_is_refused() -> None:
    lines = dict(Catalogue.default().lines)
    del lines[ProductLine.MOTOR]
    with pytest.raises(CatalogueConfigError, match="motor"):
        Catalogue(lines)
