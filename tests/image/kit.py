"""Real container tools for the image tests: buildah and podman on a private storage, and a runnable image.

:class:`Containers` runs buildah and podman as root on a storage of their own (``vfs`` driver, a fresh
root and run root per session, removed at the end), with a private ``containers.conf`` (``CONTAINERS_CONF``)
holding what this kind of sandbox needs: runc (crun is refused), cgroupfs (no systemd), a file events log
and explicit ulimits (the defaults are refused), and a private registries.conf and auth file, so the
host's ``/etc/containers`` search registries and credentials never change what a test sees.

:func:`busybox_rootfs` makes a runnable root file system from Debian's ``busybox-static`` binary (the
synthetic images of :mod:`mirrord.testing.sample` cannot run).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import struct
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.testbed.tools import ToolError, missing_tool, redact_args, require_tool

ROOT = Path(__file__).resolve().parents[2]
IMAGE_SCRIPT = ROOT / "scripts" / "image.py"

#: The busybox binary Debian's busybox-static package installs.
BUSYBOX = Path("/bin/busybox")
#: Applets the busybox image links: enough for ``true``, ``echo`` and a shell.
APPLETS = ("sh", "true", "echo", "sleep", "cat")

#: What this sandbox's podman needs (see the module docstring); ulimits as in the issue.
CONTAINERS_CONF = """\
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
"""

#: Seconds one buildah / podman invocation may take (a build pip-installs from the network).
TOOL_TIMEOUT = 600.0


@dataclass
class Containers:
    """buildah and podman on one private storage; every command gets the same storage and configuration."""

    home: Path

    @property
    def storage_args(self) -> list[str]:
        """Global flags naming the private storage (the same for buildah and podman)."""
        return [
            "--storage-driver",
            "vfs",
            "--root",
            str(self.home / "root"),
            "--runroot",
            str(self.home / "run"),
        ]

    def env(self) -> dict[str, str]:
        """The environment both tools run in: private containers.conf, registries.conf and auth file."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CONTAINERS_", "REGISTRY_AUTH"))}
        env["CONTAINERS_CONF"] = str(self.home / "containers.conf")
        env["CONTAINERS_REGISTRIES_CONF"] = str(self.home / "registries.conf")
        env["REGISTRY_AUTH_FILE"] = str(self.home / "auth.json")
        env["TMPDIR"] = str(self.home / "tmp")
        return env

    def setup(self) -> None:
        """Write the configuration files."""
        (self.home / "tmp").mkdir(parents=True, exist_ok=True)
        (self.home / "containers.conf").write_text(CONTAINERS_CONF)
        (self.home / "registries.conf").write_text("unqualified-search-registries = []\n")
        (self.home / "auth.json").write_text('{"auths": {}}\n')

    def run(
        self, tool: str, *args: str, check: bool = True, timeout: float = TOOL_TIMEOUT
    ) -> subprocess.CompletedProcess[str]:
        """``TOOL <storage flags> ARGS`` (tool: buildah or podman); ToolError (with output) on failure."""
        extra = ["--tmpdir", str(self.home / "libpod")] if tool == "podman" else []
        cmd = [require_tool(tool), *self.storage_args, *extra, *args]
        try:
            proc = subprocess.run(
                cmd, capture_output=True, text=True, env=self.env(), timeout=timeout, check=False
            )
        except subprocess.TimeoutExpired:
            raise ToolError(f"timed out after {timeout}s: {' '.join(redact_args(cmd))}") from None
        if check and proc.returncode != 0:
            raise ToolError(
                f"exit {proc.returncode}: {' '.join(redact_args(cmd))}\n"
                f"stdout: {proc.stdout[-4000:]}\nstderr: {proc.stderr[-4000:]}"
            )
        return proc

    def podman(self, *args: str, check: bool = True, timeout: float = TOOL_TIMEOUT) -> str:
        """podman's stdout."""
        return self.run("podman", *args, check=check, timeout=timeout).stdout

    def buildah(self, *args: str, timeout: float = TOOL_TIMEOUT) -> str:
        """buildah's stdout."""
        return self.run("buildah", *args, timeout=timeout).stdout

    def inspect_image(self, image: str) -> dict[str, Any]:
        """``podman image inspect`` of one image."""
        (found,) = json.loads(self.podman("image", "inspect", image))
        result: dict[str, Any] = found
        return result

    def close(self) -> None:
        """Remove every container and the whole storage."""
        self.run("podman", "rm", "--all", "--force", check=False, timeout=120)
        self.run("buildah", "rm", "--all", check=False, timeout=120)
        shutil.rmtree(self.home, ignore_errors=True)


