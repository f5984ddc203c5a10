"""ID-4 login and tokens, ID-5 SMS factor and devices, ID-6 mTAN, ID-7 recovery, ID-8
contact changes, ID-9 cancellation, ID-10 assurance claims."""

from __future__ import annotations

import hashlib
from typing import Any

import jwt
import pytest
from contracts_schemas import identity as ev
from contracts_schemas.common import Carrier
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from identity import commands as c
from identity.domain.model import Outcome
from identity.domain.rules import IdentityError, Reason
from identity.handlers import Refused, device_login_message
from identity_world import PASSWORD, World, policy_issued
from servicekit.auth import AuthLevel, StaticKeys, TokenVerifier

NEW_PASSWORD = "Holunderbluete-Abendwind-42"


async def verifier(world: World) -> TokenVerifier:
    jwks = await world.run(world.identity.published_keys, c.PublishedKeys())
    return TokenVerifier(StaticKeys(jwks.data), world.clock, "portal", "portal-identity")


def claims(token: str) -> dict[str, Any]:
    decoded: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return decoded


async def test_id4_id10_tokens_are_eddsa_short_lived_and_say_how_the_login_was_made(
    world: World,
) -> None:
    await world.register()
    tokens = await world.tokens()
    principal = await (await verifier(world)).verify(str(tokens["access_token"]))
    assert principal.customer_id == world.customer_id()
    assert principal.auth_level is AuthLevel.PASSWORD
    header = jwt.get_unverified_header(str(tokens["access_token"]))
    assert header["alg"] == "EdDSA"
    assert header["kid"]
    body = claims(str(tokens["access_token"]))
    assert body["exp"] - body["iat"] <= 15 * 60
    assert body["amr"] == ["pwd"]
    assert body["acr"] == "urn:portal:acr:password"
    assert body["auth_time"] == int(world.clock.now().timestamp())


async def test_id4_the_previous_successful_login_time_is_returned(world: World) -> None:
    await world.register()
    first = await world.tokens()
    assert first["previous_login_at"] is None
    before = world.clock.now()
    world.advance(hours=3)
    assert (await world.tokens())["previous_login_at"] == before


async def test_id4_unknown_usernames_and_wrong_passwords_get_the_same_answer(
    world: World,
) -> None:
    await world.register()
    unknown = await world.login("nobody", PASSWORD, client="203.0.113.1")
    wrong = await world.login("erika", "falsch-falsch-falsch", client="203.0.113.2")
    assert isinstance(unknown, Refused)
    assert isinstance(wrong, Refused)
    assert (unknown.error.reason, unknown.error.detail) == (wrong.error.reason, wrong.error.detail)


async def test_id4_failures_slow_down_then_lock_temporarily_and_the_customer_is_told(
    world: World,
) -> None:
    await world.register()
    waits = []
    for _ in range(8):
        result = await world.login(password="falsch-falsch-falsch")
        assert isinstance(result, Refused)
        blocked = world.uow.throttles.rows["user:erika"].blocked_until
        waits.append(0 if blocked is None else (blocked - world.clock.now()).total_seconds())
        world.advance(seconds=waits[-1])
    assert waits[:3] == [0, 0, 2]
    assert waits[3:] == sorted(waits[3:])
    assert waits[-1] <= 1800
    assert world.published(ev.AccountLocked)
    # while blocked even the right password is refused, as is an unknown user
    world.advance(seconds=-1)
    blocked = await world.login()
    assert isinstance(blocked, Refused)
    assert blocked.error.reason is Reason.THROTTLED
    world.advance(hours=2)  # never permanent
    assert isinstance(await world.login(), Outcome)


async def test_id4_id7_a_password_reset_clears_the_lock(world: World) -> None:
    await world.register()
    customer = world.customer_id()
    code = world.last(ev.EmailVerificationCodeIssued).code
    await world.run(world.identity.verify_email, c.VerifyEmail(customer, code))
    for _ in range(6):
        await world.login(password="falsch-falsch-falsch")
        world.advance(seconds=1)
    assert isinstance(await world.login(), Refused)
    await world.run(world.identity.request_password_reset, c.RequestPasswordReset("ERIKA"))
    token = world.last(ev.PasswordResetRequested).reset_url.split("token=")[1]
    done = await world.run(world.identity.reset_password, c.ResetPassword(token, NEW_PASSWORD))
    assert done.status == "password_changed"
    assert isinstance(await world.login(password=NEW_PASSWORD), Outcome)
    with pytest.raises(IdentityError):  # single use
        await world.run(world.identity.reset_password, c.ResetPassword(token, NEW_PASSWORD))


