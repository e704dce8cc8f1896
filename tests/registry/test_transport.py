"""Transport pieces that need no registry: SSL contexts, per-host limits, the session's lifetime."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import pytest
import trustme

from mirrord.registry.http.transport import HostLimits, Transport, build_ssl_context
from mirrord.registry.settings import RegistrySettings, TLSSettings


def test_ssl_context_verification_ca_and_client_certificate(tmp_path: Path) -> None:
    ca = trustme.CA()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    client = ca.issue_cert("client.example")
    cert_file, key_file = tmp_path / "client.pem", tmp_path / "client.key"
    for blob in client.cert_chain_pems:
        blob.write_to_path(str(cert_file), append=True)
    client.private_key_pem.write_to_path(str(key_file))

    strict = build_ssl_context(
        TLSSettings(ca_file=str(ca_file), client_cert=str(cert_file), client_key=str(key_file))
    )
    assert strict.verify_mode == ssl.CERT_REQUIRED
    assert strict.check_hostname
    assert any("trustme" in str(c) for c in strict.get_ca_certs())  # the private CA is trusted
    loose = build_ssl_context(TLSSettings(verify=False))
    assert loose.verify_mode == ssl.CERT_NONE
    assert not loose.check_hostname


async def test_host_limits_cap_concurrency() -> None:
    limits = HostLimits(max_connections=2, requests_per_second=None)
    await limits.acquire()
    await limits.acquire()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(limits.acquire(), 0.05)
    limits.release()
    await asyncio.wait_for(limits.acquire(), 1)


async def test_fractional_rate_limit() -> None:
    limits = HostLimits(max_connections=10, requests_per_second=2.5)
    assert limits.throttler is not None
    assert (limits.throttler.rate_limit, limits.throttler.period) == (2, 0.8)


async def test_limits_are_per_host_and_forgotten_on_reload() -> None:
    transport = Transport()
    a = transport.limits_for(RegistrySettings(host="a.example"))
    assert transport.limits_for(RegistrySettings(host="a.example", max_connections=1)) is a
    assert transport.limits_for(RegistrySettings(host="b.example")) is not a
    transport.forget_limits("a.example")
    assert transport.limits_for(RegistrySettings(host="a.example")) is not a


async def test_session_exists_only_inside_the_context() -> None:
    transport = Transport()
    with pytest.raises(RuntimeError):
        _ = transport.session
    async with transport:
        assert not transport.session.closed
    with pytest.raises(RuntimeError):
        _ = transport.session


async def test_try_acquire_takes_a_free_slot_and_never_one_it_would_wait_for() -> None:
    limits = HostLimits(max_connections=2, requests_per_second=None)
    assert limits.try_acquire() == 0
    assert limits.try_acquire() == 0
    assert limits.try_acquire() is None  # full: acquire() would wait
    limits.release()
    limits.pacer.observe(1, 60.0)  # pacing: acquire() may sleep
    assert limits.try_acquire() is None
    limits.pacer.observe(100)
    assert limits.try_acquire() == 0
    throttled = HostLimits(max_connections=2, requests_per_second=5)
    assert throttled.try_acquire() is None  # the rate limiter decides
    assert throttled.concurrency.in_use == 0
