"""Image references: the distribution grammar, Docker normalisation and canonical formatting."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mirrord.oci import Digest, InvalidReference, OCIError, Reference
from mirrord.oci.reference import is_short_name, validate_repository, validate_tag

HEX = "a" * 64
DIGEST = f"sha256:{HEX}"

# text -> (registry, repository, tag, digest)
VALID: list[tuple[str, tuple[str, str, str | None, str | None]]] = [
    ("nginx", ("docker.io", "library/nginx", "latest", None)),
    ("nginx:1.27", ("docker.io", "library/nginx", "1.27", None)),
    ("library/nginx", ("docker.io", "library/nginx", "latest", None)),
    ("bitnami/redis:7", ("docker.io", "bitnami/redis", "7", None)),
    ("docker.io/nginx", ("docker.io", "library/nginx", "latest", None)),
    ("docker.io/library/nginx:1", ("docker.io", "library/nginx", "1", None)),
    ("index.docker.io/nginx", ("docker.io", "library/nginx", "latest", None)),
    ("INDEX.Docker.IO/bitnami/redis", ("docker.io", "bitnami/redis", "latest", None)),
    ("registry-1.docker.io/library/nginx", ("registry-1.docker.io", "library/nginx", "latest", None)),
    ("ghcr.io/org/team/app:v1.0.0", ("ghcr.io", "org/team/app", "v1.0.0", None)),
    ("Quay.IO/coreos/etcd", ("quay.io", "coreos/etcd", "latest", None)),
    ("localhost/app", ("localhost", "app", "latest", None)),
    ("localhost:5000/app:dev", ("localhost:5000", "app", "dev", None)),
    ("127.0.0.1:5000/a/b/c:t", ("127.0.0.1:5000", "a/b/c", "t", None)),
    ("[::1]:5000/app", ("[::1]:5000", "app", "latest", None)),
    ("[2001:db8::1]/app:1", ("[2001:db8::1]", "app", "1", None)),
    ("[FE80::1]:443/app", ("[fe80::1]:443", "app", "latest", None)),
    ("my-registry.example.com:443/x", ("my-registry.example.com:443", "x", "latest", None)),
    ("a.b/c", ("a.b", "c", "latest", None)),
    ("example.com/a_b/c__d/e-f/g.h/i---j", ("example.com", "a_b/c__d/e-f/g.h/i---j", "latest", None)),
    (f"nginx@{DIGEST}", ("docker.io", "library/nginx", None, DIGEST)),
    (f"nginx:1@{DIGEST}", ("docker.io", "library/nginx", "1", DIGEST)),
    (f"localhost:5000/app@{DIGEST}", ("localhost:5000", "app", None, DIGEST)),
    (f"localhost:5000/app:1@{DIGEST}", ("localhost:5000", "app", "1", DIGEST)),
    ("app:_tag", ("docker.io", "library/app", "_tag", None)),
    ("app:Tag.With-Mixed_Case", ("docker.io", "library/app", "Tag.With-Mixed_Case", None)),
    ("app:" + "t" * 128, ("docker.io", "library/app", "t" * 128, None)),
    # A single component with a colon is name:tag, never host:port (Docker's rule).
    ("localhost:5000", ("docker.io", "library/localhost", "5000", None)),
    ("a/b/c", ("docker.io", "a/b/c", "latest", None)),
    ("x" * 200, ("docker.io", "library/" + "x" * 200, "latest", None)),
]

# text -> fragment of the message that names the bad part
INVALID: list[tuple[str, str]] = [
    ("", "repository name is empty"),
    (":tag", "repository name is empty"),
    ("@" + DIGEST, "repository name is empty"),
    ("foo/Bar:1", "repository component 'Bar' must be lowercase"),
    ("NGINX", "repository component 'NGINX' must be lowercase"),
    ("ghcr.io/Org/app", "repository component 'Org' must be lowercase"),
    ("x:tag!", "tag 'tag!'"),
    ("x:", "tag '' is empty"),
    ("x:-tag", "tag '-tag'"),
    ("x:.tag", "tag '.tag'"),
    ("app:" + "t" * 129, "longer than 128"),
    ("foo/", "empty path component"),
    ("foo//bar", "empty path component"),
    ("/foo", "empty path component"),
    ("localhost:5000/", "repository name is empty"),
    ("ghcr.io/org//app", "empty path component"),
    ("foo/-bar", "repository component '-bar' is invalid"),
    ("foo/bar-", "repository component 'bar-' is invalid"),
    ("foo/bar.", "repository component 'bar.' is invalid"),
    ("foo/a..b", "repository component 'a..b' is invalid"),
    ("foo/a___b", "repository component 'a___b' is invalid"),
    ("foo bar", "repository component 'foo bar' is invalid"),
    ("-host.com/app", "registry host '-host.com' is invalid"),
    ("host-.com/app", "registry host 'host-.com' is invalid"),
    ("host..com/app", "registry host 'host..com' is invalid"),
    ("host.com:port/app", "registry host 'host.com:port' is invalid"),
    ("host.com:/app", "registry host 'host.com:' is invalid"),
    ("[::1/app", "registry host '[::1' is invalid"),
    ("[zz::1]:5000/app", "registry host '[zz::1]:5000' is invalid"),
    ("nginx@sha256:abc", "digest 'sha256:abc' is invalid"),
    ("nginx@", "digest '' is invalid"),
    (f"nginx@{DIGEST}@{DIGEST}", "is invalid"),
    ("nginx@" + DIGEST.upper(), "is invalid"),
    ("example.com/" + "x" * 244, "longer than 255"),
    ("x" * 248, "longer than 255"),
]


@pytest.mark.parametrize(("text", "expected"), VALID)
def test_valid_references(text: str, expected: tuple[str, str, str | None, str | None]) -> None:
    ref = Reference.parse(text)
    digest = ref.digest and str(ref.digest)
    assert (ref.registry, ref.repository, ref.tag, digest) == expected
    assert Reference.parse(str(ref)) == ref


@pytest.mark.parametrize(("text", "fragment"), INVALID)
def test_invalid_references_name_the_bad_part(text: str, fragment: str) -> None:
    with pytest.raises(InvalidReference) as info:
        Reference.parse(text)
    message = str(info.value)
    assert message.startswith(f"invalid reference {text!r}: ")
    assert fragment in message


def test_error_messages_match_the_contract_examples() -> None:
    with pytest.raises(InvalidReference, match=r"^invalid reference 'foo/Bar:1': repository component 'Bar'"):
        Reference.parse("foo/Bar:1")
    with pytest.raises(InvalidReference, match=r"^invalid reference 'x:tag!': tag 'tag!' "):
        Reference.parse("x:tag!")


def test_name_of_exactly_255_characters_is_accepted() -> None:
    ref = Reference.parse("example.com/" + "x" * 243)
    assert len(ref.name) == 255


def test_default_tag() -> None:
    assert Reference.parse("nginx", default_tag=None).tag is None
    assert Reference.parse("nginx", default_tag=None).version is None
    assert Reference.parse("nginx", default_tag="stable").tag == "stable"
    assert Reference.parse("nginx:1", default_tag=None).tag == "1"
    assert Reference.parse(f"nginx@{DIGEST}").tag is None


def test_formatting_and_accessors() -> None:
    ref = Reference.parse(f"localhost:5000/app:1@{DIGEST}")
    assert str(ref) == f"localhost:5000/app:1@{DIGEST}"
    assert ref.name == "localhost:5000/app"
    assert ref.version == DIGEST
    assert str(Reference.parse("nginx")) == "docker.io/library/nginx:latest"
    assert str(Reference.parse("nginx", default_tag=None)) == "docker.io/library/nginx"


def test_api_host() -> None:
    assert Reference.parse("nginx").api_host == "registry-1.docker.io"
    assert Reference.parse("index.docker.io/nginx").api_host == "registry-1.docker.io"
    assert Reference.parse("ghcr.io/a/b").api_host == "ghcr.io"
    assert Reference.parse("localhost:5000/a").api_host == "localhost:5000"


def test_with_tag_and_with_digest() -> None:
    ref = Reference.parse(f"ghcr.io/a/b:1@{DIGEST}")
    assert str(ref.with_tag("2")) == "ghcr.io/a/b:2"
    other = Digest.of(b"x")
    assert str(ref.with_digest(other)) == f"ghcr.io/a/b@{other}"
    with pytest.raises(InvalidReference, match="'bad tag'"):
        ref.with_tag("bad tag")


def test_references_are_hashable_values() -> None:
    assert {Reference.parse("nginx"), Reference.parse("docker.io/library/nginx:latest")} == {
        Reference.parse("index.docker.io/library/nginx")
    }


@pytest.mark.parametrize(
    ("text", "short"),
    [
        ("nginx", True),
        ("nginx:1", True),
        ("library/nginx", True),
        ("a/b/c", True),
        ("localhost:5000", True),
        ("localhost/app", False),
        ("docker.io/nginx", False),
        ("host:5000/app", False),
        ("[::1]:5000/app", False),
    ],
)
def test_is_short_name(text: str, short: bool) -> None:
    assert is_short_name(text) is short


def test_validators() -> None:
    assert validate_tag("v1.2.3-rc_1") == "v1.2.3-rc_1"
    assert validate_repository("a/b-c/d__e") == "a/b-c/d__e"
    with pytest.raises(InvalidReference, match="longer than 128"):
        validate_tag("t" * 129)
    with pytest.raises(InvalidReference, match="'B' must be lowercase"):
        validate_repository("a/B")
    with pytest.raises(InvalidReference, match="empty path component"):
        validate_repository("a/")


# --- property tests ----------------------------------------------------------------------------

_alnum_lower = st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=8)
_separator = st.sampled_from([".", "_", "__", "-", "--"])
_path_component = st.builds(
    lambda first, rest: first + "".join(sep + part for sep, part in rest),
    _alnum_lower,
    st.lists(st.tuples(_separator, _alnum_lower), max_size=3),
)
_host_component = st.from_regex(r"\A[a-z0-9](?:[a-z0-9-]{0,6}[a-z0-9])?\Z")
_host = st.one_of(
    # docker.io hosts are normalised (library/, index.docker.io): covered by the table, not here.
    st.builds(lambda parts: ".".join(parts), st.lists(_host_component, min_size=2, max_size=4)).filter(
        lambda host: not host.endswith("docker.io")
    ),
    st.just("localhost"),
    st.just("[::1]"),
)
_port = st.one_of(st.just(""), st.integers(1, 65535).map(lambda p: f":{p}"))
_tag = st.from_regex(r"\A[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}\Z")
_digest = st.binary(max_size=16).map(lambda b: str(Digest.of(b)))


@st.composite
def _references(draw: st.DrawFn) -> str:
    host = draw(_host) + draw(_port)
    path = "/".join(draw(st.lists(_path_component, min_size=1, max_size=4)))
    text = f"{host}/{path}"
    if draw(st.booleans()):
        text += ":" + draw(_tag)
    if draw(st.booleans()):
        text += "@" + draw(_digest)
    return text


@settings(deadline=None)  # generation time varies on a busy machine; not a perf test
@given(_references())
def test_generated_references_round_trip(text: str) -> None:
    # The generators stay well below the 255-character name limit, so every reference is valid.
    ref = Reference.parse(text, default_tag=None)
    assert str(ref) == text
    assert Reference.parse(str(ref), default_tag=None) == ref


@settings(deadline=None)  # generation time varies on a busy machine; not a perf test
@given(st.text(max_size=60))
def test_parse_never_raises_anything_but_oci_errors(text: str) -> None:
    try:
        ref = Reference.parse(text)
    except OCIError:
        return
    assert Reference.parse(str(ref)) == ref
