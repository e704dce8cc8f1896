"""Registry authentication: challenge parsing, token scopes, the token cache and the token dance.

Everything here is pure logic except :class:`Authenticator`, which reaches the network only through
an injected ``fetch_token`` callable, so the whole flow is testable without a server.

Flow (distribution's token spec): a request answered ``401`` carries ``WWW-Authenticate``; a
``Bearer`` challenge names a ``realm`` (token endpoint) and ``service``; we ask
``realm?service=..&scope=..&scope=..`` (with Basic credentials when we have them, anonymously
otherwise) and send ``Authorization: Bearer <token>`` afterwards. A ``Basic`` challenge takes the
credentials directly.

Token answers carry ``token``, ``access_token`` or both; ``expires_in`` may be absent (60 s) or short.
A docker ``identitytoken`` (an OAuth2 refresh token) is exchanged instead: ``POST realm`` with
``grant_type=refresh_token``, ``service``, ``scope`` and ``refresh_token`` (docker's own form). When
the token endpoint refuses the credentials, they are resolved once more (a credential helper's answer
may have expired) and, if they changed, the token is asked for again.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from mirrord.registry.errors import AuthError, ProtocolError
from mirrord.registry.http.credentials import Credentials

#: Tokens without ``expires_in`` live this long (the token spec's default).
DEFAULT_TOKEN_SECONDS = 60
#: Refresh a token this long before it expires (at most half its lifetime).
REFRESH_MARGIN_SECONDS = 30


@dataclass(frozen=True, slots=True)
class Challenge:
    """One challenge of a ``WWW-Authenticate`` header: a scheme (lower-cased) and its parameters."""

    scheme: str
    params: Mapping[str, str] = field(default_factory=dict)

    @property
    def realm(self) -> str | None:
        """The ``realm`` parameter (the token endpoint for Bearer)."""
        return self.params.get("realm")


# -- WWW-Authenticate parsing ----------------------------------------------------------------------

_TOKEN_CHARS = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ/")


class _Scanner:
    """A cursor over a header value (RFC 9110 tokens, quoted strings, separators)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def skip(self, chars: str = " \t") -> None:
        while self.pos < len(self.text) and self.text[self.pos] in chars:
            self.pos += 1

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def token(self) -> str:
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] in _TOKEN_CHARS:
            self.pos += 1
        return self.text[start : self.pos]

    def quoted(self) -> str:
        self.pos += 1  # opening quote
        out: list[str] = []
        while self.pos < len(self.text):
            char = self.text[self.pos]
            self.pos += 1
            if char == "\\" and self.pos < len(self.text):
                out.append(self.text[self.pos])
                self.pos += 1
            elif char == '"':
                return "".join(out)
            else:
                out.append(char)
        return "".join(out)  # unterminated: take what there is rather than fail the request

    def value(self) -> str:
        return self.quoted() if self.peek() == '"' else self.token()

    def is_param_ahead(self) -> bool:
        """True when the text at the cursor is ``token BWS =`` (a parameter, not a new scheme)."""
        save = self.pos
        name = self.token()
        self.skip()
        ahead = bool(name) and self.peek() == "=" and self.text[self.pos : self.pos + 2] != "=="
        self.pos = save
        return ahead


def parse_www_authenticate(header: str) -> list[Challenge]:
    """Parse every challenge of a ``WWW-Authenticate`` value, in order.

    Handles several challenges in one header, quoted strings with escaped quotes and commas, and
    bare tokens. Parameter names are lower-cased; malformed trailing text is ignored.
    """
    scanner = _Scanner(header)
    challenges: list[Challenge] = []
    while True:
        scanner.skip(" \t,")
        scheme = scanner.token()
        if not scheme:
            return challenges
        params: dict[str, str] = {}
        scanner.skip()
        while scanner.is_param_ahead():
            name = scanner.token().lower()
            scanner.skip()
            scanner.pos += 1  # '='
            scanner.skip()
            params[name] = scanner.value()
            scanner.skip(" \t,")
        if not params and scanner.peek() not in ("", ","):
            scanner.token()  # token68 (e.g. "Negotiate abc=="): not used by registries
            while scanner.peek() == "=":
                scanner.pos += 1
        challenges.append(Challenge(scheme.lower(), params))


