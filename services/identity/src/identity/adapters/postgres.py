"""PostgreSQL repositories of the identity service and its unit of work. All SQL lives
here. Personal data not needed for lookups (birth date, postal address, mobile numbers)
and the private signing keys are AES-256-GCM encrypted (FieldCipher); codes and tokens
are stored as keyed hashes only."""

# ruff: noqa: S608 - the f-strings splice only the fixed column lists defined below

from __future__ import annotations

import json
from datetime import date
from typing import Any

import asyncpg
from contracts_schemas.common import Carrier
from servicekit.db import Connection
from servicekit.eventstore import EventStore
from servicekit.postgres import PostgresUnitOfWork

from identity.adapters.security import FieldCipher
from identity.domain.model import (
    Account,
    AccountStatus,
    Address,
    CodeKind,
    Device,
    Holder,
    OneTimeCode,
    Policy,
    RefreshToken,
    Session,
    SigningKey,
    Throttle,
)
from identity.domain.operators import Operator
from identity.unit_of_work import OperatorTaken, UsernameTaken

_ACCOUNT_COLUMNS = (
    "customer_id, username, username_key, password_hash, first_name, last_name,"
    " birth_date_enc, address_enc, email, mobile_enc, pending_mobile_enc, pending_email,"
    " email_verified, customer, activated, two_factor, sms_factor_locked, sms_failures,"
    " status, registered_at, last_login_at, version"
)


class PostgresAccounts:
    def __init__(self, conn: Connection, cipher: FieldCipher) -> None:
        self._conn = conn
        self._cipher = cipher

    def _enc(self, value: str | None, column: str) -> bytes | None:
        return None if value is None else self._cipher.encrypt(value, column)

    def _dec(self, blob: bytes | None, column: str) -> str | None:
        return None if blob is None else self._cipher.decrypt(bytes(blob), column)

    def _row(self, row: asyncpg.Record | None) -> Account | None:
        if row is None:
            return None
        address = json.loads(self._dec(row["address_enc"], "address") or "{}")
        return Account(
            customer_id=row["customer_id"], username=row["username"],
            username_key=row["username_key"], password_hash=row["password_hash"],
            first_name=row["first_name"], last_name=row["last_name"],
            birth_date=date.fromisoformat(self._dec(row["birth_date_enc"], "birth_date") or ""),
            address=Address(**address), email=row["email"], registered_at=row["registered_at"],
            mobile=self._dec(row["mobile_enc"], "mobile"),
            pending_mobile=self._dec(row["pending_mobile_enc"], "pending_mobile"),
            pending_email=row["pending_email"], email_verified=row["email_verified"],
            customer=row["customer"], activated=row["activated"], two_factor=row["two_factor"],
            sms_factor_locked=row["sms_factor_locked"], sms_failures=row["sms_failures"],
            status=AccountStatus(row["status"]), last_login_at=row["last_login_at"],
            version=row["version"],
        )  # fmt: skip

    def _values(self, a: Account) -> list[Any]:
        address = json.dumps(vars(a.address) if hasattr(a.address, "__dict__") else {
            "recipient": a.address.recipient, "street": a.address.street,
            "postal_code": a.address.postal_code, "city": a.address.city,
            "country": a.address.country,
        })  # fmt: skip
        return [
            a.customer_id, a.username, a.username_key, a.password_hash, a.first_name,
            a.last_name, self._enc(a.birth_date.isoformat(), "birth_date"),
            self._enc(address, "address"), a.email, self._enc(a.mobile, "mobile"),
            self._enc(a.pending_mobile, "pending_mobile"), a.pending_email, a.email_verified,
            a.customer, a.activated, a.two_factor, a.sms_factor_locked, a.sms_failures,
            a.status.value, a.registered_at, a.last_login_at, a.version,
        ]  # fmt: skip

    async def get(self, customer_id: str) -> Account | None:
        row = await self._conn.fetchrow(
            f"SELECT {_ACCOUNT_COLUMNS} FROM accounts WHERE customer_id = $1 FOR UPDATE",
            customer_id,
        )
        return self._row(row)

    async def by_username(self, key: str) -> Account | None:
        row = await self._conn.fetchrow(
            f"SELECT {_ACCOUNT_COLUMNS} FROM accounts WHERE username_key = $1 FOR UPDATE", key
        )
        return self._row(row)

    async def by_email(self, email: str) -> list[Account]:
        rows = await self._conn.fetch(
            f"SELECT {_ACCOUNT_COLUMNS} FROM accounts WHERE email = $1 FOR UPDATE", email
        )
        return [a for a in map(self._row, rows) if a is not None]

    async def add(self, account: Account) -> None:
        placeholders = ", ".join(f"${i}" for i in range(1, 23))
        inserted = await self._conn.fetchval(
            f"INSERT INTO accounts ({_ACCOUNT_COLUMNS}) VALUES ({placeholders})"
            " ON CONFLICT DO NOTHING RETURNING 1",
            *self._values(account),
        )
        if inserted is None:
            raise UsernameTaken(account.username)

    async def save(self, account: Account) -> None:
        columns = _ACCOUNT_COLUMNS.replace(" ", "").split(",")
        sets = ", ".join(f"{col} = ${i}" for i, col in enumerate(columns, start=1) if i > 1)
        await self._conn.execute(
            f"UPDATE accounts SET {sets} WHERE customer_id = $1",
            *self._values(account),
        )


