"""The claims service's use cases. Each takes a command (or consumed messages) and a unit
of work that is inside its transaction; none writes SQL or opens a transaction.

Events: ClaimReported, ClaimStatusChanged (every change, and a date that slipped),
ClaimNotificationChannelChosen, all on the claim's stream `claim-<claim_id>`."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from typing import Any, assert_never

from contracts_schemas.base import Contract
from contracts_schemas.claims import (
    ClaimNotificationChannelChosen,
    ClaimReported,
    ClaimStatus,
    ClaimStatusChanged,
    ClaimTransition,
    ClaimTransitionRequested,
)
from contracts_schemas.common import NotificationChannel
from contracts_schemas.contracts import (
    PolicyCancelled,
    PolicyholdersChanged,
    PolicyIssued,
)
from servicekit.clock import Clock, berlin_date
from servicekit.stream import Rejected
from servicekit.uploads import Blob, RejectedUpload, UploadPolicy, validate_upload

from claims import commands as c
from claims.domain.errors import ClaimsError, Reason
from claims.domain.lifecycle import RUNNING, Change, Schedule, Step, advance, slip, start
from claims.domain.model import (
    CLAIMABLE_LINES,
    PROPERTY_CASUALTY_LINES,
    Attachment,
    Claim,
    HandledMessage,
    HistoryEntry,
    IdempotencyRecord,
    Policy,
    not_tracked_because,
)
from claims.unit_of_work import ClaimsUnitOfWork

MAX_ATTACHMENTS = 10


@dataclass(frozen=True, slots=True)
class Download:
    attachment: Attachment
    blob: Blob


@dataclass
class ClaimsHandlers:
    clock: Clock
    schedule: Schedule
    uploads: UploadPolicy = field(default_factory=UploadPolicy)

    def _today(self) -> tuple[datetime, date]:
        now = self.clock.now()
        return now, berlin_date(now)

    # --- contracts' policy events (CT-3) -------------------------------------------------

    async def record_policies(self, messages: Sequence[Contract], uow: ClaimsUnitOfWork) -> None:
        """The service's own view of the policies customers may claim on."""
        for message in messages:
            match message:
                case PolicyIssued():
                    existing = await uow.policies.get(message.policy_id)
                    if existing and existing.version >= message.aggregate_version:
                        continue
                    await uow.policies.save(Policy(
                        policy_id=message.policy_id, policy_number=message.policy_number,
                        product_line=message.product_line, carrier=message.carrier,
                        policyholder_ids=message.policyholder_ids,
                        insured_person_ids=message.insured_person_ids,
                        visible_to_insured=message.visible_to_insured,
                        start_date=message.start_date,
                        cancelled_from=existing.cancelled_from if existing else None,
                        version=message.aggregate_version,
                    ))  # fmt: skip
                case PolicyholdersChanged() | PolicyCancelled():
                    await self._update_policy(message, uow)
                case _:
                    continue  # premiums, bank details, moves: nothing for claims

    async def _update_policy(
        self, message: PolicyholdersChanged | PolicyCancelled, uow: ClaimsUnitOfWork
    ) -> None:
        policy = await uow.policies.get(message.policy_id)
        if policy is None or policy.version >= message.aggregate_version:
            return  # its PolicyIssued (same partition, earlier) was not for us, or stale
        match message:
            case PolicyholdersChanged():
                changes: dict[str, Any] = {"policyholder_ids": message.policyholder_ids}
            case PolicyCancelled():
                changes = {"cancelled_from": message.effective_date}
            case _:
                assert_never(message)
        await uow.policies.save(replace(policy, version=message.aggregate_version, **changes))

    # --- CL-1 / CL-2: report --------------------------------------------------------------

    async def report(self, command: c.ReportClaim, uow: ClaimsUnitOfWork) -> Claim:
        """CL-1/CL-2: a claim number at once; one claim per Idempotency-Key."""
        fingerprint = _fingerprint(command)
        if command.idempotency_key:
            earlier = await uow.submissions.get(command.customer_id, command.idempotency_key)
            if earlier is not None:
                if earlier.fingerprint != fingerprint:
                    raise ClaimsError(
                        Reason.IDEMPOTENCY_KEY_REUSED,
                        "Dieser Idempotency-Key wurde bereits für eine andere Meldung verwendet.",
                    )
                claim = await uow.claims.get(earlier.claim_id)
                assert claim is not None
                return claim
        policy = await uow.policies.get(command.policy_id)
        if policy is None or not policy.visible_to(command.customer_id):
            raise ClaimsError(Reason.CONTRACT_NOT_FOUND, "Diesen Vertrag finden wir nicht.")
        if policy.product_line not in CLAIMABLE_LINES[command.claim_type]:
            raise ClaimsError(
                Reason.WRONG_CLAIM_TYPE,
                "Für diesen Vertrag kann diese Art von Schaden oder Leistung nicht gemeldet "
                "werden.",
                extensions={"product_line": policy.product_line.value},
            )
        if not policy.covers(command.incident_date):
            raise ClaimsError(
                Reason.NOT_COVERED,
                "Zum angegebenen Datum bestand dieser Vertrag nicht.",
            )
        now, today = self._today()
        if command.incident_date > today:
            raise ClaimsError(Reason.INVALID, "Das Datum liegt in der Zukunft.")
        if len(command.files) > MAX_ATTACHMENTS:
            raise ClaimsError(
                Reason.INVALID, f"Bitte höchstens {MAX_ATTACHMENTS} Dateien auf einmal."
            )
        default = await uow.preferences.default_channel(command.customer_id)
        channel = command.notification_channel or default or NotificationChannel.EMAIL
        number = await uow.claims.next_number()
        prefix = "SCH" if command.claim_type in PROPERTY_CASUALTY_LINES else "LF"
        claim = Claim(
            claim_id=uuid.uuid4().hex,
            claim_number=f"{prefix}-{today.year}-{number:07d}",
            customer_id=command.customer_id, policy_id=policy.policy_id,
            policy_number=policy.policy_number, claim_type=command.claim_type,
            product_line=policy.product_line, carrier=policy.carrier,
            incident_date=command.incident_date, place=command.place,
            description=command.description, reported_at=now,
            not_tracked=not_tracked_because(command.claim_type, policy),
            channel=channel, channel_chosen_for_claim=command.notification_channel is not None,
        )  # fmt: skip
        start(claim, self.schedule, today)
        claim.history.append(
            HistoryEntry(now, None, ClaimStatus.REPORTED, claim.expected_completion_date)
        )
        for index, file in enumerate(command.files):
            kind = command.document_types[index] if index < len(command.document_types) else ""
            claim.attachments.append(await self._store(file, kind, now, uow))
        reported = ClaimReported(
            **_envelope(claim, 1, now), claim_number=claim.claim_number,
            policy_id=claim.policy_id, customer_id=claim.customer_id,
            notification_channel=channel, claim_type=claim.claim_type,
            product_line=claim.product_line, incident_date=claim.incident_date,
            trackable=claim.trackable, expected_completion_date=claim.expected_completion_date,
        )  # fmt: skip
        await uow.events.append(claim.stream_id, 0, [reported])
        claim.version = 1
        await uow.claims.add(claim)
        if command.idempotency_key:
            await uow.submissions.add(IdempotencyRecord(
                command.customer_id, command.idempotency_key, fingerprint, claim.claim_id
            ))  # fmt: skip
        return claim

    async def _store(
        self, file: c.File, document_type: str, now: datetime, uow: ClaimsUnitOfWork
    ) -> Attachment:
        """Uploads are judged by their bytes (servicekit.uploads); a refusal raises, so the
        transaction stores nothing of the request."""
        checked = validate_upload(file.filename, file.content, self.uploads, file.declared_type)
        if isinstance(checked, RejectedUpload):
            raise ClaimsError(
                Reason.UPLOAD_REFUSED, checked.detail, status=checked.status,
                extensions={"filename": checked.filename, "upload_problem": checked.reason.value},
            )  # fmt: skip
        attachment = Attachment(
            attachment_id=uuid.uuid4().hex, filename=checked.filename,
            content_type=checked.content_type.value, size=checked.size, sha256=checked.sha256,
            uploaded_at=now, document_type=document_type,
        )  # fmt: skip
        await uow.blobs.put(Blob(attachment.attachment_id, attachment.content_type, file.content))
        return attachment

    # --- CL-4: claims handling -------------------------------------------------------------

    async def move(self, command: c.MoveClaim, uow: ClaimsUnitOfWork) -> Claim:
        """CL-4: one step of claims handling; the same message again has no second effect."""
        handled = await uow.handled.get(command.source_system, command.message_id)
        if handled is not None:
            claim = await uow.claims.get(handled.claim_id)
            assert claim is not None
            return claim
        claim = await uow.claims.by_number(command.claim_number)
        if claim is None:
            raise ClaimsError(Reason.NOT_FOUND, "Diesen Vorgang gibt es nicht.")
        await self._advance(claim, command.step, uow)
        await uow.handled.add(
            HandledMessage(command.source_system, command.message_id, claim.claim_id)
        )
        return claim

    async def move_from_stream(self, messages: Sequence[Contract], uow: ClaimsUnitOfWork) -> None:
        """CL-4 on Kafka: a command that can never apply goes to the dead letters."""
        for message in messages:
            if not isinstance(message, ClaimTransitionRequested):
                raise Rejected(f"not a claims-handling command: {type(message).__name__}")
            try:
                await self.move(_move_of(message), uow)
            except ClaimsError as refused:
                raise Rejected(f"{refused.reason.value}: {refused.detail}") from None

    async def _advance(self, claim: Claim, step: Step, uow: ClaimsUnitOfWork) -> Change:
        now, today = self._today()
        change = advance(claim, step, self.schedule, today, now)
        await self._announce(claim, change, now, uow)
        return change

    # --- CL-3: overdue claims -------------------------------------------------------------

    async def overdue_claims(self, query: c.FindOverdueClaims, uow: ClaimsUnitOfWork) -> list[str]:
        """CL-3: claims whose expected date passed (the service clock's Berlin date) while
        the service level runs; each is slipped in a transaction of its own."""
        _, today = self._today()
        return await uow.claims.due_before(today, RUNNING, query.limit)

    async def slip_if_overdue(
        self, command: c.SlipOverdueClaim, uow: ClaimsUnitOfWork
    ) -> Change | None:
        """CL-3: an overdue claim's date moves later, announced as a ClaimStatusChanged with
        the status unchanged and the date announced before (the notifier's slip notice).
        Read locked and decided on what is stored: a claim another run (another instance)
        slipped meanwhile is not overdue any more, and the stream version refuses a
        second append at the same version (the transaction then decides again)."""
        claim = await uow.claims.get(command.claim_id)
        if claim is None:
            return None
        now, today = self._today()
        change = slip(claim, self.schedule, today, now)
        if change is not None:
            await self._announce(claim, change, now, uow)
        return change

    async def _announce(
        self, claim: Claim, change: Change, now: datetime, uow: ClaimsUnitOfWork
    ) -> None:
        event = ClaimStatusChanged(
            **_envelope(claim, claim.version + 1, now), claim_number=claim.claim_number,
            customer_id=claim.customer_id, old_status=change.old_status,
            new_status=change.new_status,
            expected_completion_date=change.expected_completion_date,
            previous_expected_completion_date=change.previous_expected_completion_date,
            missing_documents=claim.missing_documents,
            settled_amount_cents=claim.settled_amount_cents,
        )  # fmt: skip
        await uow.events.append(claim.stream_id, claim.version, [event])
        claim.version += 1
        await uow.claims.save(claim)

    # --- the customer's claims -------------------------------------------------------------

    async def _own(self, customer_id: str, claim_id: str, uow: ClaimsUnitOfWork) -> Claim:
        """Another customer's claim is as absent as one that does not exist."""
        claim = await uow.claims.get(claim_id)
        if claim is None or claim.customer_id != customer_id:
            raise ClaimsError(Reason.NOT_FOUND, "Diesen Vorgang finden wir nicht.")
        return claim

    async def show(self, command: c.ShowClaim, uow: ClaimsUnitOfWork) -> Claim:
        return await self._own(command.customer_id, command.claim_id, uow)

    async def list_claims(self, command: c.ListClaims, uow: ClaimsUnitOfWork) -> list[Claim]:
        return await uow.claims.of_customer(command.customer_id)

    async def count_by_status(
        self, query: c.CountByStatus, uow: ClaimsUnitOfWork
    ) -> dict[ClaimStatus, int]:
        """OPS-2: claims per status, every status present (0 when none is in it)."""
        counted = await uow.claims.count_by_status()
        return {status: counted.get(status, 0) for status in ClaimStatus}

    async def upload(self, command: c.UploadDocument, uow: ClaimsUnitOfWork) -> Claim:
        """A document for a claim; a claim waiting for the customer goes back into review."""
        claim = await self._own(command.customer_id, command.claim_id, uow)
        if not claim.open:
            raise ClaimsError(
                Reason.CLAIM_CLOSED,
                "Dieser Vorgang ist abgeschlossen; bitte senden Sie uns eine Nachricht.",
            )
        if len(claim.attachments) >= 5 * MAX_ATTACHMENTS:
            raise ClaimsError(Reason.INVALID, "Zu diesem Vorgang sind genug Dateien hinterlegt.")
        now, _ = self._today()
        claim.attachments.append(await self._store(command.file, command.document_type, now, uow))
        if claim.status is ClaimStatus.DOCUMENTS_REQUESTED and claim.trackable:
            await self._advance(claim, Step(ClaimTransition.DOCUMENTS_RECEIVED), uow)
        else:
            await uow.claims.save(claim)
        return claim

    async def download(self, command: c.DownloadAttachment, uow: ClaimsUnitOfWork) -> Download:
        claim = await self._own(command.customer_id, command.claim_id, uow)
        attachment = next(
            (a for a in claim.attachments if a.attachment_id == command.attachment_id), None
        )
        blob = await uow.blobs.get(command.attachment_id) if attachment else None
        if attachment is None or blob is None:
            raise ClaimsError(Reason.NOT_FOUND, "Diese Datei finden wir nicht.")
        return Download(attachment, blob)

    # --- CL-5: notification channel ---------------------------------------------------------

    async def choose_channel(self, command: c.ChooseChannel, uow: ClaimsUnitOfWork) -> Claim:
        claim = await self._own(command.customer_id, command.claim_id, uow)
        claim.channel_chosen_for_claim = True
        await self._announce_channel(claim, command.channel, uow)
        return claim

    async def choose_default_channel(
        self, command: c.ChooseDefaultChannel, uow: ClaimsUnitOfWork
    ) -> NotificationChannel:
        """The default for new claims, and for open claims without a choice of their own."""
        await uow.preferences.set_default_channel(command.customer_id, command.channel)
        for claim in await uow.claims.of_customer(command.customer_id):
            if claim.open and not claim.channel_chosen_for_claim:
                await self._announce_channel(claim, command.channel, uow)
        return command.channel

    async def default_channel(
        self, command: c.ShowDefaultChannel, uow: ClaimsUnitOfWork
    ) -> NotificationChannel:
        chosen = await uow.preferences.default_channel(command.customer_id)
        return chosen or NotificationChannel.EMAIL

    async def _announce_channel(
        self, claim: Claim, channel: NotificationChannel, uow: ClaimsUnitOfWork
    ) -> None:
        if claim.channel is channel and claim.version > 0:
            await uow.claims.save(claim)
            return
        now, _ = self._today()
        claim.channel = channel
        event = ClaimNotificationChannelChosen(
            **_envelope(claim, claim.version + 1, now), customer_id=claim.customer_id,
            channel=channel,
        )  # fmt: skip
        await uow.events.append(claim.stream_id, claim.version, [event])
        claim.version += 1
        await uow.claims.save(claim)


def _envelope(claim: Claim, version: int, now: datetime) -> dict[str, Any]:
    return {
        "event_id": uuid.uuid4(),
        "aggregate_id": claim.claim_id,
        "aggregate_version": version,
        "occurred_at": now,
        "customer_ids": (claim.customer_id,),
        "claim_id": claim.claim_id,
    }


def _move_of(message: ClaimTransitionRequested) -> c.MoveClaim:
    return c.MoveClaim(
        source_system=message.source_system, message_id=message.message_id,
        claim_number=message.claim_number,
        step=Step(message.transition, message.missing_documents, message.amount_cents,
                  message.reason),
    )  # fmt: skip


def _fingerprint(command: c.ReportClaim) -> str:
    """What makes two submissions "the same" (Idempotency-Key): every field and every
    file's bytes."""
    body = {
        "policy_id": command.policy_id, "claim_type": command.claim_type.value,
        "incident_date": command.incident_date.isoformat(), "place": command.place,
        "description": command.description, "document_types": list(command.document_types),
        "channel": command.notification_channel.value if command.notification_channel else None,
        "files": [
            [f.filename or "", hashlib.sha256(f.content).hexdigest()] for f in command.files
        ],
    }  # fmt: skip
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
