"""Outgoing webhooks cannot be pointed at internal addresses (SSRF).

The rules are pure (webhook_rules); the channel resolves the host at every send, refuses when
any address is not public, and calls the address it checked (so DNS re-pointed between the
check and the call changes nothing). The loopback tests use a real HTTP receiver on 127.0.0.1
and a resolver stand-in for names (DNS is not the system under test).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import Any
from uuid import uuid4

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from notifier.channels import Failed, Sent
from notifier.channels.webhook import WebhookChannel
from notifier.channels.webhook_rules import RefusedDestination, check_addresses, check_host
from tests.integration.notifier_harness import WebhookReceiver, running_receiver

INTERNAL = [
    "127.0.0.1",
    "127.1.2.3",
    "10.0.0.1",
    "172.16.5.4",
    "192.168.1.1",
    "169.254.169.254",  # cloud metadata
    "100.64.0.1",  # carrier-grade NAT
    "0.0.0.0",
    "255.255.255.255",
    "224.0.0.1",
    "::1",
    "::",
    "fe80::1",
    "fc00::1",
    "fd00:ec2::254",  # AWS metadata over IPv6
    "::ffff:127.0.0.1",  # IPv4-mapped
    "::ffff:169.254.169.254",
    "::127.0.0.1",  # IPv4-compatible (deprecated, still routed by some stacks)
    "::ffff:0:7f00:1",  # IPv4-translated
    "64:ff9b::7f00:1",  # NAT64 to 127.0.0.1
    "64:ff9b::a9fe:a9fe",  # NAT64 to 169.254.169.254
    "64:ff9b:1::a00:1",  # local-use NAT64 to 10.0.0.1
    "2002:7f00:1::",  # 6to4 of 127.0.0.1
    "2002:a9fe:a9fe::1",  # 6to4 of 169.254.169.254
    "ff02::1",
]
PUBLIC = ["93.184.216.34", "8.8.8.8", "2606:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808"]


@pytest.mark.parametrize("ip", INTERNAL)
def test_internal_addresses_are_refused(ip: str) -> None:
    with pytest.raises(RefusedDestination):
        check_addresses([ip], allow_private=False)


@pytest.mark.parametrize("ip", PUBLIC)
def test_public_addresses_pass(ip: str) -> None:
    check_addresses([ip], allow_private=False)


def test_one_internal_address_among_public_ones_refuses_the_name() -> None:
    with pytest.raises(RefusedDestination):
        check_addresses(["93.184.216.34", "10.0.0.7"], allow_private=False)


def test_the_operator_setting_allows_private_but_never_multicast_or_unspecified() -> None:
    check_addresses(["127.0.0.1", "10.0.0.1", "::1"], allow_private=True)
    for ip in ("0.0.0.0", "::", "224.0.0.1", "ff02::1"):
        with pytest.raises(RefusedDestination):
            check_addresses([ip], allow_private=True)


@settings(max_examples=500, deadline=None, derandomize=True)
@given(st.ip_addresses())
def test_any_address_is_refused_unless_python_and_its_embedded_ipv4_call_it_global(
    ip: Any,
) -> None:
    try:
        check_addresses([str(ip)], allow_private=False)
    except RefusedDestination:
        return
    assert ip.is_global
    assert not ip.is_multicast


@pytest.mark.parametrize(
    "url",
    [
        "http://hooks.example.com:99999/",
        "http://hooks.example.com:-1/",
        "http://hooks.example.com:8o/",
        "http://user@hooks.example.com/",
        "gopher://hooks.example.com/",
        "http:///path-only",
        "http://hooks.example.com.evil.example/",
        "http://evilhooks.example.com/",
        "http://hooks.example.com\\@evil.example/",
    ],
)
def test_urls_off_the_allow_list_or_malformed_are_refused(url: str) -> None:
    with pytest.raises(RefusedDestination):
        check_host(url, ["hooks.example.com"])


def _resolver(*answers: list[str]) -> Any:
    """getaddrinfo returning the next list of addresses at each call (a rebinding DNS)."""
    calls = iter(answers)

    async def getaddrinfo(host: str, port: int, **_: Any) -> list[Any]:
        return [
            (socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
            for a in next(calls)
        ]

    return getaddrinfo


def _channel(allowed: list[str], allow_private: bool = False) -> WebhookChannel:
    return WebhookChannel(secret="s", allowed_hosts=allowed, allow_private=allow_private, timeout=2)


async def test_a_name_resolving_to_the_metadata_address_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    loop = asyncio.get_running_loop()
    monkeypatch.setattr(loop, "getaddrinfo", _resolver(["169.254.169.254"]))
    with pytest.raises(RefusedDestination):
        await _channel(["hooks.example.com"]).resolve("https://hooks.example.com/x")


async def test_each_send_resolves_again_and_calls_the_checked_address(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Public at the first send, re-pointed at loopback before the second: the second is
    refused; and a send calls the IP it checked, with the name only in Host (and SNI)."""
    loop = asyncio.get_running_loop()
    monkeypatch.setattr(loop, "getaddrinfo", _resolver(["93.184.216.34"], ["127.0.0.1"]))
    channel = _channel(["hooks.example.com"])
    target, host = await channel.resolve("https://hooks.example.com/x?a=1")
    assert (target, host) == ("https://93.184.216.34:443/x?a=1", "hooks.example.com")
    with pytest.raises(RefusedDestination):
        await channel.resolve("https://hooks.example.com/x?a=1")


@pytest.fixture
async def receiver() -> AsyncIterator[WebhookReceiver]:
    async with running_receiver() as server:
        yield server


@pytest.mark.integration
async def test_localhost_is_refused_by_default_and_nothing_reaches_it(
    receiver: WebhookReceiver,
) -> None:
    """`localhost` resolves (through the real resolver) to loopback: refused, never called,
    even with the name on the allow-list; the explicit operator setting lets it through."""
    url = receiver.url.replace("127.0.0.1", "localhost")
    for target in (url, receiver.url):
        outcome = await _channel(["localhost", "127.0.0.1"]).deliver(
            target, uuid4(), {"x": 1}, event="touch"
        )
        assert isinstance(outcome, Failed)
        assert "destination refused" in outcome.error
    assert receiver.received == []
    allowed = await _channel(["127.0.0.1"], allow_private=True).deliver(
        receiver.url, uuid4(), {"x": 1}, event="touch"
    )
    assert isinstance(allowed, Sent)
    assert len(receiver.received) == 1


@pytest.mark.integration
async def test_a_redirect_to_an_internal_address_is_not_followed(
    receiver: WebhookReceiver,
) -> None:
    receiver.script.append((302, {"Location": "http://169.254.169.254/latest/meta-data/"}))
    outcome = await _channel(["127.0.0.1"], allow_private=True).deliver(
        receiver.url, uuid4(), {"x": 1}, event="touch"
    )
    assert isinstance(outcome, Failed)
    assert "302" in outcome.error
    assert len(receiver.received) == 1