_CODE_COLUMNS = (
    "code_id, kind, customer_id, code_hash, created_at, expires_at, attempts, used_at,"
    " purpose, reference, target, confirmed_at, consumed_at"
)


def _code(row: asyncpg.Record) -> OneTimeCode:
    values = dict(row)
    values["kind"] = CodeKind(values["kind"])
    return OneTimeCode(**values)


def _code_values(code: OneTimeCode) -> list[Any]:
    return [
        code.code_id, code.kind.value, code.customer_id, code.code_hash, code.created_at,
        code.expires_at, code.attempts, code.used_at, code.purpose, code.reference,
        code.target, code.confirmed_at, code.consumed_at,
    ]  # fmt: skip


class PostgresCodes:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    async def add(self, code: OneTimeCode) -> None:
        await self._conn.execute(
            f"INSERT INTO codes ({_CODE_COLUMNS}) VALUES"
            " ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
            *_code_values(code),
        )

    async def get(self, code_id: str) -> OneTimeCode | None:
        row = await self._conn.fetchrow(
            f"SELECT {_CODE_COLUMNS} FROM codes WHERE code_id = $1 FOR UPDATE", code_id
        )
        return None if row is None else _code(row)

    async def of_customer(self, customer_id: str, kind: CodeKind) -> list[OneTimeCode]:
        rows = await self._conn.fetch(
            f"SELECT {_CODE_COLUMNS} FROM codes WHERE customer_id = $1 AND kind = $2"
            " ORDER BY created_at FOR UPDATE",
            customer_id,
            kind.value,
        )
        return [_code(r) for r in rows]

    async def save(self, code: OneTimeCode) -> None:
        await self._conn.execute(
            "UPDATE codes SET attempts = $7, used_at = $8, confirmed_at = $12,"
            " consumed_at = $13 WHERE code_id = $1 AND kind = $2 AND customer_id = $3"
            " AND code_hash = $4 AND created_at = $5 AND expires_at = $6 AND purpose = $9"
            " AND reference = $10 AND target = $11",
            *_code_values(code),
        )


_SESSION_COLUMNS = (
    "session_id, customer_id, created_at, last_used_at, auth_time, amr, device_id, client,"
    " revoked_at, revoked_reason"
)


def _session(row: asyncpg.Record) -> Session:
    values = dict(row)
    values["amr"] = tuple(values["amr"])
    return Session(**values)