def pick_challenge(challenges: Sequence[Challenge]) -> Challenge | None:
    """The challenge we answer: Bearer preferred (it scopes access), then Basic; None otherwise."""
    for scheme in ("bearer", "basic"):
        for challenge in challenges:
            if challenge.scheme == scheme and (scheme == "basic" or challenge.realm):
                return challenge
    return None


# -- scopes ----------------------------------------------------------------------------------------


def repository_scope(name: str, *actions: str) -> str:
    """``repository:<name>:<actions>`` for a token request (``pull``, ``push``, ``delete``)."""
    return f"repository:{name}:{','.join(actions)}"


def parse_scope(scope: str) -> tuple[str, str, frozenset[str]]:
    """Split ``type:name:actions`` into its parts (the name may itself contain ``:``)."""
    kind, _, rest = scope.partition(":")
    name, _, actions = rest.rpartition(":")
    return kind, name, frozenset(a for a in actions.split(",") if a)


def order_scopes(scopes: Iterable[str]) -> list[str]:
    """Distinct scopes with push scopes first (some registries read only the first ``scope``)."""
    unique = list(dict.fromkeys(scopes))
    return sorted(unique, key=lambda s: "push" not in parse_scope(s)[2])


def scopes_cover(granted: Iterable[str], wanted: Iterable[str]) -> bool:
    """True when the ``granted`` scopes include every action of every ``wanted`` scope."""
    have: dict[tuple[str, str], set[str]] = {}
    for scope in granted:
        kind, name, actions = parse_scope(scope)
        have.setdefault((kind, name), set()).update(actions)
    for scope in wanted:
        kind, name, actions = parse_scope(scope)
        held = have.get((kind, name), set())
        if not (actions <= held or "*" in held):
            return False
    return True


def token_query(challenge: Challenge, scopes: Sequence[str]) -> list[tuple[str, str]]:
    """Query parameters of a token request: ``service`` then one ``scope`` per scope, push first."""
    query: list[tuple[str, str]] = []
    if challenge.params.get("service"):
        query.append(("service", challenge.params["service"]))
    query.extend(("scope", scope) for scope in order_scopes(scopes))
    return query


# -- tokens ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Token:
    """A bearer token and the monotonic time after which we no longer use it."""

    value: str = field(repr=False)
    refresh_at: float

    def __repr__(self) -> str:
        return f"Token(value='***', refresh_at={self.refresh_at:.1f})"

    def fresh(self, now: float) -> bool:
        """True while the token is not yet due for refresh."""
        return now < self.refresh_at


def _parse_issued_at(text: object) -> float | None:
    if not isinstance(text, str):
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def parse_token_response(body: bytes, *, now: float, wall_now: float | None = None) -> Token:
    """Read a token endpoint's JSON: ``token`` or ``access_token``, ``expires_in``, ``issued_at``.

    ``now`` is monotonic time. A token already aged per ``issued_at`` loses that age, unless the age
    exceeds its lifetime (clock skew: then ``issued_at`` is ignored). Refresh is scheduled
    :data:`REFRESH_MARGIN_SECONDS` (at most half the lifetime) before expiry.
    """
    try:
        data = json.loads(body)
    except ValueError as exc:
        raise ProtocolError("token endpoint answered something that is not JSON") from exc
    if not isinstance(data, dict):
        raise ProtocolError("token endpoint answered JSON that is not an object")
    value = data.get("token") or data.get("access_token")
    if not isinstance(value, str) or not value:
        raise ProtocolError("token endpoint answered without a token")
    lifetime = data.get("expires_in")
    if isinstance(lifetime, str) and lifetime.strip().isdigit():
        lifetime = int(lifetime)  # some endpoints quote it
    if not isinstance(lifetime, int | float) or isinstance(lifetime, bool) or lifetime <= 0:
        lifetime = DEFAULT_TOKEN_SECONDS
    issued = _parse_issued_at(data.get("issued_at"))
    age = 0.0
    if issued is not None:
        age = max(0.0, (time.time() if wall_now is None else wall_now) - issued)
        age = 0.0 if age >= lifetime else age
    remaining = float(lifetime) - age
    return Token(value, now + remaining - min(REFRESH_MARGIN_SECONDS, remaining / 2))


