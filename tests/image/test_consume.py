"""What mirrord mirrors, a real runtime pulls and runs: podman pulls each variant mirrord wrote and runs
busybox ``echo`` in it.

The source is a Docker manifest list of two runnable busybox images (Debian's static amd64 binary; the
second instance is labelled arm64, so only amd64 is run). One ``mirrord sync`` writes five variants:

- ``plain``: the list as it is (digests preserved);
- ``zstd``: every layer recompressed with zstd (``compression: zstd``);
- ``oci``: the Docker list converted to an OCI index (``format: oci``);
- ``platform``: filtered to linux/amd64 (``platforms: [linux/amd64]``);
- ``layout``: an OCI image layout directory (``oci:DIR:TAG``), pulled by podman from the directory.

Each variant is first checked to be what it claims (media types, platforms, with skopeo), so a mirrord
that silently skipped the conversion would fail here rather than pass on the source's bytes.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.helpers import cli_env, write_plan
from tests.image.conftest import BUSYBOX_ARCHS
from tests.image.kit import Containers, push_busybox_list
from tests.testbed.registry import RegistryServer, start_registry
from tests.testbed.tools import skopeo

pytestmark = [pytest.mark.image, pytest.mark.integration, pytest.mark.timeout(1800)]

TAG = "v1"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
ZSTD_LAYER = "application/vnd.oci.image.layer.v1.tar+zstd"


@dataclass(frozen=True)
class Mirrored:
    """The registries and layout of one mirroring run."""

    source: RegistryServer
    target: RegistryServer
    layout: Path

    def ref(self, variant: str) -> str:
        """Where podman pulls ``variant`` from."""
        if variant == "layout":
            return f"oci:{self.layout}:{TAG}"
        return f"docker://{self.target.ref(f'{variant}/busybox:{TAG}')}"


@pytest.fixture(scope="module")
def mirrored(
    containers: Containers, busybox_rootfs_tar: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Mirrored]:
    """The busybox list pushed to a source registry and mirrored by ``mirrord sync`` in every variant."""
    with (
        start_registry("plain", tmp_path_factory.mktemp("consume-source")) as source,
        start_registry("plain", tmp_path_factory.mktemp("consume-target")) as target,
    ):
        dest = f"docker://{source.ref(f'library/busybox:{TAG}')}"
        push_busybox_list(containers, busybox_rootfs_tar, dest, BUSYBOX_ARCHS)
        work = tmp_path_factory.mktemp("consume")
        layout = work / "layout"
        src, dst = f"{source.host}/library/busybox", f"{target.host}"
        plan = write_plan(
            work / "mirrord.yaml",
            f"""
            version: 1
            registries:
              {source.host}: {{tls: false}}
              {target.host}: {{tls: false}}
            sync:
              - name: busybox
                source: {src}
                tags: [{TAG}]
                targets:
                  - {dst}/plain/busybox
                  - {{ref: {dst}/zstd/busybox, compression: zstd}}
                  - {{ref: {dst}/oci/busybox, format: oci}}
                  - oci:{layout}
              - name: busybox-amd64
                source: {src}
                tags: [{TAG}]
                target: {dst}/platform/busybox
                platforms: [linux/amd64]
            """,
        )
        ran = subprocess.run(
            [sys.executable, "-m", "mirrord", "sync", "-c", str(plan)],
            capture_output=True,
            text=True,
            env=cli_env(),
            timeout=300,
            check=False,
        )
        assert ran.returncode == 0, ran.stdout + ran.stderr
        yield Mirrored(source, target, layout)


def _raw(target: RegistryServer, ref: str) -> dict[str, Any]:
    raw: dict[str, Any] = json.loads(
        skopeo("inspect", "--raw", *target.skopeo_flags(""), f"docker://{target.ref(ref)}").stdout
    )
    return raw


def _layout_raw(layout: Path, digest: str | None = None) -> dict[str, Any]:
    if digest is None:
        (entry,) = json.loads((layout / "index.json").read_text())["manifests"]
        digest = entry["digest"]
    assert digest is not None
    raw: dict[str, Any] = json.loads((layout / "blobs" / "sha256" / digest.split(":", 1)[1]).read_text())
    return raw


def _archs(index: dict[str, Any]) -> list[str]:
    return sorted(m["platform"]["architecture"] for m in index["manifests"])


def check_variant(mirrored: Mirrored, variant: str) -> None:
    """The mirrored ``variant`` is what its plan asked for (not the source's bytes passed through)."""
    target = mirrored.target
    if variant == "layout":
        index = _layout_raw(mirrored.layout)
        assert index["mediaType"] == OCI_INDEX
        assert _archs(index) == sorted(BUSYBOX_ARCHS)
        return
    index = _raw(target, f"{variant}/busybox:{TAG}")
    expected_type = {"plain": DOCKER_LIST, "platform": DOCKER_LIST}.get(variant, OCI_INDEX)
    assert index["mediaType"] == expected_type
    assert _archs(index) == (["amd64"] if variant == "platform" else sorted(BUSYBOX_ARCHS))
    if variant == "plain":
        source = mirrored.source
        assert index == _raw(source, f"library/busybox:{TAG}")
    if variant == "zstd":
        for entry in index["manifests"]:
            manifest = _raw(target, f"zstd/busybox@{entry['digest']}")
            assert {layer["mediaType"] for layer in manifest["layers"]} == {ZSTD_LAYER}


@pytest.mark.parametrize("variant", ["plain", "zstd", "oci", "platform", "layout"])
def test_podman_pulls_and_runs_what_mirrord_mirrored(
    containers: Containers, mirrored: Mirrored, variant: str
) -> None:
    check_variant(mirrored, variant)
    ref = mirrored.ref(variant)
    image_id = containers.podman(
        "pull", "--quiet", "--tls-verify=false", "--arch", "amd64", "--os", "linux", ref
    ).strip()
    try:
        info = containers.inspect_image(image_id)
        assert info["Architecture"] == "amd64"
        assert info["Labels"]["mirrord.test.arch"] == "amd64"
        out = containers.podman("run", "--rm", "--network", "none", image_id, "echo", f"hello from {variant}")
        assert out == f"hello from {variant}\n"
        containers.podman("run", "--rm", "--network", "none", image_id, "true")
    finally:
        containers.podman("rmi", "--force", image_id, check=False)
