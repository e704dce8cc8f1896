"""The HTTP repository against an in-process fake registry: every Repository method, auth modes,
retries, redirects, resumed downloads, verified uploads and cancellation of failed ones."""

from __future__ import annotations

import asyncio
import hashlib
import os
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.client_reqrep import ConnectionKey

from mirrord.core.events import (
    BytesTransferred,
    Event,
    EventBus,
    HttpRequestDone,
    ImageDone,
    RateLimitObserved,
    RetryScheduled,
)
from mirrord.oci import Digest, ImageIndex, ImageManifest
from mirrord.oci import mediatypes as mt
from mirrord.registry.errors import (
    AuthError,
    DigestMismatch,
    NotFound,
    ProtocolError,
    RequestRejected,
    ServerError,
    TransportError,
    Unreachable,
)
from mirrord.registry.http.client import RegistryClient
from mirrord.registry.http.repository import HTTPRepository
from mirrord.registry.http.retry import RetryPolicy
from mirrord.registry.http.transport import Transport, network_error
from mirrord.registry.http.upload import HTTPUploadSession

from .fakeregistry import FakeRegistry, Seen, data_server, dumps, running

FAST = RetryPolicy(base=0.001, cap=0.005, retry_after_cap=0.05)


@pytest.fixture
def events() -> list[Event]:
    return []


@pytest.fixture
async def transport(events: list[Event]) -> AsyncIterator[Transport]:
    bus = EventBus()
    bus.subscribe(events.append)
    async with Transport(events=bus, connect_timeout=5, read_timeout=5) as transport:
        yield transport


@pytest.fixture
async def fake() -> AsyncIterator[FakeRegistry]:
    async with running(FakeRegistry()) as fake:
        yield fake


def repo_of(
    fake: FakeRegistry, transport: Transport, name: str = "lib/app", **settings: Any
) -> HTTPRepository:
    return RegistryClient(fake.settings(**settings), transport, retry=FAST).repository(name)


async def chunked(data: bytes, size: int = 7000) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def read_all(repo: HTTPRepository, digest: Digest, offset: int = 0) -> bytes:
    out = bytearray()
    async with repo.blob_open(digest, offset=offset) as stream:
        async for chunk in stream:
            out += chunk
    return bytes(out)


def image(layer: bytes, config: bytes = b"{}") -> bytes:
    return dumps(
        {
            "schemaVersion": 2,
            "mediaType": mt.OCI_MANIFEST,
            "config": {"mediaType": mt.OCI_CONFIG, "digest": str(Digest.of(config)), "size": len(config)},
            "layers": [{"mediaType": mt.OCI_LAYER_GZIP, "digest": str(Digest.of(layer)), "size": len(layer)}],
        }
    )


# -- blobs ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("auth", ["none", "basic", "bearer"])
async def test_blob_round_trip_in_every_auth_mode(
    fake: FakeRegistry, transport: Transport, auth: str
) -> None:
    fake.auth = auth
    repo = repo_of(fake, transport)
    data = os.urandom(100_000)
    digest = Digest.of(data)
    assert await repo.blob_head(digest) is None
    await repo.blob_put(digest, len(data), chunked(data))
    assert await repo.blob_head(digest) == len(data)
    assert await read_all(repo, digest) == data
    assert fake.blobs[str(digest)] == data


async def test_blob_open_reports_size_and_reads_from_an_offset(
    fake: FakeRegistry, transport: Transport
) -> None:
    data = os.urandom(50_000)
    digest = Digest.parse(fake.put_blob(data))
    repo = repo_of(fake, transport)
    async with repo.blob_open(digest) as stream:
        assert stream.size == len(data)
    assert await read_all(repo, digest, offset=1234) == data[1234:]


async def test_blob_open_of_a_missing_blob_raises_not_found(fake: FakeRegistry, transport: Transport) -> None:
    with pytest.raises(NotFound):
        await read_all(repo_of(fake, transport), Digest.of(b"absent"))


