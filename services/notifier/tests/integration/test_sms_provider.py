"""NT-1/NT-4: SMS through a real HTTP server standing in for the provider (Vonage Messages
API shape), started on 127.0.0.1 with a random port; it fails on demand."""

from __future__ import annotations

import base64
import random
from datetime import timedelta

import httpx
import pytest
from notifier.adapters.channel import PermanentSendError, RetryableSendError
from notifier.adapters.sms_http import VonageSmsChannel, VonageSmsSettings
from notifier.domain.delivery import (
    DeliveryStatus,
    RetryPolicy,
    begin_attempt,
    queued,
    record_failure,
    record_sent,
)
from notifier.domain.plan import plan_messages, withheld_values
from servicekit.clock import FixedClock


def settings_for(base_url: str, **overrides) -> VonageSmsSettings:
    defaults = {
        "api_key": "abcd1234",
        "api_secret": "Sup3rSecret",
        "base_url": base_url,
        "sender": "Allianz",
        "timeout": 2.0,
    }
    return VonageSmsSettings(**{**defaults, **overrides})


@pytest.fixture
def login_code(ev, renderer):
    event = ev.login_code()
    (message,) = plan_messages(event, None)
    return message, renderer.render(message, withheld=withheld_values(event))


async def test_nt4_two_provider_500s_are_retried_with_backoff_until_the_sms_is_accepted(
    sms_provider, ev, login_code
):
    message, rendered = login_code
    sms_provider.fail_then_accept(failures=2, status=500)
    policy = RetryPolicy(max_attempts=5)
    jitter = random.Random(7).random
    now = ev.now
    delivery = queued(message, now)

    clock = FixedClock(now)
    async with httpx.AsyncClient() as client:
        channel = VonageSmsChannel(client, settings_for(sms_provider.base_url), clock=clock)
        errors: list[RetryableSendError] = []
        while delivery.status is not DeliveryStatus.SENT:
            delivery = begin_attempt(delivery, now, policy)
            assert delivery.status is DeliveryStatus.SENDING
            try:
                reference = await channel.send(message, rendered)
            except RetryableSendError as error:
                errors.append(error)
                delivery = record_failure(delivery, error.reason, now, jitter, policy)
                assert delivery.status is DeliveryStatus.FAILED
                assert delivery.next_attempt_at is not None
                assert delivery.next_attempt_at - now <= policy.base_delay * 2 ** (
                    delivery.attempts - 1
                )
                now = delivery.next_attempt_at
                clock.set(now)
            else:
                delivery = record_sent(delivery, reference, now)

    assert [e.reason for e in errors] == ["sms http 500: Internal Error"] * 2
    assert delivery.attempts == 3
    assert len(sms_provider.requests) == 3
    # NT-4: every attempt carries the same client reference, so a retried send is recognisable.
    assert {r.json()["client_ref"] for r in sms_provider.requests} == {message.message_key}
    assert delivery.provider_ref is not None
    assert len(delivery.provider_ref) == 36


async def test_nt1_the_request_has_the_shape_of_the_vonage_messages_api(
    sms_provider, ev, login_code
):
    message, rendered = login_code

    async with httpx.AsyncClient() as client:
        channel = VonageSmsChannel(
            client, settings_for(sms_provider.base_url), clock=FixedClock(ev.now)
        )
        await channel.send(message, rendered)

    (request,) = sms_provider.requests
    assert request.method == "POST"
    assert request.path == "/v1/messages"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["accept"] == "application/json"
    credentials = base64.b64encode(b"abcd1234:Sup3rSecret").decode()
    assert request.headers["authorization"] == f"Basic {credentials}"
    assert request.json() == {
        "message_type": "text",
        "channel": "sms",
        "to": "491512345678",
        "from": "Allianz",
        "text": "482913 ist Ihr Anmeldecode für Meine Allianz. Gültig bis 14:40 Uhr. "
        "Geben Sie den Code niemals weiter.",
        "client_ref": message.message_key,
        "ttl": 300,
        "sms": {"encoding_type": "text"},
    }


async def test_nt4_provider_throttling_is_retryable_with_its_retry_after(
    sms_provider, ev, login_code
):
    message, rendered = login_code
    sms_provider.answer(429, {"title": "Too Many Requests"}, {"Retry-After": "20"})

    async with httpx.AsyncClient() as client:
        channel = VonageSmsChannel(
            client, settings_for(sms_provider.base_url), clock=FixedClock(ev.now)
        )
        with pytest.raises(RetryableSendError) as raised:
            await channel.send(message, rendered)

    assert raised.value.retry_after == timedelta(seconds=20)


async def test_nt4_an_invalid_number_rejected_with_422_is_permanent(sms_provider, ev, login_code):
    message, rendered = login_code
    problem = {
        "type": "https://developer.vonage.com/api-errors/messages#1150",
        "title": "Invalid params",
        "detail": "The value of one or more parameters is invalid.",
        "invalid_parameters": [{"name": "to", "reason": "Invalid number"}],
    }
    sms_provider.answer(422, problem)

    async with httpx.AsyncClient() as client:
        channel = VonageSmsChannel(
            client, settings_for(sms_provider.base_url), clock=FixedClock(ev.now)
        )
        with pytest.raises(PermanentSendError, match="422: Invalid params"):
            await channel.send(message, rendered)


async def test_nt4_a_provider_that_does_not_answer_in_time_is_retryable(
    sms_provider, ev, login_code
):
    message, rendered = login_code
    sms_provider.answer(202, {"message_uuid": "late"}, delay=1.0)

    async with httpx.AsyncClient() as client:
        channel = VonageSmsChannel(
            client, settings_for(sms_provider.base_url, timeout=0.2), clock=FixedClock(ev.now)
        )
        with pytest.raises(RetryableSendError, match="timeout"):
            await channel.send(message, rendered)


async def test_nt4_an_unreachable_provider_is_retryable(closed_port, ev, login_code):
    message, rendered = login_code

    async with httpx.AsyncClient() as client:
        channel = VonageSmsChannel(
            client, settings_for(f"http://127.0.0.1:{closed_port}"), clock=FixedClock(ev.now)
        )
        with pytest.raises(RetryableSendError, match="transport"):
            await channel.send(message, rendered)
