"""Value types shared by several contexts."""

from __future__ import annotations

from datetime import date
from enum import StrEnum

from pydantic import Field

from contracts_schemas.base import Contract, Identifier, Text


class ProductLine(StrEnum):
    """CT-2 product lines."""

    LIABILITY = "liability"
    MOTOR = "motor"
    ACCIDENT = "accident"
    LEGAL_PROTECTION = "legal_protection"
    HOUSEHOLD_CONTENTS = "household_contents"
    BUILDING = "building"
    LONG_TERM_CARE = "long_term_care"
    OCCUPATIONAL_DISABILITY = "occupational_disability"
    LIFE = "life"
    PENSION = "pension"
    FULL_HEALTH = "full_health"
    SUPPLEMENTARY_HEALTH = "supplementary_health"
    TRAVEL_HEALTH = "travel_health"
    COMPANY_PENSION = "company_pension"
    COMPANY_HEALTH = "company_health"
    INVESTMENT = "investment"


class Carrier(StrEnum):
    """CT-2 carriers."""

    ALLIANZ_VERSICHERUNGS_AG = "allianz_versicherungs_ag"
    ALLIANZ_LEBENSVERSICHERUNGS_AG = "allianz_lebensversicherungs_ag"
    ALLIANZ_PRIVATE_KRANKENVERSICHERUNGS_AG = "allianz_private_krankenversicherungs_ag"
    ALLIANZ_GLOBAL_INVESTORS = "allianz_global_investors"
    ALLVEST = "allvest"
    FOURMORE = "fourmore"


class PostalAddress(Contract):
    recipient: Text = Field(min_length=1, max_length=200)
    street: Text = Field(min_length=1, max_length=200)
    postal_code: Text = Field(min_length=1, max_length=20)
    city: Text = Field(min_length=1, max_length=100)
    country: str = Field(default="DE", pattern=r"^[A-Z]{2}$")


class PolicyholderDetails(Contract):
    """Who a policyholder is, as policy administration has it on file (ID-3).

    PERSONAL DATA (README, "Personal data in events"): names, birth date and address
    identify a person. Consumers keep only what they need, encrypt what they store where
    their README says so, and never log these fields.
    """

    customer_id: Identifier = Field(min_length=1, max_length=100)
    given_name: Text = Field(min_length=1, max_length=100)
    family_name: Text = Field(min_length=1, max_length=100)
    birth_date: date
    postal_address: PostalAddress


class NotificationChannel(StrEnum):
    EMAIL = "email"
    SMS = "sms"