async def test_id7_recovery_answers_alike_for_unknown_accounts(world: World) -> None:
    await world.register()
    customer = world.customer_id()
    code = world.last(ev.EmailVerificationCodeIssued).code
    await world.run(world.identity.verify_email, c.VerifyEmail(customer, code))
    known = await world.run(world.identity.remind_username, c.RemindUsername("ERIKA@example.org"))
    unknown = await world.run(world.identity.remind_username, c.RemindUsername("x@example.org"))
    assert known == unknown
    assert world.last(ev.UsernameReminderRequested).username == "erika"
    reset_known = await world.run(
        world.identity.request_password_reset, c.RequestPasswordReset("erika")
    )
    reset_unknown = await world.run(
        world.identity.request_password_reset, c.RequestPasswordReset("nobody")
    )
    assert reset_known == reset_unknown
    world.advance(minutes=31)
    token = world.last(ev.PasswordResetRequested).reset_url.split("token=")[1]
    with pytest.raises(IdentityError):  # at most 30 minutes
        await world.run(world.identity.reset_password, c.ResetPassword(token, NEW_PASSWORD))


async def test_id4_refresh_tokens_rotate_and_reuse_revokes_the_family(world: World) -> None:
    await world.register()
    first = await world.tokens()
    second = await world.run(world.identity.refresh, c.Refresh(str(first["refresh_token"])))
    assert isinstance(second, Outcome)
    assert second.data["refresh_token"] != first["refresh_token"]
    reused = await world.run(world.identity.refresh, c.Refresh(str(first["refresh_token"])))
    assert isinstance(reused, Refused)
    after = await world.run(world.identity.refresh, c.Refresh(str(second.data["refresh_token"])))
    assert isinstance(after, Refused)  # the whole family ended


async def test_id4_idle_sessions_end_after_15_minutes_and_logout_revokes(world: World) -> None:
    await world.register()
    tokens = await world.tokens()
    world.advance(minutes=16)
    assert isinstance(
        await world.run(world.identity.refresh, c.Refresh(str(tokens["refresh_token"]))), Refused
    )
    other = await world.tokens()
    await world.run(world.identity.logout, c.Logout(str(other["refresh_token"])))
    assert isinstance(
        await world.run(world.identity.refresh, c.Refresh(str(other["refresh_token"]))), Refused
    )


async def test_id4_rotated_keys_stay_published_until_their_tokens_expired(world: World) -> None:
    await world.register()
    old = await world.tokens()
    await world.run(world.identity.rotate_signing_key, c.RotateSigningKey())
    new = await world.tokens()
    old_kid = jwt.get_unverified_header(str(old["access_token"]))["kid"]
    new_kid = jwt.get_unverified_header(str(new["access_token"]))["kid"]
    assert old_kid != new_kid
    await (await verifier(world)).verify(str(old["access_token"]))
    world.advance(minutes=6)
    jwks = await world.run(world.identity.published_keys, c.PublishedKeys())
    assert [k["kid"] for k in jwks.data["keys"]] == [new_kid]


async def two_factor_world(world: World) -> str:
    await world.register()
    customer = world.customer_id()
    await world.tokens()
    await world.enable_two_factor(customer)
    return customer


async def test_id5_enabling_2fa_ends_sessions_and_logins_then_need_the_sms_code(
    world: World,
) -> None:
    await world.register()
    customer = world.customer_id()
    before = await world.tokens()
    await world.enable_two_factor(customer)
    assert world.last(ev.TwoFactorEnabled).mobile_masked.endswith("678")
    assert world.last(ev.ContactDetailsChanged).mobile == "+4915112345678"
    assert isinstance(
        await world.run(world.identity.refresh, c.Refresh(str(before["refresh_token"]))), Refused
    )
    step = await world.login()
    assert isinstance(step, Outcome)
    assert step.status == "sms_required"
    sms = world.last(ev.LoginCodeRequested)
    assert len(sms.code) == 6
    assert sms.code.isdigit()
    assert (sms.expires_at - world.clock.now()).total_seconds() <= 600
    result = await world.run(
        world.identity.login_with_sms, c.LoginWithSms(str(step.data["login_ticket"]), sms.code)
    )
    assert isinstance(result, Outcome)
    assert result.status == "authenticated"
    principal = await (await verifier(world)).verify(str(result.data["access_token"]))
    assert principal.auth_level is AuthLevel.PASSWORD_AND_SMS
    assert claims(str(result.data["access_token"]))["acr"] == "urn:portal:acr:2fa"
    again = await world.run(
        world.identity.login_with_sms, c.LoginWithSms(str(step.data["login_ticket"]), sms.code)
    )
    assert isinstance(again, Refused)  # single use