class TokenCache:
    """Tokens keyed by (realm, service, sorted scopes); a lookup takes any fresh token whose scopes
    cover the wanted ones."""

    def __init__(self) -> None:
        self._tokens: dict[tuple[str, str, tuple[str, ...]], Token] = {}

    @staticmethod
    def key(realm: str, service: str, scopes: Iterable[str]) -> tuple[str, str, tuple[str, ...]]:
        """The cache key of a token request."""
        return realm, service, tuple(sorted(set(scopes)))

    def get(self, realm: str, service: str, scopes: Iterable[str], now: float) -> Token | None:
        """A fresh token for ``realm``/``service`` covering ``scopes``; expired entries are dropped."""
        wanted = list(scopes)
        exact = self._tokens.get(self.key(realm, service, wanted))
        if exact is not None and exact.fresh(now):
            return exact  # the common case, without scanning every repository's token
        for key, token in list(self._tokens.items()):
            if not token.fresh(now):
                del self._tokens[key]
            elif key[:2] == (realm, service) and scopes_cover(key[2], wanted):
                return token
        return None

    def put(self, realm: str, service: str, scopes: Iterable[str], token: Token) -> None:
        """Remember ``token`` for exactly these scopes."""
        self._tokens[self.key(realm, service, scopes)] = token

    def discard_value(self, value: str) -> None:
        """Forget every token with this value (the registry refused it)."""
        for key in [k for k, t in self._tokens.items() if t.value == value]:
            del self._tokens[key]

    def __len__(self) -> int:
        return len(self._tokens)


def basic_header(credentials: Credentials) -> str:
    """``Basic base64(user:password)``."""
    raw = f"{credentials.username}:{credentials.secret}".encode()
    return "Basic " + base64.b64encode(raw).decode("ascii")


#: ``fetch_token(realm, query, authorization) -> body``: GET the token endpoint, return the body.
TokenFetcher = Callable[[str, Sequence[tuple[str, str]], str | None], Awaitable[bytes]]
#: ``post_token(realm, form) -> body``: POST the form (urlencoded) to the token endpoint (OAuth2).
TokenPoster = Callable[[str, Sequence[tuple[str, str]]], Awaitable[bytes]]
#: The OAuth2 ``client_id`` we send with a refresh-token exchange.
OAUTH_CLIENT_ID = "mirrord"


def refresh_token_form(
    challenge: Challenge, scopes: Sequence[str], refresh_token: str
) -> list[tuple[str, str]]:
    """The form of an OAuth2 refresh-token exchange at the realm (docker's: scopes space-separated)."""
    form = [("grant_type", "refresh_token"), ("client_id", OAUTH_CLIENT_ID)]
    if challenge.params.get("service"):
        form.append(("service", challenge.params["service"]))
    if scopes:
        form.append(("scope", " ".join(order_scopes(scopes))))
    form.append(("refresh_token", refresh_token))
    return form


#: Returns the credentials for the registry, or None for anonymous access.
CredentialSource = Callable[[], Awaitable[Credentials | None]]
#: Says whether credentials may be sent to a URL (HTTPS, or a registry configured as plain HTTP);
#: None stands for the registry itself.
CredentialPolicy = Callable[[str | None], bool]


