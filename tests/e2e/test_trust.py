"""Trust end to end: `mirrord sync` between two real registries (distribution 2.8) with a signature
policy and a signing target. Sources are signed in the test by an independent cosign
(tests/trust/cosignkit.py); the mirror's key comes from `mirrord keygen`; source requests are
counted by a proxy. (Debian's skopeo is built with sigstore verification disabled, so the mirror's
signatures are checked here with cryptography directly.)"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mirrord.oci import Reference
from mirrord.registry.hub import Registries
from mirrord.registry.settings import RegistrySettings
from mirrord.testing.sample import SampleImage, push_sample, sample_image
from tests.e2e.helpers import PLAIN, read_report, registries_yaml, run_cli, write_plan
from tests.testbed.proxy import FaultProxy
from tests.testbed.registry import RegistryServer
from tests.trust.cosignkit import CosignKey, public_key, read_signatures, sig_tag, sign

pytestmark = [pytest.mark.integration]


async def _seed(host: str, repo: str, keys: dict[str, CosignKey]) -> dict[str, SampleImage]:
    """Four tags of images sharing no blob: signed (by the publisher, skopeo-style identity with the
    tag), index (a signed two-platform index), bare (unsigned), stranger (signed by another key)."""
    kinds = {
        "signed": "oci-manifest",
        "index": "oci-index",
        "bare": "oci-manifest",
        "stranger": "oci-manifest",
    }
    made = {}
    async with Registries({host: RegistrySettings(host=host, tls=PLAIN)}) as hub:
        repository = hub.repository(Reference.parse(f"{host}/{repo}", default_tag=None))
        for i, (tag, kind) in enumerate(kinds.items()):
            image = sample_image(f"{repo}-{tag}", kind=kind, platforms=("linux/amd64", "linux/arm64"), seed=i)
            await push_sample(repository, image, tag)
            made[tag] = image
        for tag, signer in (("signed", "publisher"), ("index", "publisher"), ("stranger", "stranger")):
            await sign(repository, made[tag].digest, keys[signer], f"{host}/{repo}:{tag}")
    return made


def _policy(path: Path, source_host: str, signed_host: str, repo: str, publisher: Path) -> Path:
    """Reject by default; the source repository (as mirrord reaches it, through the proxy) needs
    the publisher's signature, whose identity names the registry behind the proxy (remapIdentity).
    Written as skopeo's policy.json is, with other transports."""
    body = {
        "default": [{"type": "reject"}],
        "transports": {
            "docker": {
                f"{source_host}/{repo}": [{
                    "type": "sigstoreSigned", "keyPath": str(publisher),
                    "signedIdentity": {"type": "remapIdentity", "prefix": source_host,
                                       "signedPrefix": signed_host},
                }],
            },
            "docker-daemon": {"": [{"type": "insecureAcceptAnything"}]},
        },
    }  # fmt: skip
    path.write_text(json.dumps(body, indent=2))
    return path


def _plan(tmp: Path, source: str, mirror: str, repo: str, policy: Path, key: Path) -> Path:
    (tmp / "pass").write_text("mirror passphrase\n")
    return write_plan(
        tmp / "plan.yaml",
        f"""
version: 1
{registries_yaml([source, mirror])}
policy: {policy}
sync:
  - name: trusted
    source: {source}/{repo}
    tags: [signed, index, bare, stranger]
    target:
      ref: {mirror}/{repo}
      sign: {{key_file: {key}, passphrase_file: {tmp / "pass"}}}
  - name: filtered
    source: {source}/{repo}
    tags: [index]
    platforms: [linux/amd64]
    target:
      ref: {mirror}/{repo}-amd64
      sign: {{key_file: {key}, passphrase_env: MIRRORD_TEST_MIRROR_PASS}}
""",
    )


def _blob_gets(proxy: FaultProxy) -> set[str]:
    return {
        path.split("/blobs/")[1]
        for method, path, _ in proxy.requests
        if method == "GET" and "/blobs/" in path
    }


