"""`mirrord sync` to a zstd target end to end: layers re-encoded once, remembered across runs in the
state directory, skopeo reads the result."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mirrord.oci import ImageIndex, ImageManifest, parse_manifest
from mirrord.oci import mediatypes as mt
from tests.e2e.helpers import images, read_report, registries_yaml, run_cli, seed, write_plan
from tests.testbed.registry import RegistryServer
from tests.testbed.tools import skopeo_copy, skopeo_inspect_raw

pytestmark = [pytest.mark.integration, pytest.mark.tools("skopeo")]


def _recompressed(output: str) -> list[str]:
    """Digests of the layers a run re-encoded, from its JSON log lines."""
    found = []
    for line in output.splitlines():
        if line.startswith("{") and '"layer recompressed"' in line:
            found.append(json.loads(line)["digest"])
    return found


async def test_zstd_target_through_sync_reencodes_each_layer_once_across_runs(
    plain_registry: RegistryServer, registry_factory: object, unique_repo: str, tmp_path: Path
) -> None:
    mirror = registry_factory("plain")  # type: ignore[operator]
    made = images("1.0.0", "1.1.0")  # one base layer per platform shared by both tags
    await seed(plain_registry.host, unique_repo, {"1.0.0": made["1.0.0"]})
    plan = write_plan(
        tmp_path / "plan.yaml",
        f"""
version: 1
{registries_yaml([plain_registry.host, mirror.host])}
sync:
  - name: zstd
    source: {plain_registry.host}/{unique_repo}
    target: {{ref: {mirror.host}/{unique_repo}, compression: zstd}}
""",
    )
    state = tmp_path / "state"
    args = ("sync", "-c", str(plan), "--state-dir", str(state), "--report")
    first = await run_cli(*args, str(tmp_path / "r1.json"))
    assert first.code == 0, first.output
    assert [r["result"] for r in read_report(tmp_path / "r1.json")] == ["copied"]
    first_layers = _recompressed(first.output)
    assert len(first_layers) == 6  # 3 platforms x 2 layers
    assert len(json.loads((state / "conversions.json").read_text())["entries"]) == 6

    await seed(plain_registry.host, unique_repo, {"1.1.0": made["1.1.0"]})
    second = await run_cli(*args, str(tmp_path / "r2.json"))
    assert second.code == 0, second.output
    results = {r["source"].rsplit(":", 1)[1]: r["result"] for r in read_report(tmp_path / "r2.json")}
    assert results == {"1.0.0": "unchanged", "1.1.0": "copied"}
    assert len(_recompressed(second.output)) == 3  # the shared base layers were not re-encoded

    index = parse_manifest(skopeo_inspect_raw(mirror, f"{unique_repo}:1.1.0"))
    assert isinstance(index, ImageIndex)
    for entry in index.manifests:
        child = parse_manifest(skopeo_inspect_raw(mirror, f"{unique_repo}@{entry.digest}"))
        assert isinstance(child, ImageManifest)
        assert {layer.media_type for layer in child.layers} == {mt.OCI_LAYER_ZSTD}
    source = f"docker://{mirror.ref(f'{unique_repo}:1.1.0')}"
    skopeo_copy(source, f"oci:{tmp_path / 'layout'}:x", "--all", *mirror.skopeo_flags("src"))
