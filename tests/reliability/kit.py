"""Helpers of the reliability tests: a multi-arch corpus, plans, completeness checks, log counts."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

from mirrord.oci import Reference, parse_manifest
from mirrord.oci.manifest import ImageIndex
from mirrord.registry.base import Repository
from mirrord.registry.errors import NotFound
from mirrord.registry.hub import Registries
from mirrord.registry.settings import RegistrySettings
from mirrord.testing.sample import SampleImage, sample_image
from tests.e2e.helpers import PLAIN, registries_yaml, write_plan
from tests.testbed.registry import RegistryServer
from tests.testbed.tools import skopeo_inspect_raw

#: Big enough that a reset after a few KiB lands mid-body, small enough to keep tests fast.
#: Seconds a listed tag may take to resolve (distribution writes its directory, then its link).
TAG_SETTLE = 5.0
LAYER_SIZE = 192 * 1024


def corpus(count: int, *, layer_size: int = LAYER_SIZE, prefix: str = "r") -> dict[str, SampleImage]:
    """``count`` multi-arch OCI indexes (tags ``r1``...), sharing base layers, distinct app layers."""
    return {
        f"{prefix}{i}": sample_image(f"rel-{prefix}{i}", seed=1000 + i, base_seed=7, layer_size=layer_size)
        for i in range(1, count + 1)
    }


def sync_plan(
    path: Path,
    source: str,
    target: str,
    repo: str,
    tags: Iterable[str],
    *,
    registry_extra: Mapping[str, str] | None = None,
    entry_extra: str = "",
    target_repo: str | None = None,
) -> Path:
    """A one-entry plan copying ``tags`` of ``source/repo`` to ``target/(target_repo or repo)``.

    ``registry_extra`` adds YAML lines (e.g. ``stall_timeout: 1s``) under a host's settings.
    """
    lines = registries_yaml([source, target]).splitlines()
    out: list[str] = []
    for line in lines:
        out.append(line)
        host = line.strip().rstrip(":")
        if (
            registry_extra
            and line.startswith("  ")
            and not line.startswith("    ")
            and host in registry_extra
        ):
            out.append(f"    {registry_extra[host]}")
    tag_list = ", ".join(tags)
    body = "\n".join(["version: 1", *out, "sync:", "  - name: rel", f"    source: {source}/{repo}"])
    body += f"\n    target: {target}/{target_repo or repo}\n    tags: [{tag_list}]\n{entry_extra}"
    return write_plan(path, body)


def retries_logged(stderr: str) -> dict[str, int]:
    """Count the JSON ``retrying`` log lines by reason."""
    counts: dict[str, int] = {}
    for reason, _ in retry_delays(stderr):
        counts[reason] = counts.get(reason, 0) + 1
    return counts


def retry_delays(stderr: str) -> list[tuple[str, float]]:
    """``(reason, delay)`` of every JSON ``retrying`` log line."""
    found: list[tuple[str, float]] = []
    for line in stderr.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and record.get("msg") == "retrying":
            found.append((str(record.get("reason")), float(record.get("delay", -1))))
    return found


def assert_identical(source: RegistryServer, target: RegistryServer, repo: str, tags: Iterable[str]) -> int:
    """skopeo reads every tag (and each index's instances) byte-identical at both; returns manifests seen."""
    seen = 0
    for tag in tags:
        raw = skopeo_inspect_raw(source, source.ref(f"{repo}:{tag}"))
        assert skopeo_inspect_raw(target, target.ref(f"{repo}:{tag}")) == raw, tag
        manifest = parse_manifest(raw)
        seen += 1
        if isinstance(manifest, ImageIndex):
            for child in manifest.manifests:
                ref = f"{repo}@{child.digest}"
                assert skopeo_inspect_raw(target, target.ref(ref)) == skopeo_inspect_raw(
                    source, source.ref(ref)
                )
                seen += 1
    return seen


async def incomplete_tags(host: str, repo: str) -> list[str]:
    """Tags at ``host/repo`` whose manifest, child manifests or blobs are not all present (HEAD/GET)."""
    settings = {host: RegistrySettings(host=host, tls=PLAIN)}
    async with Registries(settings) as registries:
        repository = registries.repository(Reference.parse(f"{host}/{repo}", default_tag=None))
        try:
            tags = await repository.tags_list()
        except NotFound:
            return []
        return [tag for tag in tags if not await _tag_complete(repository, tag)]


async def _tag_complete(repository: Repository, tag: str) -> bool:
    """distribution creates a tag's directory (listed by tags/list) before it writes the tag's link,
    so a tag being created is listed for a moment while GET by tag still answers 404: it points at
    nothing yet. Only that case is looked at again, until it resolves or ``TAG_SETTLE`` seconds
    passed (generous: a loaded machine may take a while between the two writes); a resolvable tag
    with any child manifest or blob missing is incomplete at once."""
    deadline = time.monotonic() + TAG_SETTLE
    while await repository.manifest_head(tag) is None:
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)
    return await _complete(repository, tag)


async def _complete(repository: Repository, reference: str) -> bool:
    try:
        manifest = await repository.manifest_get(reference)
    except NotFound:
        return False
    if isinstance(manifest, ImageIndex):
        for child in manifest.manifests:
            if not await _complete(repository, str(child.digest)):
                return False
        return True
    for blob in manifest.blobs:
        if await repository.blob_head(blob.digest) is None:
            return False
    return True