def open_containers() -> Containers:
    """A fresh private storage for buildah and podman (root only: rootless needs user namespaces here)."""
    for tool in ("buildah", "podman", "runc", "conmon"):
        require_tool(tool)
    if os.geteuid() != 0:
        missing_tool("the image tests run buildah and podman as root (vfs storage, chroot isolation)")
    home = Path(tempfile.mkdtemp(prefix="mirrord-containers-", dir="/var/tmp"))
    containers = Containers(home)
    containers.setup()
    return containers


def build_mirrord_image(containers: Containers, tag: str) -> dict[str, Any]:
    """Build the Dockerfile with ``scripts/image.py`` into ``containers``' storage; its JSON summary."""
    summary = containers.home / "build.json"
    cmd = [
        sys.executable,
        str(IMAGE_SCRIPT),
        "build",
        "--engine",
        "buildah",
        "--tag",
        tag,
        "--root",
        str(containers.home / "root"),
        "--runroot",
        str(containers.home / "run"),
        "--storage-driver",
        "vfs",
        "--json",
        str(summary),
    ]
    proc = subprocess.run(
        cmd, capture_output=True, text=True, env=containers.env(), timeout=1800, check=False
    )
    if proc.returncode != 0:
        raise ToolError(f"image build failed (exit {proc.returncode}):\n{proc.stderr[-6000:]}")
    result: dict[str, Any] = json.loads(summary.read_text())
    return result


def is_static_elf(path: Path) -> bool:
    """True when ``path`` is a 64-bit little-endian ELF with no program interpreter (statically linked)."""
    data = path.read_bytes()
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        return False
    (phoff,) = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    pt_interp = 3
    return all(struct.unpack_from("<I", data, phoff + i * phentsize)[0] != pt_interp for i in range(phnum))


def busybox_rootfs(tarball: Path) -> Path:
    """A root file system tarball: Debian's static busybox at /bin/busybox and applet links beside it."""
    if not BUSYBOX.is_file() or not is_static_elf(BUSYBOX):
        missing_tool(f"{BUSYBOX} is not a static binary (Debian package busybox-static)")
    with tarfile.open(tarball, "w") as tar:
        for name in ("bin", "tmp"):
            info = tarfile.TarInfo(name)
            info.type, info.mode = tarfile.DIRTYPE, 0o1777 if name == "tmp" else 0o755
            tar.addfile(info)
        tar.add(str(BUSYBOX), arcname="bin/busybox")
        for applet in APPLETS:
            info = tarfile.TarInfo(f"bin/{applet}")
            info.type, info.linkname, info.mode = tarfile.SYMTYPE, "busybox", 0o777
            tar.addfile(info)
    return tarball


def push_busybox_list(containers: Containers, rootfs: Path, dest: str, archs: Sequence[str]) -> None:
    """Push a manifest list to ``dest`` (``docker://...``) whose instances are the busybox root file
    system labelled with ``archs``; the local copies are removed afterwards.

    Every instance holds the same amd64 binary (it only runs on amd64); the labels make the list a real
    multi-platform one for the platform filter and the runtime's platform choice. Nothing of it stays in
    the local storage, so a later ``podman pull`` of a mirrored copy must fetch and unpack every layer
    (a layer already present would be reused, and a zstd layer never decompressed).
    """
    name = f"localhost/busybox-list:{secrets.token_hex(4)}"
    images = [f"{name}-{arch}" for arch in archs]
    containers.buildah("manifest", "create", name)
    try:
        for arch, image in zip(archs, images, strict=True):
            container = containers.buildah("from", "scratch").strip()
            containers.buildah("add", container, str(rootfs), "/")
            containers.buildah(
                "config", "--arch", arch, "--os", "linux", "--cmd", "/bin/sh",
                "--env", "PATH=/bin", "--label", f"mirrord.test.arch={arch}", container,
            )  # fmt: skip
            containers.buildah("commit", "--quiet", "--format", "docker", "--rm", container, image)
            containers.buildah("manifest", "add", name, image)
        containers.buildah("manifest", "push", "--all", "--format", "v2s2", "--tls-verify=false", name, dest)
    finally:
        containers.run("buildah", "manifest", "rm", name, check=False)
        containers.run("buildah", "rmi", "--force", *images, check=False)