async def test_id5_five_tries_per_code_and_100_failures_lock_the_factor(world: World) -> None:
    customer = await two_factor_world(world)
    step = await world.login()
    assert isinstance(step, Outcome)
    ticket = str(step.data["login_ticket"])
    right = world.last(ev.LoginCodeRequested).code
    wrong = "000000" if right != "000000" else "111111"
    for _ in range(5):
        await world.run(world.identity.login_with_sms, c.LoginWithSms(ticket, wrong))
    spent = await world.run(world.identity.login_with_sms, c.LoginWithSms(ticket, right))
    assert isinstance(spent, Refused)
    world.uow.accounts.rows[customer].sms_failures = 99
    await world.run(world.identity.login_with_sms, c.LoginWithSms(ticket, wrong))
    assert world.uow.accounts.rows[customer].sms_factor_locked
    locked = await world.login()
    assert isinstance(locked, Refused)
    assert locked.error.reason is Reason.FACTOR_LOCKED


async def test_id5_sms_sends_are_rate_limited_per_account(world: World) -> None:
    await two_factor_world(world)
    results = [await world.login() for _ in range(6)]
    assert [r.status for r in results if isinstance(r, Outcome)].count("sms_required") == 4
    last = results[-1]
    assert isinstance(last, Refused)
    assert last.error.reason is Reason.SMS_RATE_LIMITED


async def test_id5_a_bound_device_logs_in_by_signing_a_challenge(world: World) -> None:
    customer = await two_factor_world(world)
    step = await world.login()
    assert isinstance(step, Outcome)
    code = world.last(ev.LoginCodeRequested).code
    sms = await world.run(
        world.identity.login_with_sms, c.LoginWithSms(str(step.data["login_ticket"]), code)
    )
    key = ed25519.Ed25519PrivateKey.generate()
    public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    bound = await world.run(
        world.identity.bind_device, c.BindDevice(customer, tuple(sms.data["amr"]), public, "Pixel")
    )
    device_id = str(bound.data["device_id"])
    challenge = await world.run(world.identity.device_challenge, c.DeviceChallenge(device_id))
    signature = key.sign(device_login_message(
        str(challenge.data["challenge_id"]), str(challenge.data["nonce"])))  # fmt: skip
    sent = len(world.published(ev.LoginCodeRequested))
    result = await world.login(
        device_id=device_id, challenge_id=str(challenge.data["challenge_id"]), signature=signature
    )
    assert isinstance(result, Outcome)
    assert result.status == "authenticated"
    assert result.data["amr"] == ["pwd", "hwk", "mfa"]
    assert len(world.published(ev.LoginCodeRequested)) == sent  # no SMS on that device
    devices = await world.run(world.identity.devices, c.CustomerQuery(customer))
    assert [d["name"] for d in devices.data["devices"]] == ["Pixel"]  # type: ignore[attr-defined]
    await world.run(world.identity.revoke_device, c.RevokeDevice(customer, device_id))
    challenge = await world.run(world.identity.device_challenge, c.DeviceChallenge(device_id))
    signature = key.sign(device_login_message(
        str(challenge.data["challenge_id"]), str(challenge.data["nonce"])))  # fmt: skip
    fallback = await world.login(
        device_id=device_id, challenge_id=str(challenge.data["challenge_id"]), signature=signature
    )
    assert isinstance(fallback, Outcome)
    assert fallback.status == "sms_required"


async def test_id5_binding_a_device_needs_an_sms_login(world: World) -> None:
    await world.register()
    key = ed25519.Ed25519PrivateKey.generate().public_key()
    with pytest.raises(IdentityError) as refused:
        await world.run(
            world.identity.bind_device,
            c.BindDevice(
                world.customer_id(), ("pwd",), key.public_bytes(Encoding.Raw, PublicFormat.Raw)
            ),
        )
    assert refused.value.reason is Reason.SECOND_FACTOR_REQUIRED


async def test_id6_an_mtan_confirms_one_operation_with_its_parameters_once(world: World) -> None:
    customer = await two_factor_world(world)
    reference = "pol-1:" + hashlib.sha256(b"pol-1\nDE02120300000000202051").hexdigest()[:32]
    mtan_id = await world.confirmed_mtan(customer, "bank_details_change", reference)
    other = await world.run(world.identity.consume_mtan, c.ConsumeMtan(customer, mtan_id, "x"))
    assert other.data["reference"] == reference  # a mismatch is left for the caller to see
    used = await world.run(world.identity.consume_mtan,
                           c.ConsumeMtan(customer, mtan_id, reference))  # fmt: skip
    assert used.data["confirmed"] is True
    assert used.data["purpose"] == "bank_details_change"
    retried = await world.run(world.identity.consume_mtan,
                              c.ConsumeMtan(customer, mtan_id, reference))  # fmt: skip
    assert retried.data == used.data  # the caller's retry: the same change, the same answer
    another = await world.run(world.identity.consume_mtan, c.ConsumeMtan(customer, mtan_id, "x"))
    assert another.data["confirmed"] is False  # used up: it confirms no other change
    with pytest.raises(IdentityError):
        await world.run(world.identity.consume_mtan, c.ConsumeMtan("someone", mtan_id, reference))


