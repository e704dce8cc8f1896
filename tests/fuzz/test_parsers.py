"""Hypothesis fuzzing of every parser fed by the outside world: each returns a value or raises only
its documented error type, never anything else (no KeyError, TypeError, RecursionError ...)."""

from __future__ import annotations

import contextlib
import json
import os

import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from mirrord.oci import InvalidManifest, InvalidReference, Reference, UnsupportedManifest, parse_manifest
from mirrord.plan.loader import parse_plan
from mirrord.plan.model import PlanError
from mirrord.registry.errors import ProtocolError
from mirrord.registry.http.auth import parse_token_response, parse_www_authenticate
from mirrord.registry.http.paging import parse_link_next
from mirrord.registry.http.retry import parse_ratelimit_remaining, parse_ratelimit_window, parse_retry_after
from mirrord.registry.http.upload import upload_offset

#: MIRRORD_FUZZ_EXAMPLES=20000 for a long local run; the default keeps the suite fast.
EXAMPLES = int(os.environ.get("MIRRORD_FUZZ_EXAMPLES", "300"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# -- strategies -------------------------------------------------------------------------------------

REF_ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-/:@[]"
ref_texts = st.one_of(
    st.text(),
    st.text(alphabet=REF_ALPHABET, max_size=80),
    st.builds(
        lambda host, path, tag, digest: f"{host}{path}{tag}{digest}",
        st.sampled_from(["", "docker.io/", "localhost:5000/", "[::1]:5000/", "Reg.IO/", "a..b/", "h:99999/"]),
        st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789._-/", max_size=40),
        st.sampled_from(["", ":latest", ":v1.0", ":-bad", ":" + "x" * 130, ":"]),
        st.sampled_from(["", "@sha256:" + "a" * 64, "@sha256:" + "A" * 64, "@sha256:abc", "@md5:x", "@"]),
    ),
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5)
    ),
    max_leaves=30,
)

MANIFEST_KEYS = [
    "schemaVersion", "mediaType", "config", "layers", "manifests", "subject", "artifactType",
    "annotations", "digest", "size", "platform", "urls", "fsLayers",
]  # fmt: skip
DESCRIPTOR_VALUES = st.one_of(
    json_values,
    st.fixed_dictionaries(
        {
            "mediaType": st.sampled_from(["application/vnd.oci.image.layer.v1.tar+gzip", "", 3]),
            "digest": st.sampled_from(["sha256:" + "a" * 64, "sha256:../../x", "x", 5, None]),
            "size": st.one_of(st.integers(), st.text(max_size=3), st.none()),
        }
    ),
)
manifest_like = st.dictionaries(
    st.sampled_from(MANIFEST_KEYS),
    st.one_of(json_values, DESCRIPTOR_VALUES, st.lists(DESCRIPTOR_VALUES, max_size=3)),
    max_size=8,
).map(lambda obj: json.dumps(obj).encode())

PLAN_KEYS = [
    "version", "registries", "defaults", "sync", "server", "source", "target", "targets", "tags", "include",
    "exclude", "semver", "latest", "platforms", "interval", "auth", "tls", "username", "password",
    "password_file", "password_env", "ref", "format", "compression", "prune", "listen", "stall_timeout",
    "chunk_size", "max_connections", "requests_per_second", "name", "docker.io", "127.0.0.1:5000",
]  # fmt: skip
yaml_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20),
    st.sampled_from([1, "1", "6h", "0s", "-1", "all", "linux/amd64", "docker.io/library/nginx", "oci:/x"]),
)  # fmt: skip
plan_like = st.recursive(
    yaml_scalars,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.sampled_from(PLAN_KEYS), children, max_size=5)
    ),
    max_leaves=25,
)

# -- tests ------------------------------------------------------------------------------------------


@FUZZ
@given(ref_texts)
@example("docker.io/library/nginx:1.27@sha256:" + "0" * 64)
def test_reference_parse_raises_only_invalid_reference(text: str) -> None:
    try:
        ref = Reference.parse(text)
    except InvalidReference:
        return
    assert Reference.parse(str(ref)) == ref  # what it prints, it reads back the same


@FUZZ
@given(st.one_of(st.binary(max_size=300), manifest_like, json_values.map(lambda v: json.dumps(v).encode())))
@example(b"\xff\xfe")
@example(b"[" * 5000 + b"]" * 5000)
@example(b'{"schemaVersion": 1, "fsLayers": []}')
def test_parse_manifest_raises_only_manifest_errors(raw: bytes) -> None:
    with contextlib.suppress(InvalidManifest, UnsupportedManifest):
        parse_manifest(raw)


@FUZZ
@given(st.one_of(st.text(), st.text(alphabet='Bearer Basic realm=",\\ \t;service=scope=x', max_size=80)))
@example('Bearer realm="unterminated')
@example('Basic realm="a\\')
def test_www_authenticate_parsing_never_raises(header: str) -> None:
    for challenge in parse_www_authenticate(header):
        assert isinstance(challenge.scheme, str)


@FUZZ
@given(st.lists(st.one_of(st.text(), st.text(alphabet='<>;,="relnxt /?a', max_size=60)), max_size=3))
@example(["<", '<a>; rel="next"', "<b>;rel=next;", "<>; rel"])
def test_link_parsing_never_raises(values: list[str]) -> None:
    target = parse_link_next(values)
    assert target is None or isinstance(target, str)


@FUZZ
@given(st.one_of(st.binary(max_size=200), json_values.map(lambda v: json.dumps(v).encode())))
@example(b'{"token": "t", "expires_in": 1e400, "issued_at": "not a date"}')
@example(b'{"access_token": "t", "issued_at": 5}')
def test_token_response_raises_only_protocol_error(body: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        parse_token_response(body, now=0.0, wall_now=0.0)


@FUZZ
@given(st.one_of(st.none(), st.text(max_size=60)))
@example("Wed, 21 Oct 2015 07:28:00")
@example("99999999999999999999")
@example("1;w=-5;w=x")
def test_header_number_parsers_never_raise(value: str | None) -> None:
    parse_retry_after(value, now=0.0)
    parse_ratelimit_remaining(value)
    parse_ratelimit_window(value)
    upload_offset(value)


@FUZZ
@given(st.one_of(st.text(max_size=200), plan_like.map(lambda v: yaml.safe_dump(v, sort_keys=False))))
@example("version: 1\nsync: [{source: a.io/x, target: b.io/x, tags: {semver: '>=1.x'}}]\n")
@example("&a [*a]")
@example("version: 1\nregistries: {a.io: {stall_timeout: -1s}}\n")
@example("!!python/object/apply:os.system ['true']")
def test_plan_loading_raises_only_plan_error(text: str) -> None:
    try:
        parse_plan(text, "fuzz.yaml")
    except PlanError as exc:
        message = str(exc)
    else:
        return
    assert message.startswith("fuzz.yaml")  # the error names the file
