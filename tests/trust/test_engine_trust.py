"""The gate and the signer inside the copy engine (in-memory registries; the real ones are in
tests/e2e/test_trust.py)."""

from __future__ import annotations

import json
from pathlib import Path

from mirrord.copy import CopyEngine, CopyRequest, Target
from mirrord.core.events import Event, EventBus, ImageRejected
from mirrord.oci import Platform
from mirrord.testing.memory import MemoryRegistry, MemoryRepository
from mirrord.testing.sample import push_sample, sample_image
from mirrord.trust.gate import PolicyGate
from mirrord.trust.keys import generate_key_pair
from mirrord.trust.policy import load_policy
from mirrord.trust.signer import CosignSigner
from tests.trust.cosignkit import CosignKey, read_signatures, sign


def _policy(tmp_path: Path, pub: Path, identity: str = "matchRepository") -> PolicyGate:
    body = {
        "default": [{"type": "reject"}],
        "transports": {"docker": {"src.example/app": [
            {"type": "sigstoreSigned", "keyPath": str(pub), "signedIdentity": {"type": identity}}
        ]}},
    }  # fmt: skip
    (tmp_path / "policy.json").write_text(json.dumps(body))
    return PolicyGate(load_policy(tmp_path / "policy.json"))


async def _source(tags: dict[str, str]) -> tuple[MemoryRepository, dict[str, object]]:
    source = MemoryRegistry("src.example").repository("app")
    made = {}
    for i, (tag, kind) in enumerate(tags.items()):
        image = sample_image(f"app-{tag}", kind=kind, platforms=("linux/amd64", "linux/arm64"), seed=i + 1)
        await push_sample(source, image, tag)
        made[tag] = image
    return source, made


async def test_the_gate_admits_signed_images_and_refuses_others_before_any_blob(tmp_path: Path) -> None:
    publisher, stranger = CosignKey.make(tmp_path / "pub.pem"), CosignKey.make(tmp_path / "other.pem")
    source, made = await _source({"signed": "oci-manifest", "index": "oci-index", "bare": "oci-manifest",
                                  "stranger": "oci-manifest"})  # fmt: skip
    await sign(source, made["signed"].digest, publisher, "src.example/app")  # type: ignore[attr-defined]
    await sign(source, made["index"].digest, publisher, "src.example/app")  # type: ignore[attr-defined]
    await sign(source, made["stranger"].digest, stranger, "src.example/app")  # type: ignore[attr-defined]
    gate = _policy(tmp_path, publisher.pub)
    target = MemoryRegistry("dst.example").repository("app")
    seen: list[Event] = []
    bus = EventBus()
    bus.subscribe(seen.append)
    engine = CopyEngine(events=bus)
    results = {}
    for tag in ("bare", "stranger", "signed", "index"):
        source.registry.reset_calls()
        request = CopyRequest(source=source, reference=tag, targets=(Target(target, tag),), gate=gate)
        results[tag] = (await engine.copy(request), source.registry.calls["blob_open"])
    assert results["bare"][0].outcome == "rejected"
    assert "holds none" in (results["bare"][0].error or "")
    assert results["stranger"][0].outcome == "rejected"
    assert "not signed by a trusted key" in (results["stranger"][0].error or "")
    assert results["bare"][1] == results["stranger"][1] == 0  # not even the signature payload
    assert results["signed"][0].outcome == "copied", results["signed"][0].error
    assert results["index"][0].outcome == "copied", results["index"][0].error
    assert sorted(await target.tags_list()) == ["index", "signed"]
    rejected = [e for e in seen if isinstance(e, ImageRejected)]
    assert [e.source for e in rejected] == ["src.example/app:bare", "src.example/app:stranger"]
    assert gate.stats.images == 4


async def test_identity_and_digest_claims_are_checked(tmp_path: Path) -> None:
    publisher = CosignKey.make(tmp_path / "pub.pem")
    source, made = await _source({"1": "oci-manifest", "2": "oci-manifest"})
    # Signed for another repository, and a signature of image 2 copied onto image 1's tag.
    await sign(source, made["1"].digest, publisher, "src.example/other")  # type: ignore[attr-defined]
    digest2 = made["2"].digest  # type: ignore[attr-defined]
    await sign(source, digest2, publisher, "src.example/app:2")
    gate = _policy(tmp_path, publisher.pub, identity="matchRepoDigestOrExact")
    target = MemoryRegistry("dst.example").repository("app")
    engine = CopyEngine()
    one = await engine.copy(
        CopyRequest(source=source, reference="1", targets=(Target(target, "1"),), gate=gate)
    )
    assert one.outcome == "rejected"
    assert "'src.example/other' does not match src.example/app:1" in (one.error or "")
    two = await engine.copy(
        CopyRequest(source=source, reference="2", targets=(Target(target, "2"),), gate=gate)
    )
    assert two.outcome == "copied", two.error


async def test_the_mirror_signs_beside_the_publisher_and_not_twice(tmp_path: Path) -> None:
    publisher, mirror = CosignKey.make(tmp_path / "pub.pem"), CosignKey.make(tmp_path / "mirror.pem")
    source, made = await _source({"1": "oci-index"})
    digest = made["1"].digest  # type: ignore[attr-defined]
    await sign(source, digest, publisher, "src.example/app")
    target = MemoryRegistry("dst.example").repository("mirror/app")
    signer = CosignSigner(mirror.private)
    request = CopyRequest(
        source=source, reference="1", targets=(Target(target, "1", artifacts=True, signer=signer),),
        recheck_artifacts=True,
    )  # fmt: skip
    engine = CopyEngine()
    assert (await engine.copy(request)).outcome == "copied"
    found = await read_signatures(target, digest, {"publisher": publisher.public, "mirror": mirror.public})
    assert {(f.identity, f.digest, f.verified_by) for f in found} == {
        ("src.example/app", str(digest), "publisher"),
        ("dst.example/mirror/app", str(digest), "mirror"),
    }
    again = await CopyEngine().copy(request)  # unchanged, artifacts looked at again: nothing new
    assert again.outcome == "unchanged"
    assert len(await read_signatures(target, digest, {})) == 2
    assert signer.signed == 1


async def test_a_rewritten_index_is_signed_under_its_new_digest(tmp_path: Path) -> None:
    publisher, mirror = CosignKey.make(tmp_path / "pub.pem"), CosignKey.make(tmp_path / "mirror.pem")
    source, made = await _source({"1": "oci-index"})
    await sign(source, made["1"].digest, publisher, "src.example/app")  # type: ignore[attr-defined]
    target = MemoryRegistry("dst.example").repository("app")
    request = CopyRequest(
        source=source, reference="1", platforms=(Platform.parse("linux/arm64"),),
        targets=(Target(target, "1", artifacts=True, signer=CosignSigner(mirror.private)),),
    )  # fmt: skip
    result = await CopyEngine().copy(request)
    assert result.outcome == "copied", result.error
    new = result.target_digests[str(target)]
    assert new != made["1"].digest  # type: ignore[attr-defined]
    found = await read_signatures(target, new, {"publisher": publisher.public, "mirror": mirror.public})
    assert [(f.identity, f.digest, f.verified_by) for f in found] == [("dst.example/app", str(new), "mirror")]


def test_the_signer_never_shows_its_key() -> None:
    from mirrord.trust.keys import decrypt_private_key

    key = decrypt_private_key(generate_key_pair(b"pw").private_pem, b"pw", source="k")
    assert repr(CosignSigner(key)) == "CosignSigner(<key>)"
