"""Event factories for the notifier's unit tests: each test gets its own customer."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any
from uuid import uuid4

import pytest
from contracts_schemas.claims import (
    ClaimNotificationChannelChosen,
    ClaimReported,
    ClaimStatus,
    ClaimStatusChanged,
)
from contracts_schemas.common import NotificationChannel, PostalAddress
from contracts_schemas.documents import DocumentAvailable, DocumentDelivery
from contracts_schemas.identity import (
    AccountCancelled,
    AccountLocked,
    ActivationCodeIssued,
    AddressChanged,
    ContactDetailsChanged,
    CustomerRegistered,
    DeviceBound,
    DeviceRevoked,
    EmailVerificationCodeIssued,
    EmailVerified,
    LoginCodeRequested,
    MtanRequested,
    PasswordChanged,
    PasswordResetRequested,
    RegistrationNotCompleted,
    TwoFactorDisabled,
    TwoFactorEnabled,
    UsernameReminderRequested,
)
from contracts_schemas.loyalty import PointsExpiryWarningIssued
from notifier.adapters.render import Renderer
from notifier.domain.contacts import ContactView, apply
from notifier.domain.messages import OutgoingMessage
from notifier.domain.plan import plan_messages

NOW = datetime(2026, 3, 2, 13, 35, tzinfo=UTC)  # 14:35 in Berlin
#: Where Erika moves (CT-4): a letter to the old address and an e-mail tell her (NT-2).
MOVED_TO = PostalAddress(
    recipient="Erika Mustermann", street="Lindenallee 5", postal_code="10115", city="Berlin"
)


class Events:
    """Builds valid events for one customer; identity events get increasing versions."""

    def __init__(self) -> None:
        self.customer_id = f"cust-{uuid4().hex[:12]}"
        self.now = NOW
        self._identity_version = 0
        self._claim_versions: dict[str, int] = {}
        self.address = PostalAddress(
            recipient="Erika Mustermann", street="Heidestraße 17", postal_code="51147", city="Köln"
        )
        #: Identity version 1, so that events built later are newer than the registration.
        self.registration = self.registered()
        #: Identity version 2: the registration's address proven (ID-1).
        self.verification = self.email_verified()

    def _identity(self, **fields: Any) -> dict[str, Any]:
        self._identity_version += 1
        return {
            "event_id": uuid4(),
            "aggregate_id": self.customer_id,
            "aggregate_version": self._identity_version,
            "occurred_at": fields.pop("occurred_at", self.now),
            "customer_ids": (self.customer_id,),
            "customer_id": self.customer_id,
            **fields,
        }

    def _claim(self, claim_id: str, **fields: Any) -> dict[str, Any]:
        version = self._claim_versions.get(claim_id, 0) + 1
        self._claim_versions[claim_id] = version
        return {
            "event_id": uuid4(),
            "aggregate_id": claim_id,
            "aggregate_version": version,
            "occurred_at": fields.pop("occurred_at", self.now),
            "customer_ids": (self.customer_id,),
            "customer_id": self.customer_id,
            "claim_id": claim_id,
            **fields,
        }

    def _other(self, aggregate_id: str, **fields: Any) -> dict[str, Any]:
        return {
            "event_id": uuid4(),
            "aggregate_id": aggregate_id,
            "aggregate_version": 1,
            "occurred_at": fields.pop("occurred_at", self.now),
            "customer_ids": (self.customer_id,),
            "customer_id": self.customer_id,
            **fields,
        }

    def registered(self, **fields: Any) -> CustomerRegistered:
        defaults: dict[str, Any] = {
            "first_name": "Erika",
            "last_name": "Mustermann",
            "birth_date": date(1980, 5, 17),
            "address": self.address,
            "email": "Erika.Mustermann@example.org",
            "mobile": "0151 2345678",
        }
        return CustomerRegistered(**self._identity(**{**defaults, **fields}))

    def email_verified(self, email: str = "Erika.Mustermann@example.org") -> EmailVerified:
        return EmailVerified(**self._identity(email=email))

    def email_code(self, **fields: Any) -> EmailVerificationCodeIssued:
        defaults: dict[str, Any] = {
            "code": "K7QM4TZ9XA2B",
            "email": "Erika.Mustermann@example.org",
            "expires_at": self.now + timedelta(hours=24),
        }
        return EmailVerificationCodeIssued(**self._identity(**{**defaults, **fields}))

    def registration_not_completed(self, **fields: Any) -> RegistrationNotCompleted:
        defaults: dict[str, Any] = {
            "email": "someone@example.org",
            "username": "erika.m",
            "reason": "username_taken",
        }
        return RegistrationNotCompleted(
            event_id=uuid4(),
            aggregate_id=f"registration-{uuid4().hex[:32]}",
            aggregate_version=1,
            occurred_at=fields.pop("occurred_at", self.now),
            **{**defaults, **fields},
        )

    def locked(self, **fields: Any) -> AccountLocked:
        defaults: dict[str, Any] = {"locked_until": self.now + timedelta(minutes=30)}
        return AccountLocked(**self._identity(**{**defaults, **fields}))

    def password_changed(self, how: str = "change") -> PasswordChanged:
        return PasswordChanged(**self._identity(how=how))

    def two_factor_enabled(self, mobile_masked: str = "+49*******5678") -> TwoFactorEnabled:
        return TwoFactorEnabled(**self._identity(mobile_masked=mobile_masked))

    def two_factor_disabled(self) -> TwoFactorDisabled:
        return TwoFactorDisabled(**self._identity())

    def device_bound(self, device_name: str = "iPhone von Erika") -> DeviceBound:
        return DeviceBound(**self._identity(device_id="dev-1", device_name=device_name))

    def device_revoked(self) -> DeviceRevoked:
        return DeviceRevoked(**self._identity(device_id="dev-1"))

    def security_events(self) -> list[Any]:
        """One event of every security notice (ID-2, ID-4, ID-5, ID-7)."""
        return [
            self.locked(),
            self.password_changed("change"),
            self.password_changed("reset"),
            self.two_factor_enabled(),
            self.two_factor_disabled(),
            self.device_bound(),
            self.device_revoked(),
        ]

    def contact_changed(self, **fields: Any) -> ContactDetailsChanged:
        return ContactDetailsChanged(**self._identity(**fields))

    def address_changed(self, address: PostalAddress) -> AddressChanged:
        return AddressChanged(**self._identity(address=address))

    def cancelled(self) -> AccountCancelled:
        return AccountCancelled(**self._identity())

    def activation_code(self, **fields: Any) -> ActivationCodeIssued:
        defaults: dict[str, Any] = {
            "code": "X7K2-9PQ4",
            "address": self.address,
            "expires_at": self.now + timedelta(days=90),
        }
        return ActivationCodeIssued(**self._identity(**{**defaults, **fields}))

    def login_code(self, **fields: Any) -> LoginCodeRequested:
        defaults: dict[str, Any] = {
            "code": "482913",
            "mobile": "+49 151 2345678",
            "expires_at": self.now + timedelta(minutes=5),
        }
        return LoginCodeRequested(**self._identity(**{**defaults, **fields}))

    def mtan(self, **fields: Any) -> MtanRequested:
        defaults: dict[str, Any] = {
            "code": "771204",
            "mobile": "+49 151 2345678",
            "expires_at": self.now + timedelta(minutes=5),
            "purpose": "change_password",
        }
        return MtanRequested(**self._identity(**{**defaults, **fields}))

    def username_reminder(self, **fields: Any) -> UsernameReminderRequested:
        defaults: dict[str, Any] = {"email": "erika.mustermann@example.org", "username": "erika.m"}
        return UsernameReminderRequested(**self._identity(**{**defaults, **fields}))

    def password_reset(self, **fields: Any) -> PasswordResetRequested:
        defaults: dict[str, Any] = {
            "email": "erika.mustermann@example.org",
            "reset_url": "https://portal.example.org/passwort/neu?token=q9Zt-3xLw_Vb8",
            "expires_at": self.now + timedelta(hours=1),
        }
        return PasswordResetRequested(**self._identity(**{**defaults, **fields}))

    def claim_reported(
        self, claim_id: str = "claim-1", channel: NotificationChannel = NotificationChannel.EMAIL
    ) -> ClaimReported:
        return ClaimReported(
            **self._claim(
                claim_id,
                claim_number="SCH-2026-000123",
                policy_id="pol-1",
                notification_channel=channel,
            )
        )

    def channel_chosen(
        self, claim_id: str, channel: NotificationChannel
    ) -> ClaimNotificationChannelChosen:
        return ClaimNotificationChannelChosen(**self._claim(claim_id, channel=channel))

    def claim_status(self, claim_id: str = "claim-1", **fields: Any) -> ClaimStatusChanged:
        defaults: dict[str, Any] = {
            "claim_number": "SCH-2026-000123",
            "old_status": ClaimStatus.IN_REVIEW,
            "new_status": ClaimStatus.DOCUMENTS_REQUESTED,
            "expected_completion_date": date(2026, 3, 31),
        }
        return ClaimStatusChanged(**self._claim(claim_id, **{**defaults, **fields}))

    def document(self, **fields: Any) -> DocumentAvailable:
        defaults: dict[str, Any] = {
            "document_id": f"doc-{uuid4().hex[:8]}",
            "category": "contract",
            "title": "Nachtrag zum Versicherungsschein",
        }
        return DocumentAvailable(**self._other("mailbox-1", **{**defaults, **fields}))

    def points_warning(self, **fields: Any) -> PointsExpiryWarningIssued:
        defaults: dict[str, Any] = {"points": 1500, "expires_on": date(2026, 12, 31)}
        return PointsExpiryWarningIssued(**self._other("loyalty-1", **{**defaults, **fields}))

    def every_message(self) -> list[tuple[Any, OutgoingMessage]]:
        """(event, message) for one message of every kind and channel the notifier sends."""
        view = self.view()
        sms_view = self.view(self.claim_reported("claim-sms", NotificationChannel.SMS))
        slip = {
            "old_status": ClaimStatus.IN_REVIEW,
            "new_status": ClaimStatus.IN_REVIEW,
            "expected_completion_date": date(2026, 4, 14),
            "previous_expected_completion_date": date(2026, 3, 31),
        }
        events_and_views: list[tuple[Any, ContactView | None]] = [
            (self.claim_status(), view),
            (self.claim_status("claim-sms"), sms_view),
            (self.claim_status(**slip), view),
            (self.claim_status("claim-sms", **slip), sms_view),
            (self.document(delivery=DocumentDelivery.POST, written_form=True), view),
            (self.email_code(), view),
            (self.registration_not_completed(), None),
            *((event, view) for event in self.security_events()),
            (self.document(), view),
            (self.document(sensitive=True, title="Arztbrief"), view),
            (self.activation_code(), view),
            (self.login_code(), view),
            (self.mtan(), view),
            (self.username_reminder(), view),
            (self.password_reset(), view),
            (self.points_warning(), view),
            (self.address_changed(MOVED_TO), view),
            (self.cancelled(), view),
            (
                self.contact_changed(
                    email="neu@example.org",
                    previous_email="alt@example.org",
                    mobile="+49 170 1111111",
                    previous_mobile="0151 2345678",
                ),
                view,
            ),
        ]
        return [(e, m) for e, v in events_and_views for m in plan_messages(e, v)]

    def view(self, *events: Any, verified: bool = True) -> ContactView:
        """A registered customer's view (e-mail verified unless `verified=False`), with
        `events` folded in after registration."""
        view = apply(None, self.registration)
        if verified:
            view = apply(view, self.verification)
        for event in events:
            view = apply(view, event)
        return view


@pytest.fixture
def ev() -> Events:
    return Events()


@pytest.fixture(scope="session")
def renderer() -> Renderer:
    return Renderer()