async def test_policy_refuses_before_any_blob_and_the_mirror_signs_what_it_serves(
    plain_registry: RegistryServer, registry_factory: Any, unique_repo: str, tmp_path: Path
) -> None:
    mirror = registry_factory("plain")
    keys = {"publisher": CosignKey.make(tmp_path / "publisher.pub"),
            "stranger": CosignKey.make(tmp_path / "stranger.pub")}  # fmt: skip
    made = await _seed(plain_registry.host, unique_repo, keys)
    (tmp_path / "keygen-pass").write_text("mirror passphrase\n")
    keygen = await run_cli(
        "keygen", str(tmp_path / "mirror"), "--passphrase-file", str(tmp_path / "keygen-pass")
    )
    assert keygen.code == 0, keygen.output
    mirror_pub = public_key(tmp_path / "mirror.pub")
    env = {"MIRRORD_TEST_MIRROR_PASS": "mirror passphrase"}

    async with FaultProxy(plain_registry.url) as src:
        policy = _policy(
            tmp_path / "policy.json", src.host, plain_registry.host, unique_repo, keys["publisher"].pub
        )
        plan = _plan(tmp_path, src.host, mirror.host, unique_repo, policy, tmp_path / "mirror.key")
        check = await run_cli("check", "-c", str(plan), env=env)
        assert check.code == 0, check.output
        assert "transport 'docker-daemon' ignored" in check.stderr
        assert "mirror passphrase" not in check.output
        assert "passphrase_file:" in check.stdout

        first = await run_cli("sync", "-c", str(plan), "--report", str(tmp_path / "r1.json"), env=env)
        assert first.code == 1, first.output  # two images were rejected
        rows = {(r["entry"], r["source"].rsplit(":", 1)[1]): r for r in read_report(tmp_path / "r1.json")}
        assert {k: r["result"] for k, r in rows.items()} == {
            ("trusted", "signed"): "copied", ("trusted", "index"): "copied",
            ("trusted", "bare"): "rejected", ("trusted", "stranger"): "rejected",
            ("filtered", "index"): "copied",
        }  # fmt: skip
        assert "holds none" in rows["trusted", "bare"]["error"]
        assert "not signed by a trusted key" in rows["trusted", "stranger"]["error"]
        assert "image rejected" in first.stderr
        assert "mirror passphrase" not in first.output
        # Zero blob GETs for the refused images: not a layer, not a config, not a signature payload.
        refused = {str(d) for tag in ("bare", "stranger") for d in made[tag].blobs}
        assert refused
        assert not refused & _blob_gets(src)

        # What the mirror serves: only admitted images, each signed by the mirror beside the publisher.
        async with Registries({mirror.host: RegistrySettings(host=mirror.host, tls=PLAIN)}) as hub:
            target = hub.repository(Reference.parse(f"{mirror.host}/{unique_repo}", default_tag=None))
            tags = set(await target.tags_list())
            assert {"bare", "stranger"}.isdisjoint(tags)
            verifiers = {"publisher": keys["publisher"].public, "mirror": mirror_pub}
            for tag in ("signed", "index"):
                digest = made[tag].digest
                found = await read_signatures(target, digest, verifiers)
                assert {(f.identity, f.digest, f.verified_by) for f in found} == {
                    (f"{plain_registry.host}/{unique_repo}:{tag}", str(digest), "publisher"),
                    (f"{mirror.host}/{unique_repo}", str(digest), "mirror"),
                }
            filtered = hub.repository(Reference.parse(f"{mirror.host}/{unique_repo}-amd64", default_tag=None))
            new = rows["filtered", "index"]["target_digests"][f"{mirror.host}/{unique_repo}-amd64"]
            assert new != str(made["index"].digest)
            found = await read_signatures(filtered, new, verifiers)
            assert [(f.identity, f.digest, f.verified_by) for f in found] == [
                (f"{mirror.host}/{unique_repo}-amd64", new, "mirror")
            ]
            sig_digests = {
                tag: (await target.manifest_head(sig_tag(made[tag].digest))) for tag in ("signed", "index")
            }
            sig_digests["filtered"] = await filtered.manifest_head(sig_tag(new))

        # A second pass signs nothing new: the .sig manifests keep their digests, and the admitted
        # images cost the source their HEAD only (no GET, no signature read: unchanged is not re-judged).
        src.clear_requests()
        second = await run_cli("sync", "-c", str(plan), "--report", str(tmp_path / "r2.json"), env=env)
        assert second.code == 1, second.output
        admitted = ["/manifests/signed", "/manifests/index"]
        admitted += [f(made[t].digest) for t in ("signed", "index") for f in (str, sig_tag)]
        assert [(m, p) for m, p, _ in src.requests if m != "HEAD" and any(a in p for a in admitted)] == []
        assert src.count("HEAD", "manifest") == 2 + 1 + 2  # signed, index (twice: two entries), refused two
        results = {
            (r["entry"], r["source"].rsplit(":", 1)[1]): r["result"]
            for r in read_report(tmp_path / "r2.json")
        }
        assert (
            results["trusted", "signed"]
            == results["trusted", "index"]
            == results["filtered", "index"]
            == "unchanged"
        )
        async with Registries({mirror.host: RegistrySettings(host=mirror.host, tls=PLAIN)}) as hub:
            target = hub.repository(Reference.parse(f"{mirror.host}/{unique_repo}", default_tag=None))
            filtered = hub.repository(Reference.parse(f"{mirror.host}/{unique_repo}-amd64", default_tag=None))
            for tag in ("signed", "index"):
                assert await target.manifest_head(sig_tag(made[tag].digest)) == sig_digests[tag]
            assert await filtered.manifest_head(sig_tag(new)) == sig_digests["filtered"]
