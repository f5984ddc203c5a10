"""Base classes shared by every contract.

Every event carries its own id, the aggregate it belongs to with that aggregate's
version, the business time at which it occurred, and the customers it concerns
(ARCHITECTURE.md, "Events"). Models are frozen; unknown fields are ignored so that a
producer may add optional fields within the same schema version.
"""

from __future__ import annotations

from typing import ClassVar
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

TYPE_PREFIX = "de.portal"
_TYPE_NAMES: dict[type, str] = {}


class Contract(BaseModel):
    """A frozen wire model with a CloudEvents type name."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    context: ClassVar[str]
    schema_version: ClassVar[int] = 1

    @classmethod
    def type_name(cls) -> str:
        """The CloudEvents `type`, e.g. `de.portal.contracts.PremiumPaid.v1`."""
        name = _TYPE_NAMES.get(cls)
        if name is None:
            name = _TYPE_NAMES[cls] = (
                f"{TYPE_PREFIX}.{cls.context}.{cls.__name__}.v{cls.schema_version}"
            )
        return name


class Event(Contract):
    """A domain event published by one of the portal's services."""

    event_id: UUID
    aggregate_id: str = Field(min_length=1, max_length=200)
    aggregate_version: int = Field(ge=1)
    occurred_at: AwareDatetime
    customer_ids: tuple[str, ...] = ()


class UpstreamMessage(Contract):
    """A message from an upstream insurance system (policy administration, collections).

    `message_id` is the sender's idempotency key: the same message delivered twice has
    one effect (CT-1).
    """

    context: ClassVar[str] = "upstream"

    message_id: str = Field(min_length=1, max_length=200)
    source_system: str = Field(min_length=1, max_length=100)
    occurred_at: AwareDatetime
    policy_number: str = Field(min_length=1, max_length=100)
