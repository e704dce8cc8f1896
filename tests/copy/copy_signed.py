"""A signed image in a MemoryRegistry: cosign tags, referrers (fallback tag or API), chains."""

from __future__ import annotations

from mirrord.oci import AnyManifest
from mirrord.testing.memory import MemoryRegistry, MemoryRepository
from mirrord.testing.sample import (
    SampleImage,
    cosign_tag,
    push_sample,
    referrers_index,
    sample_cosign,
    sample_image,
    sample_referrer,
)

PLATFORMS = ("linux/amd64", "linux/arm64")


async def signed_source(
    *, api: bool = False, fallback: bool = True
) -> tuple[MemoryRepository, dict[str, SampleImage]]:
    """An index tagged ``1`` with cosign .sig/.att/.sbom, two referrers of the root (listed in the
    fallback tag unless the source has the API), a referrer of the first referrer, and a .sig of
    the .sbom: every kind and a chain two deep."""
    source = MemoryRegistry("src.example", referrers_api=api).repository("app")
    image = sample_image("app", kind="oci-index", platforms=PLATFORMS)
    await push_sample(source, image, "1")
    made: dict[str, SampleImage] = {"image": image}
    for suffix in (".sig", ".att", ".sbom"):
        made[suffix] = sample_cosign(image.root, suffix)
        await push_sample(source, made[suffix], cosign_tag(image.digest, suffix))
    made["sbom.sig"] = sample_cosign(made[".sbom"].root, ".sig", seed=1)
    await push_sample(source, made["sbom.sig"], cosign_tag(made[".sbom"].digest, ".sig"))
    made["ref1"] = sample_referrer(image.root, seed=1)
    made["ref2"] = sample_referrer(image.root, artifact_type="application/vnd.example.sbom", seed=2)
    made["ref1.ref"] = sample_referrer(made["ref1"].root, seed=3)
    for key in ("ref1", "ref2", "ref1.ref"):
        await push_sample(source, made[key])
    if fallback and not api:
        await put_manifest(
            source, cosign_tag(image.digest), referrers_index([made["ref1"].root, made["ref2"].root])
        )
        await put_manifest(source, cosign_tag(made["ref1"].digest), referrers_index([made["ref1.ref"].root]))
    return source, made


async def put_manifest(repo: MemoryRepository, tag: str, manifest: AnyManifest) -> None:
    await repo.manifest_put(tag, manifest.raw, manifest.media_type)