async def test_corrupt_download_raises_digest_mismatch_at_the_end(
    fake: FakeRegistry, transport: Transport
) -> None:
    data = os.urandom(10_000)
    digest = Digest.parse(fake.put_blob(data))
    fake.corrupt_blobs = True
    with pytest.raises(DigestMismatch, match="hashes to"):
        await read_all(repo_of(fake, transport), digest)


async def test_broken_download_resumes_with_range_into_the_same_hasher(
    fake: FakeRegistry, transport: Transport, events: list[Event]
) -> None:
    data = os.urandom(300_000)
    digest = Digest.parse(fake.put_blob(data))
    fake.cut_blob_after, fake.cuts_left = 100_000, 2
    assert await read_all(repo_of(fake, transport), digest) == data
    ranges = [r.headers.get("Range") for r in fake.seen("GET", "/blobs/")]
    assert ranges[0] is None
    assert len(ranges) == 3
    assert all(r and r.startswith("bytes=") for r in ranges[1:])
    assert [e.reason for e in events if isinstance(e, RetryScheduled)] == ["reset", "reset"]
    pulled = sum(e.count for e in events if isinstance(e, BytesTransferred) and e.direction == "pulled")
    assert pulled == len(data)


async def test_resume_fails_cleanly_when_range_is_ignored(fake: FakeRegistry, transport: Transport) -> None:
    data = os.urandom(100_000)
    digest = Digest.parse(fake.put_blob(data))
    fake.cut_blob_after, fake.cuts_left, fake.ignore_range = 10_000, 1, True
    with pytest.raises(TransportError, match="Range"):
        await read_all(repo_of(fake, transport), digest)


async def test_resume_gives_up_after_bounded_attempts(fake: FakeRegistry, transport: Transport) -> None:
    data = os.urandom(100_000)
    digest = Digest.parse(fake.put_blob(data))
    fake.cut_blob_after, fake.cuts_left = 1000, 100
    with pytest.raises(TransportError, match="gave up resuming"):
        await read_all(repo_of(fake, transport), digest)


async def test_redirected_download_does_not_carry_authorization_to_the_other_host(
    fake: FakeRegistry, transport: Transport
) -> None:
    fake.auth = "bearer"
    data = os.urandom(20_000)
    digest = Digest.parse(fake.put_blob(data))
    cdn_seen: list[Seen] = []
    async with data_server(fake.blobs, cdn_seen) as cdn:
        fake.redirect_blobs_to = cdn
        assert await read_all(repo_of(fake, transport), digest) == data
    assert cdn_seen
    assert all("Authorization" not in r.headers for r in cdn_seen)
    registry_gets = fake.seen("GET", "/blobs/")
    assert registry_gets[-1].headers.get("Authorization", "").startswith("Bearer ")


async def test_upload_with_wrong_digest_is_cancelled_and_never_completes(
    fake: FakeRegistry, transport: Transport
) -> None:
    data = os.urandom(30_000)
    wrong = Digest.of(b"something else")
    with pytest.raises(DigestMismatch):
        await repo_of(fake, transport).blob_put(wrong, len(data), chunked(data))
    assert not fake.uploads  # DELETEd
    assert fake.seen("DELETE", "/blobs/uploads/")
    assert str(wrong) not in fake.blobs


@pytest.mark.parametrize("size_delta", [-1, 1])
async def test_upload_with_wrong_size_raises_digest_mismatch(
    fake: FakeRegistry, transport: Transport, size_delta: int
) -> None:
    data = os.urandom(30_000)
    with pytest.raises(DigestMismatch, match="bytes"):
        await repo_of(fake, transport).blob_put(Digest.of(data), len(data) + size_delta, chunked(data))
    assert not fake.uploads


class SelfVerifying:
    """Chunks that declare ``verifies_digest`` (as the copy engine's tee does)."""

    verifies_digest = True

    def __init__(self, data: bytes) -> None:
        self._chunks = chunked(data)

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._chunks


