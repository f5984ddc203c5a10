"""The product-line catalogue (CT-2, CT-5).

For every product line: the carrier(s) that may issue it, the German name shown to
customers, the division it belongs to, whether its insured persons may be shown the
contract (CT-3) and whether its premiums earn loyalty points (CT-5, LOY-2).

Carriers and names are product facts and live in code. Point relevance is a business
decision: operators change it through configuration (`Catalogue.from_config`), without
a release. The flag is copied into PolicyIssued and PremiumPaid at the time they are
recorded, so a later change of the table never rewrites history (LOY-12).

Default point relevance, and why:
- relevant: every private insurance contract of the Allianz Deutschland insurers -
  property/casualty, life, pension, occupational disability, full and supplementary
  health, long-term care.
- not relevant:
  - travel health: short, low-premium cover, often bundled with other products;
  - company pension (bAV) and company health (bKV): the employer is the policyholder and
    pays the premium; the employee is only the insured person, and a company cannot
    take part in the programme (LOY-1: natural persons only);
  - investment products (Allianz Global Investors, Allvest, Fourmore): not insurance
    contracts of Allianz Deutschland, and rewards for investment business would be
    inducements under securities regulation.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from types import MappingProxyType

from contracts_schemas.common import Carrier, ProductLine


class Division(StrEnum):
    PROPERTY_CASUALTY = "property_casualty"
    LIFE = "life"
    HEALTH = "health"
    INVESTMENT = "investment"


CARRIER_NAMES: Mapping[Carrier, str] = {
    Carrier.ALLIANZ_VERSICHERUNGS_AG: "Allianz Versicherungs-AG",
    Carrier.ALLIANZ_LEBENSVERSICHERUNGS_AG: "Allianz Lebensversicherungs-AG",
    Carrier.ALLIANZ_PRIVATE_KRANKENVERSICHERUNGS_AG: "Allianz Private Krankenversicherungs-AG",
    Carrier.ALLIANZ_GLOBAL_INVESTORS: "Allianz Global Investors",
    Carrier.ALLVEST: "Allvest",
    Carrier.FOURMORE: "Fourmore",
}

DIVISION_CARRIERS: Mapping[Division, tuple[Carrier, ...]] = {
    Division.PROPERTY_CASUALTY: (Carrier.ALLIANZ_VERSICHERUNGS_AG,),
    Division.LIFE: (Carrier.ALLIANZ_LEBENSVERSICHERUNGS_AG,),
    Division.HEALTH: (Carrier.ALLIANZ_PRIVATE_KRANKENVERSICHERUNGS_AG,),
    Division.INVESTMENT: (Carrier.ALLIANZ_GLOBAL_INVESTORS, Carrier.ALLVEST, Carrier.FOURMORE),
}

#: CT-3: only these lines may be shown to an insured person who is not a policyholder.
INSURED_VISIBILITY_LINES: frozenset[ProductLine] = frozenset(
    {ProductLine.COMPANY_PENSION, ProductLine.COMPANY_HEALTH}
)


def carrier_name(carrier: Carrier) -> str:
    """The carrier's name as shown to customers."""
    return CARRIER_NAMES[carrier]


@dataclass(frozen=True)
class ProductLineInfo:
    product_line: ProductLine
    display_name: str
    division: Division
    carriers: tuple[Carrier, ...]
    point_relevant: bool

    @property
    def insured_visibility_possible(self) -> bool:
        """CT-3: the contract may be shown to its insured persons (bAV, bKV)."""
        return self.product_line in INSURED_VISIBILITY_LINES

    def allows_carrier(self, carrier: Carrier) -> bool:
        return carrier in self.carriers


def _line(
    product_line: ProductLine, display_name: str, division: Division, *, point_relevant: bool
) -> ProductLineInfo:
    return ProductLineInfo(
        product_line=product_line,
        display_name=display_name,
        division=division,
        carriers=DIVISION_CARRIERS[division],
        point_relevant=point_relevant,
    )


_PC, _LIFE, _HEALTH = Division.PROPERTY_CASUALTY, Division.LIFE, Division.HEALTH