class PostgresSessions:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def _values(self, s: Session) -> list[Any]:
        return [
            s.session_id, s.customer_id, s.created_at, s.last_used_at, s.auth_time,
            list(s.amr), s.device_id, s.client, s.revoked_at, s.revoked_reason,
        ]  # fmt: skip

    async def add(self, session: Session) -> None:
        await self._conn.execute(
            f"INSERT INTO sessions ({_SESSION_COLUMNS}) VALUES"
            " ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            *self._values(session),
        )

    async def get(self, session_id: str) -> Session | None:
        row = await self._conn.fetchrow(
            f"SELECT {_SESSION_COLUMNS} FROM sessions WHERE session_id = $1 FOR UPDATE",
            session_id,
        )
        return None if row is None else _session(row)

    async def of_customer(self, customer_id: str) -> list[Session]:
        rows = await self._conn.fetch(
            f"SELECT {_SESSION_COLUMNS} FROM sessions WHERE customer_id = $1"
            " ORDER BY created_at FOR UPDATE",
            customer_id,
        )
        return [_session(r) for r in rows]

    async def save(self, session: Session) -> None:
        await self._conn.execute(
            "UPDATE sessions SET last_used_at = $2, revoked_at = $3, revoked_reason = $4"
            " WHERE session_id = $1",
            session.session_id,
            session.last_used_at,
            session.revoked_at,
            session.revoked_reason,
        )

    async def add_refresh(self, token: RefreshToken) -> None:
        await self._conn.execute(
            "INSERT INTO refresh_tokens (token_hash, session_id, issued_at, spent_at)"
            " VALUES ($1, $2, $3, $4)",
            token.token_hash,
            token.session_id,
            token.issued_at,
            token.spent_at,
        )

    async def refresh(self, token_hash: str) -> RefreshToken | None:
        row = await self._conn.fetchrow(
            "SELECT token_hash, session_id, issued_at, spent_at FROM refresh_tokens"
            " WHERE token_hash = $1 FOR UPDATE",
            token_hash,
        )
        return None if row is None else RefreshToken(**dict(row))

    async def save_refresh(self, token: RefreshToken) -> None:
        await self._conn.execute(
            "UPDATE refresh_tokens SET spent_at = $2 WHERE token_hash = $1",
            token.token_hash,
            token.spent_at,
        )


_DEVICE_COLUMNS = "device_id, customer_id, public_key, name, bound_at, revoked_at, last_used_at"


def _device(row: asyncpg.Record) -> Device:
    values = dict(row)
    values["public_key"] = bytes(values["public_key"])
    return Device(**values)


class PostgresDevices:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    async def add(self, device: Device) -> None:
        await self._conn.execute(
            f"INSERT INTO devices ({_DEVICE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            device.device_id, device.customer_id, device.public_key, device.name,
            device.bound_at, device.revoked_at, device.last_used_at,
        )  # fmt: skip

    async def get(self, device_id: str) -> Device | None:
        row = await self._conn.fetchrow(
            f"SELECT {_DEVICE_COLUMNS} FROM devices WHERE device_id = $1 FOR UPDATE", device_id
        )
        return None if row is None else _device(row)

    async def of_customer(self, customer_id: str) -> list[Device]:
        rows = await self._conn.fetch(
            f"SELECT {_DEVICE_COLUMNS} FROM devices WHERE customer_id = $1 ORDER BY bound_at",
            customer_id,
        )
        return [_device(r) for r in rows]

    async def save(self, device: Device) -> None:
        await self._conn.execute(
            "UPDATE devices SET revoked_at = $2, last_used_at = $3 WHERE device_id = $1",
            device.device_id,
            device.revoked_at,
            device.last_used_at,
        )


