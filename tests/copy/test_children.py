"""The one walk through an image's child manifests, shared by the engine and the dry run: every
child verified against its descriptor, in the engine and in ``--dry-run`` alike."""

from __future__ import annotations

import pytest

from mirrord.copy import CopyRequest, Target
from mirrord.copy.children import fetch_children
from mirrord.oci import AnyManifest, Digest, ImageIndex, Platform
from mirrord.registry.errors import DigestMismatch
from mirrord.sync.dryrun import _plan_copies
from mirrord.sync.report import ImageReport
from mirrord.testing.memory import MemoryRegistry, MemoryRepository
from mirrord.testing.sample import push_sample, sample_image


class _Swapping(MemoryRepository):
    """A source that answers the GET of one child digest with another manifest's bytes."""

    def __init__(self, registry: MemoryRegistry, name: str) -> None:
        super().__init__(registry, name)
        self.swap: dict[str, str] = {}

    async def manifest_get(self, reference: str) -> AnyManifest:
        return await super().manifest_get(self.swap.get(reference, reference))


async def _index() -> tuple[_Swapping, ImageIndex]:
    source = _Swapping(MemoryRegistry("src.example"), "app")
    await push_sample(source, sample_image("app", platforms=("linux/amd64", "linux/arm64")), "1")
    root = await source.manifest_get("1")
    assert isinstance(root, ImageIndex)
    return source, root


async def test_every_kept_child_is_read_and_verified() -> None:
    source, root = await _index()
    children = await fetch_children(source, root, None)
    assert set(children) == {d.digest for d in root.manifests}
    arm = await fetch_children(source, root, (Platform.parse("linux/arm64"),))
    assert [str(m.digest) for m in arm.values()] == [
        str(d.digest) for d in root.manifests if d.platform == Platform.parse("linux/arm64")
    ]


async def test_a_child_that_does_not_match_its_descriptor_is_refused() -> None:
    source, root = await _index()
    amd, arm = (str(d.digest) for d in root.manifests)
    source.swap[amd] = arm
    with pytest.raises(DigestMismatch, match=amd):
        await fetch_children(source, root, None)


async def test_the_dry_run_refuses_a_corrupt_child_as_the_copy_would() -> None:
    source, root = await _index()
    amd, arm = (str(d.digest) for d in root.manifests)
    source.swap[amd] = arm
    target = Target(MemoryRegistry("dst.example").repository("app"), "1")
    row = ImageReport(entry="e", source="src.example/app:1", result="would-copy")
    request = CopyRequest(source=source, reference="1", targets=(target,))
    await _plan_copies(request, Digest.parse(str(root.digest)), [(row, target)])
    assert row.result == "failed"
    assert row.error is not None
    assert amd in row.error