DEFAULT_LINES: tuple[ProductLineInfo, ...] = (
    _line(ProductLine.LIABILITY, "Haftpflichtversicherung", _PC, point_relevant=True),
    _line(ProductLine.MOTOR, "Kfz-Versicherung", _PC, point_relevant=True),
    _line(ProductLine.ACCIDENT, "Unfallversicherung", _PC, point_relevant=True),
    _line(ProductLine.LEGAL_PROTECTION, "Rechtsschutzversicherung", _PC, point_relevant=True),
    _line(ProductLine.HOUSEHOLD_CONTENTS, "Hausratversicherung", _PC, point_relevant=True),
    _line(ProductLine.BUILDING, "Wohngebäudeversicherung", _PC, point_relevant=True),
    _line(ProductLine.LONG_TERM_CARE, "Pflegeversicherung", _HEALTH, point_relevant=True),
    _line(
        ProductLine.OCCUPATIONAL_DISABILITY,
        "Berufsunfähigkeitsversicherung",
        _LIFE,
        point_relevant=True,
    ),
    _line(ProductLine.LIFE, "Lebensversicherung", _LIFE, point_relevant=True),
    _line(ProductLine.PENSION, "Rentenversicherung", _LIFE, point_relevant=True),
    _line(ProductLine.FULL_HEALTH, "Private Krankenvollversicherung", _HEALTH, point_relevant=True),
    _line(
        ProductLine.SUPPLEMENTARY_HEALTH, "Krankenzusatzversicherung", _HEALTH, point_relevant=True
    ),
    _line(ProductLine.TRAVEL_HEALTH, "Reisekrankenversicherung", _HEALTH, point_relevant=False),
    _line(
        ProductLine.COMPANY_PENSION,
        "Betriebliche Altersversorgung (bAV)",
        _LIFE,
        point_relevant=False,
    ),
    _line(
        ProductLine.COMPANY_HEALTH,
        "Betriebliche Krankenversicherung (bKV)",
        _HEALTH,
        point_relevant=False,
    ),
    _line(ProductLine.INVESTMENT, "Investmentprodukt", Division.INVESTMENT, point_relevant=False),
)


class CatalogueConfigError(ValueError):
    """The configured overrides are not usable; raised at start-up, never at run time."""


@dataclass(frozen=True)
class Catalogue:
    """An immutable, complete product-line table (one entry per ProductLine)."""

    lines: Mapping[ProductLine, ProductLineInfo]

    def __post_init__(self) -> None:
        object.__setattr__(self, "lines", MappingProxyType(dict(self.lines)))
        missing = set(ProductLine) - set(self.lines)
        if missing:
            names = ", ".join(sorted(line.value for line in missing))
            raise CatalogueConfigError(f"catalogue lacks product lines: {names}")
        for key, info in self.lines.items():
            if key is not info.product_line:
                raise CatalogueConfigError(f"catalogue entry {key.value} describes another line")

    @classmethod
    def default(cls) -> Catalogue:
        return cls({info.product_line: info for info in DEFAULT_LINES})

    @classmethod
    def from_config(cls, point_relevant: Mapping[str, object] | None = None) -> Catalogue:
        """The default table with point relevance overridden per product line.

        `point_relevant` maps product-line values (e.g. "travel_health") to booleans, as
        read from settings. Unknown product lines or non-boolean values are refused so
        that a typo fails at start-up instead of silently keeping the default.
        """
        return cls.default().with_point_relevance(point_relevant or {})

    def with_point_relevance(self, overrides: Mapping[str, object]) -> Catalogue:
        lines = dict(self.lines)
        for key, value in overrides.items():
            try:
                product_line = ProductLine(key)
            except ValueError:
                raise CatalogueConfigError(f"unknown product line in overrides: {key!r}") from None
            if not isinstance(value, bool):
                raise CatalogueConfigError(
                    f"point relevance of {product_line.value} must be true or false, got {value!r}"
                )
            lines[product_line] = replace(lines[product_line], point_relevant=value)
        return Catalogue(lines)

    def info(self, product_line: ProductLine) -> ProductLineInfo:
        return self.lines[product_line]

    def display_name(self, product_line: ProductLine) -> str:
        return self.lines[product_line].display_name

    def allowed_carriers(self, product_line: ProductLine) -> tuple[Carrier, ...]:
        return self.lines[product_line].carriers

    def carrier_allowed(self, product_line: ProductLine, carrier: Carrier) -> bool:
        """CT-2: may `carrier` issue a contract of `product_line`?"""
        return self.lines[product_line].allows_carrier(carrier)

    def is_point_relevant(self, product_line: ProductLine) -> bool:
        """CT-5: do premiums of this line earn loyalty points?"""
        return self.lines[product_line].point_relevant

    def point_relevant_lines(self) -> frozenset[ProductLine]:
        return frozenset(line for line, info in self.lines.items() if info.point_relevant)