class PostgresThrottles:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    async def get(self, key: str) -> Throttle:
        await self._conn.execute(
            "INSERT INTO throttles (key, failures, window_count) VALUES ($1, 0, 0)"
            " ON CONFLICT DO NOTHING",
            key,
        )
        row = await self._conn.fetchrow(
            "SELECT key, failures, last_failure_at, blocked_until, window_start, window_count"
            " FROM throttles WHERE key = $1 FOR UPDATE",
            key,
        )
        assert row is not None
        return Throttle(**dict(row))

    async def save(self, throttle: Throttle) -> None:
        await self._conn.execute(
            "UPDATE throttles SET failures = $2, last_failure_at = $3, blocked_until = $4,"
            " window_start = $5, window_count = $6 WHERE key = $1",
            throttle.key, throttle.failures, throttle.last_failure_at, throttle.blocked_until,
            throttle.window_start, throttle.window_count,
        )  # fmt: skip


_POLICY_COLUMNS = (
    "policy_id, policy_number, carrier, policyholder_ids, cancelled, holders_enc, holders_at"
)


class PostgresPolicies:
    """Identity's view of contracts. The holders' details (ID-3) are personal data: one
    AES-256-GCM encrypted JSON list per policy."""

    def __init__(self, conn: Connection, cipher: FieldCipher) -> None:
        self._conn = conn
        self._cipher = cipher

    def _policy(self, row: asyncpg.Record) -> Policy:
        holders: tuple[Holder, ...] = ()
        if row["holders_enc"] is not None:
            entries = json.loads(self._cipher.decrypt(bytes(row["holders_enc"]), "policy_holders"))
            holders = tuple(
                Holder(e["customer_id"], e["given_name"], e["family_name"],
                       date.fromisoformat(e["birth_date"]), Address(**e["address"]))
                for e in entries
            )  # fmt: skip
        return Policy(
            row["policy_id"], row["policy_number"], Carrier(row["carrier"]),
            tuple(row["policyholder_ids"]), row["cancelled"], holders, row["holders_at"],
        )  # fmt: skip

    def _holders(self, policy: Policy) -> bytes | None:
        if not policy.holders:
            return None
        entries = [
            {"customer_id": h.customer_id, "given_name": h.given_name,
             "family_name": h.family_name, "birth_date": h.birth_date.isoformat(),
             "address": {"recipient": h.address.recipient, "street": h.address.street,
                         "postal_code": h.address.postal_code, "city": h.address.city,
                         "country": h.address.country}}
            for h in policy.holders
        ]  # fmt: skip
        return self._cipher.encrypt(json.dumps(entries), "policy_holders")

    async def get(self, policy_id: str) -> Policy | None:
        row = await self._conn.fetchrow(
            f"SELECT {_POLICY_COLUMNS} FROM policies WHERE policy_id = $1", policy_id
        )
        return None if row is None else self._policy(row)

    async def by_number(self, policy_number: str) -> Policy | None:
        row = await self._conn.fetchrow(
            f"SELECT {_POLICY_COLUMNS} FROM policies WHERE policy_number = $1"
            " ORDER BY cancelled LIMIT 1",
            policy_number,
        )
        return None if row is None else self._policy(row)

    async def of_holder(self, customer_id: str) -> list[Policy]:
        rows = await self._conn.fetch(
            f"SELECT {_POLICY_COLUMNS} FROM policies WHERE policyholder_ids @> ARRAY[$1]::text[]",
            customer_id,
        )
        return [self._policy(r) for r in rows]

    async def save(self, policy: Policy) -> None:
        await self._conn.execute(
            f"INSERT INTO policies ({_POLICY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"
            " ON CONFLICT (policy_id) DO UPDATE SET policy_number = EXCLUDED.policy_number,"
            " carrier = EXCLUDED.carrier, policyholder_ids = EXCLUDED.policyholder_ids,"
            " cancelled = EXCLUDED.cancelled, holders_enc = EXCLUDED.holders_enc,"
            " holders_at = EXCLUDED.holders_at",
            policy.policy_id, policy.policy_number, policy.carrier.value,
            list(policy.policyholder_ids), policy.cancelled, self._holders(policy),
            policy.holders_at,
        )  # fmt: skip