class Authenticator:
    """Authentication state of one registry: the last challenge, a token cache, shared fetches.

    ``header(scopes)`` gives the ``Authorization`` value for a request needing ``scopes`` (None
    before any challenge); ``challenged(...)`` records a 401's challenge and says whether trying
    again with new authorisation makes sense. Concurrent requests needing the same token share one
    fetch (a per-key lock; the waiters find the token in the cache).
    """

    def __init__(
        self,
        fetch_token: TokenFetcher,
        credentials: CredentialSource,
        may_send_credentials: CredentialPolicy,
        *,
        post_token: TokenPoster | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch = fetch_token
        self._post = post_token
        self._credentials = credentials
        self._may_send = may_send_credentials
        self._clock = clock
        self._challenge: Challenge | None = None
        self._cache = TokenCache()
        self._locks: dict[tuple[str, str, tuple[str, ...]], asyncio.Lock] = {}

    @property
    def challenge(self) -> Challenge | None:
        """The challenge in force (None until the registry asked for authentication)."""
        return self._challenge

    @property
    def cache(self) -> TokenCache:
        """The token cache (exposed for tests and statistics)."""
        return self._cache

    def challenged(self, challenges: Sequence[Challenge], sent: str | None) -> bool:
        """Record a 401's challenges; True when a new ``Authorization`` may succeed.

        ``sent`` is the ``Authorization`` value the refused request carried: a refused token is
        dropped from the cache; a refused Basic header will not get better by repeating it.
        """
        challenge = pick_challenge(challenges)
        if challenge is None:
            return False
        self._challenge = challenge
        if sent is not None and sent.startswith("Bearer "):
            self._cache.discard_value(sent.removeprefix("Bearer "))
            return True
        return sent is None or challenge.scheme == "bearer"

    async def header(self, scopes: Sequence[str]) -> str | None:
        """The ``Authorization`` value for a request needing ``scopes``, fetching a token if needed."""
        challenge = self._challenge
        if challenge is None:
            return None
        if challenge.scheme == "basic":
            credentials = await self._usable_credentials(None)
            if credentials is not None and credentials.identity_token:
                raise AuthError("an identity token (docker identitytoken) needs a token registry, not Basic")
            return basic_header(credentials) if credentials else None
        return "Bearer " + (await self._token(challenge, scopes)).value

    async def _usable_credentials(self, url: str | None) -> Credentials | None:
        credentials = await self._credentials()
        if credentials is None:
            return None
        if not self._may_send(url):
            raise AuthError("refusing to send credentials over plain HTTP (set tls: false to allow it)")
        return credentials

    async def _token(self, challenge: Challenge, scopes: Sequence[str]) -> Token:
        realm = challenge.realm or ""
        service = challenge.params.get("service", "")
        key = TokenCache.key(realm, service, scopes)
        token = self._cache.get(realm, service, scopes, self._clock())
        if token is not None:
            return token
        async with self._locks.setdefault(key, asyncio.Lock()):
            token = self._cache.get(realm, service, scopes, self._clock())
            if token is None:
                token = await self._fetch_token(challenge, realm, scopes)
                self._cache.put(realm, service, scopes, token)
            return token

    async def _fetch_token(self, challenge: Challenge, realm: str, scopes: Sequence[str]) -> Token:
        credentials = await self._usable_credentials(realm)
        try:
            body = await self._ask(challenge, realm, scopes, credentials)
        except AuthError:
            if credentials is None:
                raise
            # The endpoint refused them; a helper's answer may have expired: ask for them again.
            renewed = await self._usable_credentials(realm)
            if renewed is None or renewed == credentials:
                raise
            body = await self._ask(challenge, realm, scopes, renewed)
        return parse_token_response(body, now=self._clock())

    async def _ask(
        self, challenge: Challenge, realm: str, scopes: Sequence[str], credentials: Credentials | None
    ) -> bytes:
        if credentials is not None and credentials.identity_token:
            if self._post is None:
                raise AuthError("identity tokens cannot be exchanged here")
            return await self._post(realm, refresh_token_form(challenge, scopes, credentials.secret))
        authorization = basic_header(credentials) if credentials else None
        return await self._fetch(realm, token_query(challenge, scopes), authorization)
