"""External tools the integration tests drive: skopeo, oci-image-tool, promtool, docker-registry.

Every helper here first calls :func:`require_tool`, so a missing tool never makes a test pass or skip
silently: with ``CI`` set the test FAILS, otherwise it is skipped with a reason naming the Debian
package (``scripts/install-deps.sh`` installs them all).

skopeo runs with ``--insecure-policy`` and a dedicated, empty registries configuration and auth file,
so the host's ``/etc/containers`` and ``~/.docker`` never change what a test sees.
"""

from __future__ import annotations

import atexit
import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import pytest

from mirrord.testing.sample import SampleImage

if TYPE_CHECKING:
    from tests.testbed.registry import RegistryServer

#: Debian package that provides each tool, for skip/fail messages.
TOOL_PACKAGES: dict[str, str] = {
    "docker-registry": "docker-registry",
    "skopeo": "skopeo",
    "oci-image-tool": "oci-image-tool",
    "promtool": "prometheus",
    "prometheus": "prometheus",
    "htpasswd": "apache2-utils",
    "buildah": "buildah",
    "podman": "podman",
    "runc": "runc",
    "conmon": "conmon",
    "debootstrap": "debootstrap",
}

#: Seconds any single tool invocation may take before the test fails.
TOOL_TIMEOUT = 120.0

REF_NAME = "org.opencontainers.image.ref.name"
_CREDS_FLAG = re.compile(r"^--(?:src-|dest-)?creds$")


