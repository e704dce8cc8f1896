"""Pure pieces of the client: Retry-After and backoff, the error mapping table, Link parsing."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from email.utils import format_datetime

import pytest

from mirrord.registry.errors import (
    AuthError,
    NotFound,
    ProtocolError,
    RateLimited,
    RegistryError,
    RequestRejected,
    ServerError,
)
from mirrord.registry.http.client import error_from_response
from mirrord.registry.http.paging import parse_link_next
from mirrord.registry.http.repository import is_digest, media_type_of
from mirrord.registry.http.retry import RetryPolicy, parse_ratelimit_remaining, parse_retry_after


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, None), ("", None), ("  ", None), ("120", 120.0), ("0", 0.0), ("soon", None), ("-5", None)],
)
def test_retry_after_seconds(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value) == expected


def test_retry_after_http_date() -> None:
    now = datetime(2026, 11, 22, 8, 0, 0, tzinfo=UTC).timestamp()
    later = format_datetime(datetime(2026, 11, 22, 8, 0, 30, tzinfo=UTC), usegmt=True)
    assert parse_retry_after(later, now=now) == 30.0
    earlier = format_datetime(datetime(2026, 11, 22, 7, 0, 0, tzinfo=UTC), usegmt=True)
    assert parse_retry_after(earlier, now=now) == 0.0


def test_backoff_is_full_jitter_capped_and_retry_after_wins_capped() -> None:
    policy = RetryPolicy(base=0.2, cap=30.0, retry_after_cap=60.0)
    rng = random.Random(7)
    for attempt in range(1, 12):
        ceiling = min(30.0, 0.2 * 2 ** (attempt - 1))
        delays = [policy.backoff(attempt, rng) for _ in range(50)]
        assert all(0.0 <= d <= ceiling for d in delays)
    assert policy.delay(3, retry_after=5.0) == 5.0
    assert policy.delay(3, retry_after=3600.0) == 60.0


@pytest.mark.parametrize(
    ("value", "expected"), [("100;w=21600", 100.0), ("76", 76.0), (None, None), ("x;w=1", None)]
)
def test_ratelimit_remaining(value: str | None, expected: float | None) -> None:
    assert parse_ratelimit_remaining(value) == expected


def body(code: str) -> bytes:
    return b'{"errors": [{"code": "%s", "message": "m", "detail": {}}]}' % code.encode()


@pytest.mark.parametrize(
    ("status", "payload", "cls"),
    [
        (401, body("UNAUTHORIZED"), AuthError),
        (403, body("DENIED"), AuthError),
        (403, b"", AuthError),
        (404, body("MANIFEST_UNKNOWN"), NotFound),
        (404, body("BLOB_UNKNOWN"), NotFound),
        (404, body("NAME_UNKNOWN"), NotFound),
        (404, b"<html>", NotFound),
        (429, body("TOOMANYREQUESTS"), RateLimited),
        (500, b"", ServerError),
        (503, body("UNAVAILABLE"), ServerError),
        (400, body("MANIFEST_INVALID"), RequestRejected),
        (400, body("DIGEST_INVALID"), RequestRejected),
        (400, body("SIZE_INVALID"), RequestRejected),
        (400, body("MANIFEST_BLOB_UNKNOWN"), RequestRejected),
        (400, body("NAME_UNKNOWN"), NotFound),
        (400, body("BLOB_UPLOAD_UNKNOWN"), NotFound),
        (400, body("DENIED"), AuthError),
        (400, body("TOOMANYREQUESTS"), RateLimited),
        (405, body("UNSUPPORTED"), RequestRejected),
        (416, b"", RequestRejected),
        (302, b"", ProtocolError),
        (200, b"", ProtocolError),
    ],
)
def test_error_mapping_table(status: int, payload: bytes, cls: type[RegistryError]) -> None:
    error = error_from_response(status, payload, {}, registry="r.example", repository="a/b", reference="v1")
    assert type(error) is cls
    assert (error.status, error.registry, error.repository, error.reference) == (
        status,
        "r.example",
        "a/b",
        "v1",
    )
    assert error.retryable == (cls in (RateLimited, ServerError))


def test_error_message_names_place_and_code_and_retry_after() -> None:
    error = error_from_response(
        429,
        body("TOOMANYREQUESTS"),
        {"Retry-After": "7"},
        registry="r.example",
        repository="a/b",
        reference="sha256:" + "0" * 64,
        method="GET",
    )
    assert isinstance(error, RateLimited)
    assert error.retry_after == 7.0
    assert error.code == "TOOMANYREQUESTS"
    assert str(error) == f"r.example/a/b@sha256:{'0' * 64}: GET HTTP 429 TOOMANYREQUESTS: m"


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (['</v2/a/tags/list?n=2&last=b>; rel="next"'], "/v2/a/tags/list?n=2&last=b"),
        (["<https://h/v2/a/tags/list?last=b>; rel=next"], "https://h/v2/a/tags/list?last=b"),
        (['<https://h/prev>; rel="prev", <https://h/next>; rel="next"'], "https://h/next"),
        (['<https://h/x>; rel="prev"', '<https://h/y>; type="a"; rel="next"'], "https://h/y"),
        (['<https://h/x>; rel="prev next"'], "https://h/x"),
        (['<https://h/x>; rel="nextpage"'], None),
        ([], None),
    ],
)
def test_link_next(values: list[str], expected: str | None) -> None:
    assert parse_link_next(values) == expected


def test_small_helpers() -> None:
    assert is_digest("sha256:" + "a" * 64)
    assert not is_digest("v1.2")
    assert media_type_of("application/vnd.oci.image.index.v1+json; charset=utf-8") == (
        "application/vnd.oci.image.index.v1+json"
    )
    assert media_type_of(None) is None


def test_503_carries_retry_after_too() -> None:
    error = error_from_response(503, b"", {"Retry-After": "3"}, registry="r.example")
    assert isinstance(error, ServerError)
    assert error.retry_after == 3.0
    assert error_from_response(500, b"", {}, registry="r.example").retry_after is None  # type: ignore[attr-defined]