def count_hashers(monkeypatch: pytest.MonkeyPatch) -> list[Digest]:
    made: list[Digest] = []
    real = Digest.hasher

    def hasher(self: Digest) -> Any:
        made.append(self)
        return real(self)

    monkeypatch.setattr(Digest, "hasher", hasher)
    return made


async def test_chunks_that_verify_themselves_are_not_hashed_again(
    fake: FakeRegistry, transport: Transport, monkeypatch: pytest.MonkeyPatch
) -> None:
    made = count_hashers(monkeypatch)
    data, other = os.urandom(30_000), os.urandom(30_000)
    repo = repo_of(fake, transport)
    await repo.blob_put(Digest.of(data), len(data), SelfVerifying(data))
    assert made == []
    await repo.blob_put(Digest.of(other), len(other), chunked(other))
    assert made == [Digest.of(other)]
    assert {str(Digest.of(data)), str(Digest.of(other))} <= set(fake.blobs)


@pytest.mark.parametrize("size_delta", [-1, 1])
async def test_self_verifying_chunks_still_have_their_size_checked(
    fake: FakeRegistry, transport: Transport, size_delta: int
) -> None:
    data = os.urandom(30_000)
    with pytest.raises(DigestMismatch, match="bytes"):
        await repo_of(fake, transport).blob_put(Digest.of(data), len(data) + size_delta, SelfVerifying(data))
    assert not fake.uploads


async def test_failing_chunks_iterator_cancels_the_upload_and_reraises(
    fake: FakeRegistry, transport: Transport
) -> None:
    class SourceBroke(Exception):
        pass

    async def broken() -> AsyncIterator[bytes]:
        yield b"x" * 20_000
        raise SourceBroke("source went away")

    with pytest.raises(SourceBroke):
        await repo_of(fake, transport).blob_put(Digest.of(b"x" * 40_000), 40_000, broken())
    assert not fake.uploads
    assert fake.seen("DELETE", "/blobs/uploads/")


async def test_chunked_upload_patches_in_order_honouring_the_minimum_chunk(
    fake: FakeRegistry, transport: Transport
) -> None:
    fake.chunk_min_length = 16_384
    data = os.urandom(70_000)
    repo = repo_of(fake, transport, chunk_size=4096)
    await repo.blob_put(Digest.of(data), len(data), chunked(data, 3000))
    assert fake.blobs[str(Digest.of(data))] == data
    patches = fake.seen("PATCH")
    assert [p.headers["Content-Range"] for p in patches] == [
        f"{i * 16_384}-{(i + 1) * 16_384 - 1}" for i in range(4)
    ]
    assert all(p.query["_state"] == "abc==" for p in patches)  # the registry's query survives


async def test_upload_into_a_given_session_skips_the_post(fake: FakeRegistry, transport: Transport) -> None:
    repo = repo_of(fake, transport)
    data = os.urandom(1000)
    result = await repo.blob_mount(Digest.of(data), "lib/other")
    assert not result.mounted
    assert isinstance(result.upload, HTTPUploadSession)
    posts = len(fake.seen("POST"))
    await repo.blob_put(Digest.of(data), len(data), chunked(data), upload=result.upload)
    assert len(fake.seen("POST")) == posts
    assert fake.blobs[str(Digest.of(data))] == data


async def test_mount_of_a_present_blob_is_201(fake: FakeRegistry, transport: Transport) -> None:
    fake.auth = "bearer"
    digest = Digest.parse(fake.put_blob(b"shared layer"))
    result = await repo_of(fake, transport, name="lib/b").blob_mount(digest, "lib/a")
    assert result.mounted
    assert result.upload is None
    scopes = fake.token_requests[-1].query
    assert "service" in scopes


# -- manifests --------------------------------------------------------------------------------------


