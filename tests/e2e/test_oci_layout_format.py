"""``oci:`` targets default to ``format: oci``: a layout fed from a Docker manifest list is read by
tag with skopeo and validates with oci-image-tool; ``mirrord copy`` takes ``--format`` and
``--compression``. Through the real CLI against real registries."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from mirrord.oci import mediatypes as mt
from tests.e2e.helpers import images, read_report, registries_yaml, run_cli, seed, write_plan
from tests.testbed.registry import RegistryServer
from tests.testbed.tools import oci_image_tool_validate, skopeo, skopeo_inspect_raw

pytestmark = [pytest.mark.integration, pytest.mark.tools("skopeo", "oci-image-tool")]


async def _read_by_tag(layout: Path, tag: str) -> dict[str, object]:
    """What skopeo reads at ``oci:LAYOUT:TAG`` (raw), failing the test when it cannot."""
    raw = await asyncio.to_thread(skopeo, "inspect", "--raw", f"oci:{layout}:{tag}")
    data: dict[str, object] = json.loads(raw.stdout)
    return data


async def test_a_layout_fed_from_a_docker_list_is_oci_and_readable_by_tag(
    plain_registry: RegistryServer, unique_repo: str, tmp_path: Path
) -> None:
    await seed(plain_registry.host, unique_repo, images("1.0", kind="docker-list"))
    source_list = json.loads(skopeo_inspect_raw(plain_registry, f"{unique_repo}:1.0"))
    assert source_list["mediaType"] == mt.DOCKER_MANIFEST_LIST
    layout = tmp_path / "airgap"
    plan = write_plan(
        tmp_path / "plan.yaml",
        f"""
version: 1
{registries_yaml([plain_registry.host])}
sync:
  - name: airgap
    source: {plain_registry.host}/{unique_repo}
    target: oci:{layout}
    tags: ['1.0']
""",
    )
    result = await run_cli("sync", "-c", str(plan), "--report", str(tmp_path / "r.json"))
    assert result.code == 0, result.output
    (row,) = read_report(tmp_path / "r.json")
    assert row["formats"] == {f"oci:{layout}": "oci+keep"}
    index = await _read_by_tag(layout, "1.0")
    assert index["mediaType"] == mt.OCI_INDEX
    # Every platform image too, by skopeo's own reading of the layout.
    for os_arch in ("linux/amd64", "linux/arm64"):
        os_name, arch = os_arch.split("/")
        one = await asyncio.to_thread(
            skopeo, "--override-os", os_name, "--override-arch", arch, "inspect", f"oci:{layout}:1.0"
        )
        assert json.loads(one.stdout)["Architecture"] == arch
    await asyncio.to_thread(oci_image_tool_validate, layout, "1.0")


@pytest.mark.parametrize(
    ("flags", "expected"),
    [([], mt.OCI_INDEX), (["--format", "keep"], mt.DOCKER_MANIFEST_LIST)],
)
async def test_copy_to_a_layout_defaults_to_oci_and_takes_format(
    flags: list[str], expected: str, plain_registry: RegistryServer, unique_repo: str, tmp_path: Path
) -> None:
    await seed(plain_registry.host, unique_repo, images("1.0", kind="docker-list"))
    layout = tmp_path / "out"
    result = await run_cli("copy", plain_registry.ref(f"{unique_repo}:1.0"), f"oci:{layout}:v1", *flags)
    assert result.code == 0, result.output
    fmt = "oci" if not flags else "keep"
    assert f"(format {fmt}, compression keep)" in result.stdout
    index = json.loads((layout / "index.json").read_text())
    assert [m["mediaType"] for m in index["manifests"]] == [expected]
    if expected == mt.OCI_INDEX:
        assert (await _read_by_tag(layout, "v1"))["mediaType"] == mt.OCI_INDEX
        await asyncio.to_thread(oci_image_tool_validate, layout, "v1")


async def test_copy_takes_compression(
    plain_registry: RegistryServer, registry_factory: object, unique_repo: str
) -> None:
    mirror = registry_factory("plain")  # type: ignore[operator]
    await seed(plain_registry.host, unique_repo, images("1.0"))
    result = await run_cli(
        "copy",
        plain_registry.ref(f"{unique_repo}:1.0"),
        mirror.ref(f"{unique_repo}:z"),
        "--compression",
        "zstd",
    )
    assert result.code == 0, result.output
    index = json.loads(skopeo_inspect_raw(mirror, f"{unique_repo}:z"))
    child = index["manifests"][0]["digest"]
    manifest = json.loads(skopeo_inspect_raw(mirror, f"{unique_repo}@{child}"))
    assert {layer["mediaType"] for layer in manifest["layers"]} == {mt.OCI_LAYER_ZSTD}
