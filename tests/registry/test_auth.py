"""Pure auth logic: challenge parsing, scopes, token responses, the token cache, the token dance."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from mirrord.registry.errors import AuthError, ProtocolError
from mirrord.registry.http.auth import (
    Authenticator,
    Challenge,
    TokenCache,
    basic_header,
    order_scopes,
    parse_scope,
    parse_token_response,
    parse_www_authenticate,
    pick_challenge,
    repository_scope,
    scopes_cover,
    token_query,
)
from mirrord.registry.http.credentials import Credentials

# -- WWW-Authenticate ------------------------------------------------------------------------------


def test_parse_docker_hub_bearer_challenge() -> None:
    header = (
        'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
        'scope="repository:library/nginx:pull"'
    )
    assert parse_www_authenticate(header) == [
        Challenge(
            "bearer",
            {
                "realm": "https://auth.docker.io/token",
                "service": "registry.docker.io",
                "scope": "repository:library/nginx:pull",
            },
        )
    ]


def test_parse_several_challenges_with_commas_and_escaped_quotes_inside_strings() -> None:
    header = (
        'Basic realm="a, \\"quoted\\" realm", charset="UTF-8", '
        'Bearer realm="https://t.example/token",scope="repository:a:pull,push" , Negotiate'
    )
    assert parse_www_authenticate(header) == [
        Challenge("basic", {"realm": 'a, "quoted" realm', "charset": "UTF-8"}),
        Challenge("bearer", {"realm": "https://t.example/token", "scope": "repository:a:pull,push"}),
        Challenge("negotiate", {}),
    ]


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("", []),
        ("Basic", [Challenge("basic", {})]),
        ("BASIC REALM=x", [Challenge("basic", {"realm": "x"})]),
        ("Negotiate abc==, Basic realm=r", [Challenge("negotiate", {}), Challenge("basic", {"realm": "r"})]),
        ('Bearer realm = "spaced" , error="insufficient_scope"', [
            Challenge("bearer", {"realm": "spaced", "error": "insufficient_scope"})
        ]),
        ('Bearer realm="unterminated', [Challenge("bearer", {"realm": "unterminated"})]),
    ],
)  # fmt: skip
def test_parse_edge_cases(header: str, expected: list[Challenge]) -> None:
    assert parse_www_authenticate(header) == expected


def test_pick_prefers_bearer_with_a_realm_then_basic() -> None:
    basic, bearer = Challenge("basic", {"realm": "r"}), Challenge("bearer", {"realm": "https://t"})
    assert pick_challenge([basic, bearer]) is bearer
    assert pick_challenge([basic, Challenge("bearer", {})]) is basic
    assert pick_challenge([Challenge("negotiate", {})]) is None


# -- scopes ----------------------------------------------------------------------------------------


def test_scope_building_and_parsing() -> None:
    assert repository_scope("library/nginx", "pull", "push") == "repository:library/nginx:pull,push"
    assert parse_scope("repository:a/b:pull,push") == ("repository", "a/b", frozenset({"pull", "push"}))
    assert parse_scope("repository(plugin):x:pull")[0] == "repository(plugin)"
    assert parse_scope("registry:catalog:*") == ("registry", "catalog", frozenset({"*"}))


def test_push_scope_first_and_deduplicated() -> None:
    assert order_scopes(["repository:src:pull", "repository:dst:pull,push", "repository:src:pull"]) == [
        "repository:dst:pull,push",
        "repository:src:pull",
    ]
    challenge = Challenge("bearer", {"realm": "https://t", "service": "svc"})
    assert token_query(challenge, ["repository:src:pull", "repository:dst:pull,push"]) == [
        ("service", "svc"),
        ("scope", "repository:dst:pull,push"),
        ("scope", "repository:src:pull"),
    ]
    assert token_query(Challenge("bearer", {"realm": "r"}), ["s:x:pull"]) == [("scope", "s:x:pull")]


def test_scopes_cover() -> None:
    granted = ["repository:a:pull,push", "repository:b:pull"]
    assert scopes_cover(granted, ["repository:a:pull"])
    assert scopes_cover(granted, ["repository:a:push", "repository:b:pull"])
    assert not scopes_cover(granted, ["repository:b:push"])
    assert not scopes_cover(granted, ["repository:c:pull"])
    assert scopes_cover(["registry:catalog:*"], ["registry:catalog:search"])
    assert scopes_cover([], [])


# -- tokens and the cache --------------------------------------------------------------------------


def test_token_response_fields_and_defaults() -> None:
    token = parse_token_response(b'{"token": "t1", "expires_in": 300}', now=1000.0)
    assert token.value == "t1"
    assert token.refresh_at == 1000.0 + 300 - 30
    default = parse_token_response(b'{"access_token": "t2"}', now=0.0)
    assert default.value == "t2"
    assert default.refresh_at == 30.0  # 60 s default, refreshed 30 s early
    short = parse_token_response(b'{"token": "t3", "expires_in": 10}', now=0.0)
    assert short.refresh_at == 5.0  # never more than half the lifetime early
    assert "t1" not in repr(token)


def test_token_issued_at_ages_the_token_unless_skewed() -> None:
    body = b'{"token": "t", "expires_in": 300, "issued_at": "2026-01-01T00:00:00Z"}'
    issued = 1767225600.0
    aged = parse_token_response(body, now=0.0, wall_now=issued + 100)
    assert aged.refresh_at == pytest.approx(300 - 100 - 30)
    skewed = parse_token_response(body, now=0.0, wall_now=issued + 10_000)
    assert skewed.refresh_at == pytest.approx(270)


@pytest.mark.parametrize("body", [b"not json", b"[]", b"{}", b'{"token": ""}'])
def test_bad_token_responses(body: bytes) -> None:
    with pytest.raises(ProtocolError):
        parse_token_response(body, now=0.0)


def test_cache_lookup_by_realm_service_and_covering_scopes_with_expiry() -> None:
    cache = TokenCache()
    token = parse_token_response(b'{"token": "t", "expires_in": 100}', now=0.0)
    cache.put("https://r", "svc", ["repository:a:pull,push"], token)
    assert cache.get("https://r", "svc", ["repository:a:pull"], now=10.0) is token
    assert cache.get("https://r", "other", ["repository:a:pull"], now=10.0) is None
    assert cache.get("https://r", "svc", ["repository:b:pull"], now=10.0) is None
    assert cache.get("https://r", "svc", ["repository:a:pull"], now=70.0) is None  # refresh due
    assert len(cache) == 0
    assert TokenCache.key("r", "s", ["b", "a", "b"]) == ("r", "s", ("a", "b"))


# -- the Authenticator -----------------------------------------------------------------------------

BEARER = [Challenge("bearer", {"realm": "https://auth.example/token", "service": "svc"})]


class FakeTokenServer:
    def __init__(self, delay: float = 0.0) -> None:
        self.calls: list[tuple[str, list[tuple[str, str]], str | None]] = []
        self.delay = delay

    async def __call__(
        self, realm: str, query: Sequence[tuple[str, str]], authorization: str | None
    ) -> bytes:
        self.calls.append((realm, list(query), authorization))
        await asyncio.sleep(self.delay)
        return b'{"token": "tok-%d", "expires_in": 300}' % len(self.calls)


def make_auth(
    server: FakeTokenServer, credentials: Credentials | None = None, allow: bool = True
) -> Authenticator:
    async def creds() -> Credentials | None:
        return credentials

    return Authenticator(server, creds, lambda url: allow, clock=lambda: 0.0)


async def test_no_header_before_a_challenge() -> None:
    assert await make_auth(FakeTokenServer()).header(["repository:a:pull"]) is None


async def test_bearer_flow_with_basic_credentials_and_one_shared_fetch() -> None:
    server = FakeTokenServer(delay=0.01)
    auth = make_auth(server, Credentials("alice", "pw"))
    assert auth.challenged(BEARER, sent=None)
    headers = await asyncio.gather(*(auth.header(["repository:a:pull"]) for _ in range(10)))
    assert set(headers) == {"Bearer tok-1"}
    assert len(server.calls) == 1
    realm, query, authorization = server.calls[0]
    assert realm == "https://auth.example/token"
    assert query == [("service", "svc"), ("scope", "repository:a:pull")]
    assert authorization == basic_header(Credentials("alice", "pw"))


async def test_anonymous_token_when_no_credentials() -> None:
    server = FakeTokenServer()
    auth = make_auth(server)
    auth.challenged(BEARER, sent=None)
    await auth.header(["repository:a:pull"])
    assert server.calls[0][2] is None


async def test_new_scope_fetches_new_token_and_refused_token_is_dropped() -> None:
    server = FakeTokenServer()
    auth = make_auth(server)
    auth.challenged(BEARER, sent=None)
    first = await auth.header(["repository:a:pull"])
    assert await auth.header(["repository:b:pull"]) == "Bearer tok-2"
    assert auth.challenged(BEARER, sent=first)  # the registry refused tok-1
    assert await auth.header(["repository:a:pull"]) == "Bearer tok-3"


async def test_basic_challenge_sends_credentials_once_refused_gives_up() -> None:
    auth = make_auth(FakeTokenServer(), Credentials("alice", "pw"))
    assert auth.challenged([Challenge("basic", {"realm": "r"})], sent=None)
    header = await auth.header(["repository:a:pull"])
    assert header == basic_header(Credentials("alice", "pw"))
    assert not auth.challenged([Challenge("basic", {"realm": "r"})], sent=header)


async def test_credentials_are_not_sent_where_the_policy_forbids() -> None:
    auth = make_auth(FakeTokenServer(), Credentials("alice", "pw"), allow=False)
    auth.challenged(BEARER, sent=None)
    with pytest.raises(AuthError, match="plain HTTP") as caught:
        await auth.header(["repository:a:pull"])
    assert "pw" not in str(caught.value)


def test_unusable_challenge_is_not_retried() -> None:
    assert not make_auth(FakeTokenServer()).challenged([Challenge("negotiate", {})], sent=None)