async def test_manifest_put_head_get_delete(fake: FakeRegistry, transport: Transport) -> None:
    repo = repo_of(fake, transport)
    raw = image(b"layer")
    digest = await repo.manifest_put("v1", raw, mt.OCI_MANIFEST)
    assert digest == Digest.of(raw)
    head = await repo.manifest_head("v1")
    assert head is not None
    assert (head.digest, head.size, head.media_type) == (digest, len(raw), mt.OCI_MANIFEST)
    for reference in ("v1", str(digest)):
        manifest = await repo.manifest_get(reference)
        assert isinstance(manifest, ImageManifest)
        assert manifest.raw == raw
    accept = fake.seen("GET", "/manifests/")[0].headers["Accept"]
    assert all(t in accept for t in mt.MANIFEST_ACCEPT)
    await repo.manifest_delete(str(digest))
    assert await repo.manifest_head(str(digest)) is None
    with pytest.raises(NotFound):
        await repo.manifest_delete(str(digest))
    with pytest.raises(NotFound):
        await repo.manifest_get(str(digest))


async def test_manifest_get_verifies_the_requested_digest(fake: FakeRegistry, transport: Transport) -> None:
    raw = image(b"layer")
    claimed = Digest.of(b"other")
    fake.manifests[("lib/app", str(claimed))] = (raw, mt.OCI_MANIFEST)
    with pytest.raises(DigestMismatch):
        await repo_of(fake, transport).manifest_get(str(claimed))


async def test_manifest_get_rejects_more_than_4_mib(fake: FakeRegistry, transport: Transport) -> None:
    fake.manifests[("lib/app", "big")] = (b" " * (4 * 1024 * 1024 + 1), mt.OCI_MANIFEST)
    with pytest.raises(ProtocolError, match="larger"):
        await repo_of(fake, transport).manifest_get("big")


async def test_index_manifest_is_parsed_as_an_index(fake: FakeRegistry, transport: Transport) -> None:
    child = image(b"l")
    index = dumps(
        {
            "schemaVersion": 2,
            "mediaType": mt.OCI_INDEX,
            "manifests": [
                {"mediaType": mt.OCI_MANIFEST, "digest": str(Digest.of(child)), "size": len(child)}
            ],
        }
    )
    repo = repo_of(fake, transport)
    await repo.manifest_put("multi", index, mt.OCI_INDEX)
    assert isinstance(await repo.manifest_get("multi"), ImageIndex)


# -- tags and referrers -----------------------------------------------------------------------------


async def test_tags_list_follows_link_pages(fake: FakeRegistry, transport: Transport) -> None:
    fake.tags["lib/app"] = [f"t{i}" for i in range(7)]
    assert await repo_of(fake, transport).tags_list() == [f"t{i}" for i in range(7)]
    assert len(fake.seen("GET", "/tags/list")) == 4
    assert fake.seen("GET", "/tags/list")[0].query["n"] == "1000"


async def test_tags_list_of_unknown_or_empty_repository_is_empty(
    fake: FakeRegistry, transport: Transport
) -> None:
    assert await repo_of(fake, transport, name="no/such").tags_list() == []
    fake.tags["lib/empty"] = []  # answered with "tags": null
    assert await repo_of(fake, transport, name="lib/empty").tags_list() == []


async def test_tags_list_that_must_exist_raises_for_an_unknown_repository(
    fake: FakeRegistry, transport: Transport
) -> None:
    # How a source is read: a 404 (NAME_UNKNOWN, or an expired token on some registries) must not
    # read as "no tags", or prune deletes the mirror.
    with pytest.raises(NotFound, match=r"repository .*/no/such not found \(HTTP 404 NAME_UNKNOWN\)"):
        await repo_of(fake, transport, name="no/such").tags_list(must_exist=True)
    fake.tags["lib/empty"] = []
    assert await repo_of(fake, transport, name="lib/empty").tags_list(must_exist=True) == []


