"""Base classes shared by every contract.

Every event carries its own id, the aggregate it belongs to with that aggregate's
version, the business time at which it occurred, and the customers it concerns
(ARCHITECTURE.md, "Events"). Models are frozen; unknown fields are ignored so that a
producer may add optional fields within the same schema version.
"""

from __future__ import annotations

from typing import Annotated, ClassVar
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

TYPE_PREFIX = "de.portal"
_TYPE_NAMES: dict[type, str] = {}

# Control characters (Unicode category Cc: U+0000-U+001F, U+007F-U+009F) never belong in
# an identifier or a line of text. U+0000 in particular cannot be stored by PostgreSQL
# ("invalid byte sequence 0x00"): a message carrying one must fail validation and go to
# the dead-letter topic rather than crash the consumer. Written with \u escapes so that the
# same pattern reads identically in Python, in pydantic's Rust engine and in ECMA-262
# (JSON Schema). See contracts-schemas/README.md, "Control characters".
NO_CONTROL_CHARACTERS = r"^[^\u0000-\u001f\u007f-\u009f]*$"
# The same, but line feed and tab allowed: for free text that may span lines.
NO_CONTROL_CHARACTERS_BUT_LINES = r"^[^\u0000-\u0008\u000b-\u001f\u007f-\u009f]*$"

Identifier = Annotated[str, StringConstraints(pattern=NO_CONTROL_CHARACTERS)]
"""An id, number or code: any printable text, never a control character."""
Text = Annotated[str, StringConstraints(pattern=NO_CONTROL_CHARACTERS)]
"""One line of text (a name, a title, an address line): no control characters."""
MultilineText = Annotated[str, StringConstraints(pattern=NO_CONTROL_CHARACTERS_BUT_LINES)]
"""Free text that may span lines: line feeds and tabs, no other control characters."""


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
    aggregate_id: Identifier = Field(min_length=1, max_length=200)
    aggregate_version: int = Field(ge=1)
    occurred_at: AwareDatetime
    customer_ids: tuple[Identifier, ...] = ()


class UpstreamMessage(Contract):
    """A message from an upstream insurance system (policy administration, collections).

    `message_id` is the sender's idempotency key: the same message delivered twice has
    one effect (CT-1).
    """

    context: ClassVar[str] = "upstream"

    message_id: Identifier = Field(min_length=1, max_length=200)
    source_system: Identifier = Field(min_length=1, max_length=100)
    occurred_at: AwareDatetime
    policy_number: Identifier = Field(min_length=1, max_length=100)