class PostgresSigningKeys:
    def __init__(self, conn: Connection, cipher: FieldCipher) -> None:
        self._conn = conn
        self._cipher = cipher

    async def all(self) -> list[SigningKey]:
        # Serialises key creation between instances: one current key at a time.
        await self._conn.execute("SELECT pg_advisory_xact_lock(hashtext('identity.keys'))")
        rows = await self._conn.fetch(
            "SELECT kid, private_jwk_enc, public_jwk, created_at, retired_at FROM signing_keys"
            " ORDER BY created_at"
        )
        return [
            SigningKey(
                r["kid"],
                json.loads(self._cipher.decrypt(bytes(r["private_jwk_enc"]), "private_jwk")),
                json.loads(r["public_jwk"]),
                r["created_at"],
                r["retired_at"],
            )
            for r in rows
        ]

    async def add(self, key: SigningKey) -> None:
        await self._conn.execute(
            "INSERT INTO signing_keys (kid, private_jwk_enc, public_jwk, created_at, retired_at)"
            " VALUES ($1, $2, $3::jsonb, $4, $5)",
            key.kid, self._cipher.encrypt(json.dumps(key.private_jwk), "private_jwk"),
            json.dumps(key.public_jwk), key.created_at, key.retired_at,
        )  # fmt: skip

    async def save(self, key: SigningKey) -> None:
        await self._conn.execute(
            "UPDATE signing_keys SET retired_at = $2 WHERE kid = $1", key.kid, key.retired_at
        )


_OPERATOR_COLUMNS = (
    "operator_id, username, username_key, password_hash, totp_secret_enc, created_at,"
    " last_login_at, last_totp_step, disabled_at"
)


class PostgresOperators:
    def __init__(self, conn: Connection, cipher: FieldCipher) -> None:
        self._conn = conn
        self._cipher = cipher

    async def by_username(self, key: str) -> Operator | None:
        row = await self._conn.fetchrow(
            f"SELECT {_OPERATOR_COLUMNS} FROM operators WHERE username_key = $1 FOR UPDATE", key
        )
        if row is None:
            return None
        values = dict(row)
        values["totp_secret"] = self._cipher.decrypt(
            bytes(values.pop("totp_secret_enc")), "totp_secret"
        )
        return Operator(**values)

    async def add(self, operator: Operator) -> None:
        try:
            await self._conn.execute(
                f"INSERT INTO operators ({_OPERATOR_COLUMNS})"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                operator.operator_id, operator.username, operator.username_key,
                operator.password_hash, self._cipher.encrypt(operator.totp_secret, "totp_secret"),
                operator.created_at, operator.last_login_at, operator.last_totp_step,
                operator.disabled_at,
            )  # fmt: skip
        except asyncpg.UniqueViolationError:
            raise OperatorTaken(operator.username) from None

    async def save(self, operator: Operator) -> None:
        await self._conn.execute(
            "UPDATE operators SET password_hash = $2, last_login_at = $3, last_totp_step = $4,"
            " disabled_at = $5 WHERE operator_id = $1",
            operator.operator_id, operator.password_hash, operator.last_login_at,
            operator.last_totp_step, operator.disabled_at,
        )  # fmt: skip


class PostgresIdentityUnitOfWork(PostgresUnitOfWork):
    def __init__(self, conn: Connection, store: EventStore, cipher: FieldCipher) -> None:
        super().__init__(conn, store)
        self.accounts = PostgresAccounts(conn, cipher)
        self.codes = PostgresCodes(conn)
        self.sessions = PostgresSessions(conn)
        self.devices = PostgresDevices(conn)
        self.throttles = PostgresThrottles(conn)
        self.policies = PostgresPolicies(conn, cipher)
        self.signing_keys = PostgresSigningKeys(conn, cipher)
        self.operators = PostgresOperators(conn, cipher)