async def test_has_tags_asks_for_one_tag(fake: FakeRegistry, transport: Transport) -> None:
    fake.tags["lib/app"] = [f"t{i}" for i in range(7)]
    fake.tags["lib/empty"] = []
    assert await repo_of(fake, transport).has_tags() is True
    assert [r.query["n"] for r in fake.seen("GET", "/tags/list")] == ["1"]
    assert await repo_of(fake, transport, name="lib/empty").has_tags() is False
    assert await repo_of(fake, transport, name="no/such").has_tags() is False


async def test_a_registry_without_referrers_api_is_probed_once(
    fake: FakeRegistry, transport: Transport
) -> None:
    repo = repo_of(fake, transport)
    assert await repo.referrers(Digest.of(b"one")) is None
    assert await repo.client.repository("lib/other").referrers(Digest.of(b"two")) is None
    assert len(fake.seen("GET", "/referrers/")) == 1


async def test_referrers(fake: FakeRegistry, transport: Transport) -> None:
    repo = repo_of(fake, transport)
    subject = Digest.of(b"subject")
    index = dumps({"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": []})
    fake.manifests[("lib/app", f"referrers-{subject}")] = (index, mt.OCI_INDEX)
    found = await repo.referrers(subject, artifact_type="application/vnd.dev.cosign")
    assert isinstance(found, ImageIndex)
    assert found.manifests == ()
    assert fake.seen("GET", "/referrers/")[-1].query == {"artifactType": "application/vnd.dev.cosign"}


def test_repository_identity(fake: FakeRegistry) -> None:
    fake.host = "127.0.0.1:5000"
    repo = RegistryClient(fake.settings(), Transport()).repository("lib/app")
    assert (repo.registry_key, repo.name, str(repo)) == (
        "127.0.0.1:5000",
        "lib/app",
        "127.0.0.1:5000/lib/app",
    )


# -- retries, auth, events --------------------------------------------------------------------------


async def test_5xx_and_429_are_retried_with_events(
    fake: FakeRegistry, transport: Transport, events: list[Event]
) -> None:
    fake.tags["lib/app"] = ["a"]
    fake.fail("/tags/list", 503, count=2)
    fake.fail("/tags/list", 429, count=1, **{"Retry-After": "0"})
    assert await repo_of(fake, transport).tags_list() == ["a"]
    retries = [e for e in events if isinstance(e, RetryScheduled)]
    assert [e.reason for e in retries] == ["5xx", "5xx", "429"]
    assert retries[-1].delay == 0


async def test_retries_are_bounded(fake: FakeRegistry, transport: Transport) -> None:
    fake.fail("/tags/list", 502, count=FAST.attempts)
    with pytest.raises(ServerError):
        await repo_of(fake, transport).tags_list()


async def test_non_idempotent_patch_is_not_retried(fake: FakeRegistry, transport: Transport) -> None:
    fake.fail("/blobs/uploads/.+", 503, count=1)
    data = os.urandom(10_000)
    with pytest.raises(ServerError):
        await repo_of(fake, transport, chunk_size=4096).blob_put(Digest.of(data), len(data), chunked(data))
    assert len(fake.seen("PATCH")) == 1


async def test_client_errors_are_not_retried(fake: FakeRegistry, transport: Transport) -> None:
    fake.fail("/manifests/", 400, count=1)
    with pytest.raises(RequestRejected):
        await repo_of(fake, transport).manifest_get("v1")
    assert len(fake.seen("GET", "/manifests/")) == 1


async def test_bearer_tokens_are_cached_and_fetched_once_for_concurrent_requests(
    fake: FakeRegistry, transport: Transport
) -> None:
    fake.auth = "bearer"
    fake.tags["lib/app"] = ["a"]
    repo = repo_of(fake, transport)
    await asyncio.gather(*(repo.tags_list() for _ in range(20)))
    for _ in range(10):
        await repo.tags_list()
    assert len(fake.token_requests) == 1
    request = fake.token_requests[0]
    assert request.query == {"service": "fake", "scope": "repository:lib/app:pull"}
    assert request.headers["Authorization"].startswith("Basic ")


