"""Hypothesis fuzzing of what POST /notify reads from the outside world: any body yields a Parsed or
InvalidNotification, never another exception; repository patterns likewise parse or raise ValueError."""

from __future__ import annotations

import contextlib
import json
import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mirrord.daemon.notify import InvalidNotification, parse_notification
from mirrord.plan.patterns import RepositoryPattern

EXAMPLES = int(os.environ.get("MIRRORD_FUZZ_EXAMPLES", "300"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])

_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.text(max_size=20),
    st.sampled_from(["push", "pull", "PUSH_ARTIFACT", "harbor.artifact.pushed", "h.io", "a/b", "v1"]),
    st.sampled_from(["application/vnd.oci.image.manifest.v1+json", "sha256:" + "a" * 64, "h.io/a/b:v1"]),
)
_keys = st.sampled_from(
    ["events", "action", "target", "request", "host", "repository", "tag", "digest", "mediaType", "url",
     "type", "event_data", "data", "resources", "resource_url", "repo_full_name", "push_data", "repo_name"]
)  # fmt: skip
_json = st.recursive(
    _leaf, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_keys, inner, max_size=5)
)


@FUZZ
@given(_json, st.one_of(st.none(), st.sampled_from(["h.io", "docker.io", "127.0.0.1:5000", "bad host!"])))
def test_parse_notification_never_raises_anything_else(document: object, registry: str | None) -> None:
    try:
        parsed = parse_notification(json.dumps(document).encode(), registry)
    except InvalidNotification:
        return
    assert parsed.ignored >= 0
    assert parsed.invalid >= 0


@FUZZ
@given(st.binary(max_size=200))
def test_parse_notification_of_bytes(body: bytes) -> None:
    with contextlib.suppress(InvalidNotification):
        parse_notification(body)


@FUZZ
@given(st.text(alphabet="ab*/:.", max_size=30), st.text(alphabet="ab/", max_size=20))
def test_patterns_parse_or_raise_value_error(text: str, repository: str) -> None:
    try:
        pattern = RepositoryPattern.parse(text)
    except ValueError:
        return
    if pattern.matches(repository):
        assert pattern.below(repository) is not None