async def test_id6_a_confirmation_is_valid_five_minutes(world: World) -> None:
    customer = await two_factor_world(world)
    mtan_id = await world.confirmed_mtan(customer, "bank_details_change", "ref")
    world.advance(minutes=5, seconds=1)
    late = await world.run(world.identity.consume_mtan, c.ConsumeMtan(customer, mtan_id, "ref"))
    assert late.data["confirmed"] is False


async def test_id6_a_used_mtan_answers_a_retry_of_its_change_only_while_fresh(
    world: World,
) -> None:
    customer = await two_factor_world(world)
    mtan_id = await world.confirmed_mtan(customer, "bank_details_change", "ref")
    used = await world.run(world.identity.consume_mtan, c.ConsumeMtan(customer, mtan_id, "ref"))
    assert used.data["confirmed"] is True
    world.advance(minutes=5, seconds=1)
    late = await world.run(world.identity.consume_mtan, c.ConsumeMtan(customer, mtan_id, "ref"))
    assert late.data["confirmed"] is False


async def test_id6_id5_turning_2fa_off_needs_an_mtan(world: World) -> None:
    customer = await two_factor_world(world)
    first = await world.run(world.identity.disable_two_factor, c.DisableTwoFactor(customer))
    assert first.status == "mtan_required"
    code = world.last(ev.MtanRequested).code
    mtan_id = str(first.data["mtan_id"])
    await world.run(world.identity.confirm_mtan, c.ConfirmMtan(customer, mtan_id, code))
    done = await world.run(world.identity.disable_two_factor, c.DisableTwoFactor(customer, mtan_id))
    assert done.status == "two_factor_off"
    assert world.last(ev.TwoFactorDisabled).customer_id == customer


async def test_id5_changing_the_mobile_needs_the_old_factor(world: World) -> None:
    customer = await two_factor_world(world)
    first = await world.run(world.identity.change_mobile, c.ChangeMobile(customer, "+4917099999"))
    assert first.status == "mtan_required"
    assert world.last(ev.MtanRequested).mobile == "+4915112345678"  # the old number
    with pytest.raises(IdentityError):  # an mTAN for another number does not count
        await world.run(
            world.identity.change_mobile,
            c.ChangeMobile(customer, "+4917011111", str(first.data["mtan_id"])),
        )


async def test_id8_a_new_email_is_verified_and_the_old_address_told(world: World) -> None:
    await world.register()
    customer = world.customer_id()
    await world.run(world.identity.change_email,
                    c.ChangeEmail(customer, "neu@example.org", PASSWORD))  # fmt: skip
    assert world.last(ev.EmailVerificationCodeIssued).email == "neu@example.org"
    code = world.last(ev.EmailVerificationCodeIssued).code
    await world.run(world.identity.verify_email, c.VerifyEmail(customer, code))
    changed = world.last(ev.ContactDetailsChanged)
    assert (changed.email, changed.previous_email) == ("neu@example.org", "erika@example.org")


async def test_id9_cancellation_is_refused_while_an_investment_contract_is_held(
    world: World,
) -> None:
    await world.run(
        world.identity.record_policies, [policy_issued("INV-1", ("P-9",), Carrier.ALLVEST)]
    )
    await world.register(policy_number="INV-1")
    with pytest.raises(IdentityError) as refused:
        await world.run(world.identity.cancel_account, c.CancelAccount("P-9", PASSWORD))
    assert refused.value.reason is Reason.CANCELLATION_REFUSED
    assert "Allvest" in refused.value.detail
    assert not world.published(ev.AccountCancelled)


async def test_id9_cancellation_ends_sessions_and_emits_account_cancelled(world: World) -> None:
    await world.register()
    tokens = await world.tokens()
    customer = world.customer_id()
    done = await world.run(world.identity.cancel_account, c.CancelAccount(customer, PASSWORD))
    assert done.status == "account_cancelled"
    assert world.last(ev.AccountCancelled).customer_id == customer
    assert isinstance(
        await world.run(world.identity.refresh, c.Refresh(str(tokens["refresh_token"]))), Refused
    )
    assert isinstance(await world.login(), Refused)