async def test_push_scope_covers_pulls_and_new_scope_fetches_a_new_token(
    fake: FakeRegistry, transport: Transport
) -> None:
    fake.auth = "bearer"
    repo = repo_of(fake, transport)
    await repo.manifest_put("v1", image(b"l"), mt.OCI_MANIFEST)
    await repo.manifest_get("v1")
    assert len(fake.token_requests) == 1
    assert fake.token_requests[0].query["scope"] == "repository:lib/app:pull,push"
    await repo_of(fake, transport, name="lib/other").tags_list()
    assert len(fake.token_requests) == 2


async def test_revoked_token_is_refetched_once(fake: FakeRegistry, transport: Transport) -> None:
    fake.auth = "bearer"
    fake.tags["lib/app"] = ["a"]
    repo = repo_of(fake, transport)
    await repo.tags_list()
    fake.issued_tokens.clear()
    assert await repo.tags_list() == ["a"]
    assert len(fake.token_requests) == 2


async def test_wrong_credentials_raise_auth_error_without_secrets(
    fake: FakeRegistry, transport: Transport
) -> None:
    from mirrord.registry.settings import CredentialSpec

    for mode in ("basic", "bearer"):
        fake.auth = mode
        repo = repo_of(fake, transport, auth=CredentialSpec(username="alice", password="wrong-pw"))
        with pytest.raises(AuthError) as caught:
            await repo.tags_list()
        assert "wrong-pw" not in str(caught.value)
        assert "wrong-pw" not in repr(caught.value.args)


async def test_401_without_challenge_takes_it_from_v2(fake: FakeRegistry, transport: Transport) -> None:
    fake.auth, fake.challenge_on_v2_only = "bearer", True
    fake.tags["lib/app"] = ["a"]
    assert await repo_of(fake, transport).tags_list() == ["a"]
    assert fake.seen("GET", "^/v2/$")


async def test_events_report_requests_and_rate_limits(
    fake: FakeRegistry, transport: Transport, events: list[Event]
) -> None:
    fake.response_headers = {"ratelimit-remaining": "99;w=21600"}
    data = b"abc" * 1000
    await repo_of(fake, transport).blob_put(Digest.of(data), len(data), chunked(data, 1000))
    done = [e for e in events if isinstance(e, HttpRequestDone)]
    assert [(e.method, e.code) for e in done] == [("POST", 202), ("PUT", 201)]
    assert all(e.registry == fake.host for e in done)
    assert RateLimitObserved(fake.host, 99.0) in events
    pushed = [e.count for e in events if isinstance(e, BytesTransferred) and e.direction == "pushed"]
    assert sum(pushed) == len(data)


async def test_connection_refused_is_a_transport_error(transport: Transport) -> None:
    fake = FakeRegistry(host="127.0.0.1:9")  # discard port: nothing listens
    with pytest.raises(TransportError) as caught:
        await repo_of(fake, transport).blob_head(Digest.of(b""))
    assert caught.value.registry == "127.0.0.1:9"
    assert caught.value.repository == "lib/app"


async def test_connection_refused_is_unreachable_and_not_retried(
    transport: Transport, events: list[Event]
) -> None:
    fake = FakeRegistry(host="127.0.0.1:9")  # discard port: nothing listens
    with pytest.raises(Unreachable, match="cannot connect") as caught:
        await repo_of(fake, transport).tags_list()
    assert caught.value.retryable is False
    assert not [e for e in events if isinstance(e, RetryScheduled)]
    assert len([e for e in events if isinstance(e, HttpRequestDone)]) == 1


_KEY = ConnectionKey("h", 1, False, True, None, None, None, None)


