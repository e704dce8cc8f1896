"""require_signatures: an image whose digest would change at a target is refused there."""

from __future__ import annotations

from copy_signed import signed_source

from mirrord.copy import CopyEngine, CopyRequest, Target
from mirrord.oci import Platform
from mirrord.testing.memory import MemoryRegistry


async def test_require_signatures_refuses_a_digest_change() -> None:
    source, _ = await signed_source()
    target = MemoryRegistry("dst.example").repository("app")
    request = CopyRequest(
        source=source,
        reference="1",
        targets=(Target(target, "1", format="docker", artifacts=True),),
        require_signatures=True,
    )
    result = await CopyEngine().copy(request)
    assert result.outcome == "failed"
    assert result.error is not None
    assert "require_signatures" in result.error
    assert await target.tags_list() == []


async def test_require_signatures_allows_an_unchanged_digest() -> None:
    source, _ = await signed_source()
    target = MemoryRegistry("dst.example").repository("app")
    request = CopyRequest(
        source=source,
        reference="1",
        targets=(Target(target, "1", format="oci", artifacts=True),),
        require_signatures=True,
    )
    result = await CopyEngine().copy(request)
    assert result.outcome == "copied", result.error


async def test_require_signatures_refuses_a_platform_filter_rewrite() -> None:
    source, made = await signed_source()
    target = MemoryRegistry("dst.example").repository("app")
    amd64 = (Platform.parse("linux/amd64"),)
    request = CopyRequest(
        source=source, reference="1", targets=(Target(target, "1"),), platforms=amd64, require_signatures=True
    )
    result = await CopyEngine().copy(request)
    assert result.outcome == "failed"
    assert result.error is not None
    assert str(made["image"].digest) in result.error
    assert not target.registry.links.get("app")  # refused before any blob moved