def in_ci() -> bool:
    """True when the ``CI`` environment variable is set to anything but empty, ``0`` or ``false``."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def require_tool(name: str) -> str:
    """Return the absolute path of tool ``name``; fail the test (CI set) or skip it when missing."""
    path = shutil.which(name)
    if path is not None:
        return path
    package = TOOL_PACKAGES.get(name, name)
    missing_tool(f"{name} is not installed (Debian package {package}; run scripts/install-deps.sh)")


def missing_tool(message: str) -> NoReturn:
    """Fail the test when CI is set (integration tests never skip silently there), else skip it."""
    if in_ci():
        pytest.fail(f"{message}; required when CI is set", pytrace=False)
    pytest.skip(message)


class ToolError(AssertionError):
    """A tool exited non-zero. The message shows the command with credentials redacted and its output."""


def redact_args(args: Sequence[str]) -> list[str]:
    """The argument list with the password part of every ``--*creds USER:PASS`` replaced by ``***``."""
    out: list[str] = []
    hide_next = False
    for arg in args:
        if hide_next:
            arg = arg.split(":", 1)[0] + ":***"
            hide_next = False
        elif arg.startswith("--") and "=" in arg and _CREDS_FLAG.match(arg.split("=", 1)[0]):
            flag, value = arg.split("=", 1)
            arg = f"{flag}={value.split(':', 1)[0]}:***"
        else:
            hide_next = bool(_CREDS_FLAG.match(arg))
        out.append(arg)
    return out


def _run(
    args: Sequence[str],
    *,
    input: bytes | None = None,
    env: dict[str, str] | None = None,
    timeout: float = TOOL_TIMEOUT,
    check: bool = True,
) -> subprocess.CompletedProcess[bytes]:
    try:
        result = subprocess.run(
            list(args), input=input, capture_output=True, env=env, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        raise ToolError(f"timed out after {timeout}s: {' '.join(redact_args(args))}") from None
    if check and result.returncode != 0:
        raise ToolError(
            f"exit {result.returncode}: {' '.join(redact_args(args))}\n"
            f"stdout: {result.stdout.decode(errors='replace')}\n"
            f"stderr: {result.stderr.decode(errors='replace')}"
        )
    return result


_skopeo_home: Path | None = None


def _skopeo_env() -> dict[str, str]:
    """An environment whose registries.conf, policy and auth file are private to this test run."""
    global _skopeo_home
    if _skopeo_home is None:
        _skopeo_home = Path(tempfile.mkdtemp(prefix="mirrord-skopeo-"))
        atexit.register(shutil.rmtree, _skopeo_home, ignore_errors=True)
        (_skopeo_home / "registries.conf").write_text("unqualified-search-registries = []\n")
        (_skopeo_home / "policy.json").write_text('{"default": [{"type": "insecureAcceptAnything"}]}\n')
        (_skopeo_home / "auth.json").write_text('{"auths": {}}\n')
        (_skopeo_home / "registries.d").mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REGISTRY_AUTH", "CONTAINERS_"))}
    env["REGISTRY_AUTH_FILE"] = str(_skopeo_home / "auth.json")
    env["CONTAINERS_REGISTRIES_CONF"] = str(_skopeo_home / "registries.conf")
    env["DOCKER_CONFIG"] = str(_skopeo_home)
    env["TMPDIR"] = str(_skopeo_home)
    return env


def skopeo(
    *args: str, check: bool = True, timeout: float = TOOL_TIMEOUT
) -> subprocess.CompletedProcess[bytes]:
    """Run ``skopeo --insecure-policy ... ARGS`` in an isolated configuration; ToolError if it fails."""
    exe = require_tool("skopeo")
    env = _skopeo_env()
    home = Path(env["DOCKER_CONFIG"])
    base = [
        exe,
        "--insecure-policy",
        "--policy",
        str(home / "policy.json"),
        "--registries-conf",
        str(home / "registries.conf"),
        "--registries.d",
        str(home / "registries.d"),
        "--command-timeout",
        f"{int(timeout)}s",
    ]
    return _run([*base, *args], env=env, timeout=timeout + 10, check=check)


def skopeo_inspect_raw(server: RegistryServer, ref: str) -> bytes:
    """The raw manifest bytes skopeo reads for ``ref`` (``repo:tag``, ``repo@digest`` or a full ref)."""
    full = ref if ref.startswith(server.host + "/") else server.ref(ref)
    return skopeo("inspect", "--raw", *server.skopeo_flags(""), f"docker://{full}").stdout


def skopeo_copy(src: str, dst: str, *flags: str) -> subprocess.CompletedProcess[bytes]:
    """``skopeo copy FLAGS SRC DST`` with transports spelled out (``docker://``, ``oci:DIR:TAG``)."""
    return skopeo("copy", *flags, src, dst)


def oci_image_tool_validate(layout_dir: Path | str, ref: str) -> subprocess.CompletedProcess[bytes]:
    """Validate the OCI image ``ref`` (its ``org.opencontainers.image.ref.name``) in a layout dir."""
    exe = require_tool("oci-image-tool")
    return _run([exe, "validate", "--type", "image", "--ref", f"name={ref}", str(layout_dir)])


def promtool_check_metrics(text: str) -> str:
    """Lint a Prometheus text exposition with ``promtool check metrics``; returns promtool's output.

    Raises ToolError when promtool rejects the exposition (non-zero exit).
    """
    exe = require_tool("promtool")
    result = _run([exe, "check", "metrics"], input=text.encode())
    return (result.stdout + result.stderr).decode(errors="replace")


def write_sample_layout(image: SampleImage, layout_dir: Path, tag: str = "latest") -> Path:
    """Write ``image`` as an OCI image layout (``oci:DIR:TAG`` for skopeo); returns ``layout_dir``.

    Blobs and every manifest go under ``blobs/sha256``; ``index.json`` names the root with ``tag``
    (``org.opencontainers.image.ref.name``). Other tags already in the layout are kept.
    """
    blobs = layout_dir / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    (layout_dir / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    for digest, data in image.blobs.items():
        (blobs / digest.encoded).write_bytes(data)
    for manifest in image.manifests:
        (blobs / manifest.digest.encoded).write_bytes(manifest.raw)
    index_file = layout_dir / "index.json"
    index: dict[str, Any] = {"schemaVersion": 2, "manifests": []}
    if index_file.exists():
        index = json.loads(index_file.read_text())
    entries = [m for m in index["manifests"] if m.get("annotations", {}).get(REF_NAME) != tag]
    root = image.root
    entries.append(
        {"mediaType": root.media_type, "digest": str(root.digest), "size": root.size,
         "annotations": {REF_NAME: tag}}
    )  # fmt: skip
    index["manifests"] = entries
    index_file.write_text(json.dumps(index))
    return layout_dir