@pytest.mark.parametrize(
    ("error", "unreachable"),
    [
        (aiohttp.ClientConnectorError(_KEY, OSError(111, "Connection refused")), True),
        (aiohttp.ClientConnectorDNSError(_KEY, OSError(-2, "Name or service not known")), True),
        (aiohttp.ClientConnectorCertificateError(_KEY, ssl.SSLCertVerificationError(1, "unknown CA")), True),
        (aiohttp.ClientConnectorSSLError(_KEY, ssl.SSLError(1, "handshake failure")), True),
        (aiohttp.ServerDisconnectedError(), False),
        (aiohttp.ClientPayloadError("broken"), False),
        (TimeoutError(), False),
        (ConnectionResetError(104, "reset"), False),
    ],
)
def test_network_errors_are_classified_in_one_place(error: BaseException, unreachable: bool) -> None:
    mapped = network_error(error, "GET h:1", registry="h:1")
    assert isinstance(mapped, Unreachable) is unreachable
    assert mapped.retryable is not unreachable
    assert mapped.registry == "h:1"


def test_blob_digest_helper_is_sha256() -> None:
    assert str(Digest.of(b"x")) == "sha256:" + hashlib.sha256(b"x").hexdigest()


async def test_one_connection_slot_is_enough_for_the_token_dance(
    fake: FakeRegistry, transport: Transport
) -> None:
    # The 401 is released before the /v2/ probe and the token fetch, which need the same slot.
    fake.auth, fake.challenge_on_v2_only = "bearer", True
    fake.tags["lib/app"] = ["a"]
    repo = repo_of(fake, transport, max_connections=1)
    async with asyncio.timeout(5):
        assert await asyncio.gather(repo.tags_list(), repo.tags_list()) == [["a"], ["a"]]


async def test_requests_per_second_paces_requests(fake: FakeRegistry, transport: Transport) -> None:
    fake.tags["lib/app"] = ["a"]
    repo = repo_of(fake, transport, requests_per_second=20)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await asyncio.gather(*(repo.tags_list() for _ in range(30)))
    assert loop.time() - started >= 0.45  # 30 requests at 20/s: at least one extra period


@pytest.mark.parametrize("mode", ["basic", "bearer"])
async def test_refused_credentials_are_read_again_at_next_use(
    fake: FakeRegistry, transport: Transport, tmp_path: Path, mode: str
) -> None:
    from mirrord.registry.settings import CredentialSpec

    fake.auth = mode
    fake.tags["lib/app"] = ["a"]
    secret = tmp_path / "password"
    secret.write_text("old-password\n")
    repo = repo_of(fake, transport, auth=CredentialSpec(username="alice", password_file=str(secret)))
    with pytest.raises(AuthError):
        await repo.tags_list()
    secret.write_text(fake.password + "\n")  # rotated
    assert await repo.tags_list() == ["a"]


