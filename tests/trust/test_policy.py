"""containers-policy.json(5): loading, scope precedence, every signedIdentity form, errors."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from mirrord.oci import Reference
from mirrord.trust import TrustError
from mirrord.trust.keys import generate_key_pair
from mirrord.trust.policy import Policy, SignedIdentity, load_policy, scope_candidates


def _write(tmp_path: Path, body: Any) -> Path:
    path = tmp_path / "policy.json"
    path.write_text(json.dumps(body))
    return path


@pytest.fixture
def pub(tmp_path: Path) -> Path:
    path = tmp_path / "k.pub"
    path.write_bytes(generate_key_pair(b"").public_pem)
    return path


def _ref(text: str) -> Reference:
    return Reference.parse(text, default_tag=None)


def test_a_skopeo_policy_with_other_transports_loads_with_notes(tmp_path: Path, pub: Path) -> None:
    """/etc/containers/policy.json as Fedora ships it, plus a sigstore scope."""
    body = {
        "default": [{"type": "insecureAcceptAnything"}],
        "transports": {
            "docker": {
                "registry.access.redhat.com": [
                    {"type": "signedBy", "keyType": "GPGKeys", "keyPath": "/etc/pki/rpm-gpg/KEY"}
                ],
                "quay.io/org": [{"type": "sigstoreSigned", "keyPath": str(pub),
                                 "signedIdentity": {"type": "matchRepository"}}],
            },
            "docker-daemon": {"": [{"type": "insecureAcceptAnything"}]},
            "atomic": {"": [{"type": "reject"}]},
        },
    }  # fmt: skip
    policy = load_policy(_write(tmp_path, body))
    assert policy.scopes.keys() == {"registry.access.redhat.com", "quay.io/org"}
    notes = "\n".join(policy.notes)
    assert "'docker-daemon' ignored" in notes
    assert "'atomic' ignored" in notes
    assert "signedBy requirements cannot be checked" in notes
    scope, (req,) = policy.requirements(_ref("registry.access.redhat.com/ubi9:9.4"))
    assert scope == "registry.access.redhat.com"
    assert req.unsupported is not None
    assert policy.requirements(_ref("quay.io/org/app:1"))[0] == "quay.io/org"
    assert policy.requirements(_ref("docker.io/library/nginx:1"))[0] == "default"


def test_the_most_specific_scope_wins(tmp_path: Path) -> None:
    scopes = ["example.com:5000/ns/app:1", "example.com:5000/ns/app", "example.com:5000/ns",
              "example.com:5000", "*.example.com", "*.com", ""]  # fmt: skip
    body = {"default": [{"type": "reject"}],
            "transports": {"docker": {s: [{"type": "insecureAcceptAnything"}] for s in scopes}}}  # fmt: skip
    path = _write(tmp_path, body)
    image = _ref("reg.example.com:5000/ns/app:1")
    assert scope_candidates(image)[-2:] == ["*.example.com", "*.com"]
    chosen = []
    for scope in scopes:
        chosen.append(load_policy(path).requirements(_ref("example.com:5000/ns/app:1"))[0])
        del body["transports"]["docker"][scope]
        path = _write(tmp_path, body)
    # *.example.com never matches example.com itself; *.com does.
    assert chosen == [*scopes[:4], "*.com", "*.com", '""']
    policy = Policy("p", (), {"*.example.com": ()})
    assert policy.requirements(image)[0] == "*.example.com"
    assert policy.requirements(None)[0] == "default"


A = "reg.example/ns/app"
DIGEST = "sha256:" + "a" * 64


@pytest.mark.parametrize(
    ("identity", "intended", "signed", "expected"),
    [
        (SignedIdentity("matchExact"), f"{A}:1", f"{A}:1", True),
        (SignedIdentity("matchExact"), f"{A}:1", A, False),
        (SignedIdentity("matchExact"), f"{A}:1", f"{A}:2", False),
        (SignedIdentity("matchRepoDigestOrExact"), f"{A}:1", f"{A}:1", True),
        (SignedIdentity("matchRepoDigestOrExact"), f"{A}:1", A, False),
        (SignedIdentity("matchRepoDigestOrExact"), f"{A}@{DIGEST}", f"{A}:other", True),
        (SignedIdentity("matchRepoDigestOrExact"), f"{A}@{DIGEST}", "reg.example/x:1", False),
        (SignedIdentity("matchRepository"), f"{A}:1", A, True),
        (SignedIdentity("matchRepository"), f"{A}:1", f"{A}:9", True),
        (SignedIdentity("matchRepository"), f"{A}:1", "reg.example/ns/other", False),
        (SignedIdentity("exactReference", _ref(f"{A}:1")), "elsewhere.example/x:2", f"{A}:1", True),
        (SignedIdentity("exactReference", _ref(f"{A}:1")), "elsewhere.example/x:2", A, False),
        (SignedIdentity("exactRepository", _ref(A)), "elsewhere.example/x:2", f"{A}:7", True),
        (SignedIdentity("exactRepository", _ref(A)), "elsewhere.example/x:2", "reg.example/b", False),
        (SignedIdentity("remapIdentity", prefix="mirror.local:5000/hub", signed_prefix="reg.example"),
         "mirror.local:5000/hub/ns/app:1", f"{A}:1", True),
        (SignedIdentity("remapIdentity", prefix="mirror.local:5000/hub", signed_prefix="reg.example"),
         "mirror.local:5000/hubx/ns/app:1", f"{A}:1", False),
        (SignedIdentity("remapIdentity", prefix="mirror.local:5000/hub", signed_prefix="reg.example"),
         "mirror.local:5000/hub/ns/app:1", A, False),
        (SignedIdentity("matchRepository"), None, A, False),
        (SignedIdentity("matchRepository"), f"{A}:1", "Not A Reference", False),
    ],
)  # fmt: skip
def test_signed_identity_forms(
    identity: SignedIdentity, intended: str | None, signed: str, expected: bool
) -> None:
    assert identity.matches(_ref(intended) if intended else None, signed) is expected


def test_every_key_source_loads(tmp_path: Path, pub: Path) -> None:
    other = tmp_path / "other.pub"
    other.write_bytes(generate_key_pair(b"").public_pem)
    data = base64.b64encode(pub.read_bytes()).decode()
    forms = [{"keyPath": str(pub)}, {"keyPaths": [str(pub), str(other)]}, {"keyData": data},
             {"keyDatas": [data, base64.b64encode(other.read_bytes()).decode()]}]  # fmt: skip
    counts = []
    for form in forms:
        body = {"default": [{"type": "sigstoreSigned", **form}]}
        (req,) = load_policy(_write(tmp_path, body)).default
        counts.append(len(req.keys))
        assert req.identity.kind == "matchRepoDigestOrExact"
    assert counts == [1, 2, 1, 2]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"default": [{"type": "signedByMagic"}]},
         "policy.json: default[0].type: unknown requirement type 'signedByMagic'"),
        ({"default": [{"type": "sigstoreSigned", "keyPath": "/nonexistent/k.pub"}]},
         "policy.json: default[0].keyPath: cannot read /nonexistent/k.pub: No such file or directory"),
        ({"default": [{"type": "insecureAcceptAnything"}],
          "transports": {"docker": {"quay.io": [{"type": "sigstoreSigned", "keyPaths": ["/no.pub"]}]}}},
         'policy.json: transports.docker["quay.io"][0].keyPaths[0]: cannot read /no.pub'),
        ({"default": []}, "policy.json: default: expected a non-empty list"),
        ({"transports": {}}, "policy.json: default: missing"),
        ({"default": [{"type": "reject", "keyPath": "x"}]}, "policy.json: default[0].keyPath: unknown field"),
        ({"default": [{"type": "sigstoreSigned", "keyData": "AAAA",
                       "signedIdentity": {"type": "matchSomething"}}]},
         "default[0].signedIdentity.type: unknown signedIdentity type 'matchSomething'"),
        ({"default": [{"type": "sigstoreSigned"}]}, "give exactly one of keyPath"),
        ({"default": [{"type": "reject"}], "transports": {"docker": {"Quay.IO/x": [{"type": "reject"}]}}},
         'transports.docker["Quay.IO/x"]'),
        ({"default": [{"type": "sigstoreSigned", "keyData": "bm90IGEga2V5"}]},
         "default[0].keyData: keyData: no PEM PUBLIC KEY block"),
    ],
)  # fmt: skip
def test_errors_name_the_file_and_key(tmp_path: Path, body: Any, message: str) -> None:
    with pytest.raises(TrustError) as info:
        load_policy(_write(tmp_path, body))
    assert message in str(info.value)
    assert str(info.value).startswith(str(tmp_path / "policy.json"))


def test_keyless_sigstore_loads_noted_and_fails_closed(tmp_path: Path) -> None:
    body = {"default": [{"type": "sigstoreSigned", "fulcio": {"caPath": "/ca"}, "rekorPublicKeyPath": "/r"}]}
    policy = load_policy(_write(tmp_path, body))
    assert policy.default[0].unsupported is not None
    assert not policy.reads_signatures
    assert any("keyless" in note for note in policy.notes)