async def test_cancelled_upload_is_abandoned(fake: FakeRegistry, transport: Transport) -> None:
    started = asyncio.Event()

    async def stalls() -> AsyncIterator[bytes]:
        yield b"x" * 1000
        started.set()
        await asyncio.Event().wait()  # the source never delivers the rest
        yield b""

    repo = repo_of(fake, transport)
    task = asyncio.create_task(repo.blob_put(Digest.of(b"x" * 2000), 2000, stalls()))
    await asyncio.wait_for(started.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert fake.seen("DELETE", "/blobs/uploads/")
    assert not fake.uploads


async def test_requests_ask_for_identity_encoding_and_name_mirrord(
    fake: FakeRegistry, transport: Transport
) -> None:
    await repo_of(fake, transport).blob_head(Digest.of(b"x"))
    headers = fake.seen("HEAD")[0].headers
    assert headers["Accept-Encoding"] == "identity"
    assert headers["User-Agent"].startswith("mirrord/")


async def test_a_slow_source_does_not_trip_the_read_timeout_of_an_upload(fake: FakeRegistry) -> None:
    # The target waits for our body, not we for it: a tee paced by a slow source must not time out.
    data = os.urandom(200_000)

    async def slow() -> AsyncIterator[bytes]:
        yield data[:100_000]
        await asyncio.sleep(0.5)
        yield data[100_000:]

    async with Transport(read_timeout=0.2) as transport:
        repo = repo_of(fake, transport)
        await repo.blob_put(Digest.of(data), len(data), slow())
    assert fake.blobs[str(Digest.of(data))] == data


def test_credentials_go_only_over_https_unless_the_plan_chose_plain_http() -> None:
    from mirrord.registry.settings import RegistrySettings, TLSSettings

    secure = RegistryClient(RegistrySettings(host="r.example"), Transport())
    assert secure._may_send_credentials(None)  # the registry itself: https
    assert secure._may_send_credentials("https://auth.example/token")
    assert not secure._may_send_credentials("http://auth.example/token")
    plain = RegistryClient(RegistrySettings(host="r.example", tls=TLSSettings(enabled=False)), Transport())
    assert plain._may_send_credentials("http://r.example/token")


async def test_a_bus_whose_subscribers_name_their_kinds_gets_no_request_events(fake: FakeRegistry) -> None:
    """Per-request events are built only when a subscriber hears them: a bus whose only subscriber
    asked for image events gets no HttpRequestDone built or delivered; one hearing everything does."""
    fake.manifests[("lib/app", "1")] = (image(b"layer"), mt.OCI_MANIFEST)
    picky: list[Event] = []
    bus = EventBus()
    bus.subscribe(picky.append, kinds=(ImageDone, RateLimitObserved))
    async with Transport(events=bus) as transport:
        assert await repo_of(fake, transport).manifest_head("1") is not None
        assert not bus.wants(HttpRequestDone)
        assert picky == []
        everything: list[Event] = []
        unsubscribe = bus.subscribe(everything.append)
        assert bus.wants(HttpRequestDone)
        assert await repo_of(fake, transport).manifest_head("1") is not None
        assert [type(e) for e in everything] == [HttpRequestDone]
        assert picky == []
        unsubscribe()
        assert not bus.wants(HttpRequestDone)


async def test_a_manifest_head_takes_and_gives_back_its_slot(
    fake: FakeRegistry, transport: Transport
) -> None:
    fake.manifests[("lib/app", "1")] = (image(b"layer"), mt.OCI_MANIFEST)
    repo = repo_of(fake, transport, max_connections=1)
    await asyncio.gather(*(repo.manifest_head("1") for _ in range(5)))
    limits = transport.limits_for(repo.client.settings)
    assert limits.concurrency.in_use == 0


async def test_locations_on_the_own_origin_are_taken_as_they_are(
    fake: FakeRegistry, transport: Transport
) -> None:
    client = RegistryClient(fake.settings(), transport, retry=FAST)
    base = client.base_url
    location = f"{base}/v2/lib/app/blobs/uploads/u1?_state=a%2Bb=&digest=sha256:00"
    assert client.url(location) == location
    assert client.url("/v2/lib/app/tags/list") == f"{base}/v2/lib/app/tags/list"
    assert client.url("uploads/u2?x=1") == f"{base}/uploads/u2?x=1"  # relative: joined
    assert client.url(f"{base}/v2/x?") == f"{base}/v2/x"  # as urljoin gives it
    assert client.url("https://cdn.example/blob?sig=1") == "https://cdn.example/blob?sig=1"


async def test_a_refused_streamed_request_gives_its_response_and_slot_back(
    fake: FakeRegistry, transport: Transport
) -> None:
    repo = repo_of(fake, transport, max_connections=1)
    for _ in range(3):
        with pytest.raises(NotFound):
            async with repo.client.request("GET", repo.path("blobs", str(Digest.of(b"none")))):
                pass
    fake.blobs[str(Digest.of(b"abc"))] = b"abc"
    async with repo.client.request(
        "GET", repo.path("blobs", str(Digest.of(b"abc"))), stream=True
    ) as response:
        assert await response.read() == b"abc"
    assert transport.limits_for(repo.client.settings).concurrency.in_use == 0
