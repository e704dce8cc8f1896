#!/usr/bin/env python3
"""Build mirrord's container image from the repository's Dockerfile (``make image``).

The engine is docker when a docker daemon answers, else buildah (rootful, ``--isolation chroot``: RUN
steps need no OCI runtime or namespaces, so it works inside sandboxes and plain CI containers; on
buildah's default storage unless ``--root``/``--runroot``/``--storage-driver`` say otherwise, so
``podman run localhost/mirrord`` finds the result). The Dockerfile is used unchanged; its base comes in
as the ``PYTHON_IMAGE`` build argument:

1. ``--base IMAGE`` (or ``MIRRORD_PYTHON_IMAGE``) when given;
2. else the public ``python:3.11-slim-bookworm`` when it can be pulled;
3. else a locally made Debian base: ``debootstrap --variant=minbase`` of bookworm with python3,
   python3-venv and python-is-python3 from the machine's configured Debian mirror, kept as a root-file-
   system tarball in a cache directory outside the repository (``MIRRORD_IMAGE_CACHE``, default
   ``$XDG_CACHE_HOME/mirrord/image`` or ``~/.cache/mirrord/image``) under a key that hashes the whole
   recipe, so a changed recipe or mirror makes a new base and an unchanged one is made once (~90 s).
   The tarball is imported as ``localhost/mirrord-base:KEY`` into the engine's storage for each build.

The build bind-mounts the host's CA bundle read-only into RUN steps (``pip install`` must trust a TLS-
re-signing proxy where there is one) and builds in Docker format (OCI format drops ``HEALTHCHECK``).

Usage::

    python3 scripts/image.py build [--tag mirrord:latest] [--root DIR --runroot DIR] [--json FILE]
    python3 scripts/image.py base            # only make (or find) the cached local base; print its path

Only the standard library is used, so the script runs with the system python3 before any venv exists.
Exit status: 0 built, 1 a step failed (its command and output are printed), 2 usage.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: The Dockerfile's default base, spelled in full: buildah may not search docker.io for short names.
PUBLIC_BASE = "docker.io/library/python:3.11-slim-bookworm"
#: Seconds a pull of the public base may take before the local base is used instead.
PULL_TIMEOUT = 300.0
DEFAULT_TAG = "localhost/mirrord:latest"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"

#: The local base's recipe. Every field goes into the cache key; bump ``revision`` when the steps change.
BASE_RECIPE: dict[str, object] = {
    "revision": 1,
    "tool": "debootstrap",
    "variant": "minbase",
    "suite": "bookworm",
    "arch": "amd64",
    "include": ["python3", "python3-venv", "python-is-python3"],
    "cleanup": ["var/cache/apt/archives/*.deb", "var/lib/apt/lists/*", "var/log/*"],
}


class StepError(RuntimeError):
    """A command failed; the message holds the command and the tail of its output."""


@dataclass
class Timings:
    """Seconds per step, in the order the steps ran (printed at the end and written by ``--json``)."""

    steps: dict[str, float] = field(default_factory=dict)

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[None]:
        """Time the block as step ``name`` and log its start and duration."""
        log(f"{name} ...")
        start = time.monotonic()
        try:
            yield
        finally:
            self.steps[name] = round(time.monotonic() - start, 1)
            log(f"{name}: {self.steps[name]} s")


def log(message: str) -> None:
    """One progress line on stderr."""
    print(f"image: {message}", file=sys.stderr, flush=True)


def run(
    args: Sequence[str],
    *,
    quiet: bool = False,
    env: dict[str, str] | None = None,
    timeout: float | None = None,
) -> str:
    """Run a command; StepError on failure. ``quiet``: return its stdout as text (stderr only goes into
    the error); otherwise both stream to our stderr and ``""`` is returned."""
    if not quiet:
        log("$ " + " ".join(args))
    try:
        proc = subprocess.run(
            list(args),
            stdout=subprocess.PIPE if quiet else sys.stderr,
            stderr=subprocess.PIPE if quiet else None,
            env=env,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise StepError(f"timed out after {timeout} s: {' '.join(args)}") from None
    if proc.returncode != 0:
        err = (proc.stderr or b"").decode(errors="replace")[-3000:]
        raise StepError(f"exit {proc.returncode}: {' '.join(args)}\n{err}")
    return (proc.stdout or b"").decode(errors="replace")


# --- the Debian mirror and the cache -------------------------------------------------------------------


def debian_mirror(apt_dir: Path = Path("/etc/apt")) -> str:
    """The Debian archive the machine's apt uses (``MIRRORD_DEBIAN_MIRROR`` wins), else deb.debian.org.

    Reads one-line ``deb URI SUITE ...`` entries and deb822 ``.sources`` stanzas; the first ``deb`` source
    listing suite ``bookworm`` is taken.
    """
    override = os.environ.get("MIRRORD_DEBIAN_MIRROR")
    if override:
        return override.rstrip("/")
    files = [apt_dir / "sources.list", *sorted((apt_dir / "sources.list.d").glob("*"))]
    for path in files:
        try:
            text = path.read_text()
        except OSError:
            continue
        for uri in _bookworm_uris(text):
            return uri.rstrip("/")
    return DEFAULT_MIRROR


def _bookworm_uris(text: str) -> Iterator[str]:
    for line in text.splitlines():
        words = re.sub(r"\[[^]]*\]", "", line.split("#", 1)[0]).split()
        if len(words) >= 3 and words[0] == "deb" and words[2] == "bookworm":
            yield words[1]
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            key, sep, value = line.partition(":")
            if sep and not line.startswith((" ", "#")):
                fields[key.strip().lower()] = value.strip()
        if "deb" in fields.get("types", "").split() and "bookworm" in fields.get("suites", "").split():
            yield from fields.get("uris", "").split()[:1]


def cache_dir() -> Path:
    """Where locally made bases are kept between runs (outside the repository)."""
    explicit = os.environ.get("MIRRORD_IMAGE_CACHE")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "mirrord" / "image"


def base_key(mirror: str) -> str:
    """A short hash of the base recipe and the mirror it is made from: the cache key and the image tag."""
    recipe = json.dumps({**BASE_RECIPE, "mirror": mirror}, sort_keys=True)
    return hashlib.sha256(recipe.encode()).hexdigest()[:16]


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def local_base_tarball(mirror: str, cache: Path | None = None) -> Path:
    """The cached root-file-system tarball of the local base, made with debootstrap when missing.

    Concurrent callers wait on a lock file rather than bootstrap twice; a half-made base never appears
    under the final name (written to a temporary file, then renamed).
    """
    cache = cache or cache_dir()
    key = base_key(mirror)
    tarball = cache / f"base-{key}.tar"
    with _locked(cache / f"base-{key}.lock"):
        if tarball.is_file():
            log(f"local base cached: {tarball}")
            return tarball
        for tool in ("debootstrap", "tar"):
            if shutil.which(tool) is None:
                raise StepError(f"{tool} is not installed (run scripts/install-deps.sh)")
        if os.geteuid() != 0:
            raise StepError("making the local base needs root (debootstrap); run as root or pass --base")
        with tempfile.TemporaryDirectory(prefix="rootfs-", dir=cache) as tmp:
            rootfs = Path(tmp) / "rootfs"
            include = ",".join(str(p) for p in BASE_RECIPE["include"])  # type: ignore[attr-defined]
            run(
                [
                    "debootstrap",
                    f"--variant={BASE_RECIPE['variant']}",
                    f"--arch={BASE_RECIPE['arch']}",
                    f"--include={include}",
                    str(BASE_RECIPE["suite"]),
                    str(rootfs),
                    mirror,
                ]
            )
            for pattern in BASE_RECIPE["cleanup"]:  # type: ignore[attr-defined]
                for path in rootfs.glob(str(pattern)):
                    if path.is_dir() and not path.is_symlink():
                        shutil.rmtree(path)
                    else:
                        path.unlink()
            partial = cache / f".base-{key}.tar.partial"
            run(["tar", "--numeric-owner", "-C", str(rootfs), "-cf", str(partial), "."])
            partial.rename(tarball)
    log(f"local base made: {tarball} ({tarball.stat().st_size // 2**20} MiB)")
    return tarball


# --- engines -------------------------------------------------------------------------------------------


class Engine:
    """A build engine: pull a base, import a tarball as an image, build the Dockerfile, size an image."""

    name = ""

    def pull(self, image: str) -> bool:
        """True when ``image`` could be pulled (or is already present)."""
        raise NotImplementedError

    def import_rootfs(self, tarball: Path, image: str) -> None:
        """Make ``image`` from a root-file-system tarball (one layer, ``python3`` as its command)."""
        raise NotImplementedError

    def build(self, base: str, tag: str, build_args: dict[str, str]) -> None:
        """Build the Dockerfile with ``PYTHON_IMAGE=base`` as ``tag``."""
        raise NotImplementedError

    def size(self, image: str) -> int:
        """The image's unpacked size in bytes."""
        raise NotImplementedError


class Buildah(Engine):
    """buildah with chroot isolation, on its default storage or the one given (root, run root, driver)."""

    name = "buildah"

    def __init__(self, root: str | None, runroot: str | None, driver: str | None) -> None:
        self.global_args = ["--storage-driver", driver] if driver else []
        if root:
            self.global_args += ["--root", root]
        if runroot:
            self.global_args += ["--runroot", runroot]

    def _cmd(self, *args: str) -> list[str]:
        return ["buildah", *self.global_args, *args]

    def pull(self, image: str) -> bool:
        try:
            run(self._cmd("pull", "--quiet", image), quiet=True, timeout=PULL_TIMEOUT)
        except StepError as exc:
            log(f"cannot pull {image}: {str(exc).strip().splitlines()[-1]}")
            return False
        return True

    def import_rootfs(self, tarball: Path, image: str) -> None:
        container = run(self._cmd("from", "scratch"), quiet=True).strip()
        try:
            run(self._cmd("add", container, str(tarball), "/"), quiet=True)
            run(self._cmd("config", "--cmd", "python3", "--env", "LANG=C.UTF-8", container), quiet=True)
            run(self._cmd("commit", "--quiet", "--rm", container, image), quiet=True)
        except StepError:
            run(self._cmd("rm", container), quiet=True)
            raise

    def build(self, base: str, tag: str, build_args: dict[str, str]) -> None:
        args = ["bud", "--isolation", "chroot", "--format", "docker", "--pull=false", "-f", "Dockerfile"]
        args += ["--build-arg", f"PYTHON_IMAGE={base}", "-t", tag]
        for key, value in build_args.items():
            args += ["--build-arg", f"{key}={value}"]
        if Path(CA_BUNDLE).is_file():
            args += ["-v", f"{CA_BUNDLE}:{CA_BUNDLE}:ro"]
        run(self._cmd(*args, str(ROOT)))

    def size(self, image: str) -> int:
        # buildah prints sizes for humans only ("255 MB"); podman, on the same storage, prints bytes.
        if shutil.which("podman") is not None:
            out = run(
                ["podman", *self.global_args, "image", "inspect", "--format", "{{.Size}}", image], quiet=True
            )
            return int(out.strip())
        listed = json.loads(run(self._cmd("images", "--json", image), quiet=True) or "[]")
        number, _, unit = str(listed[0]["size"]).partition(" ") if listed else ("0", "", "B")
        return int(float(number) * {"B": 1, "kB": 1e3, "MB": 1e6, "GB": 1e9}.get(unit, 1))


class Docker(Engine):
    """A running docker daemon."""

    name = "docker"

    def pull(self, image: str) -> bool:
        try:
            run(["docker", "pull", "--quiet", image], quiet=True, timeout=PULL_TIMEOUT)
        except StepError:
            return False
        return True

    def import_rootfs(self, tarball: Path, image: str) -> None:
        run(["docker", "import", "--change", "CMD python3", str(tarball), image], quiet=True)

    def build(self, base: str, tag: str, build_args: dict[str, str]) -> None:
        # docker's RUN steps see the daemon's network and trust store; no CA bind mount exists (or is needed).
        args = ["docker", "build", "--build-arg", f"PYTHON_IMAGE={base}", "-t", tag]
        for key, value in build_args.items():
            args += ["--build-arg", f"{key}={value}"]
        run([*args, str(ROOT)])

    def size(self, image: str) -> int:
        return int(run(["docker", "image", "inspect", "--format", "{{.Size}}", image], quiet=True).strip())


def docker_running() -> bool:
    """True when the docker CLI is installed and its daemon answers."""
    if shutil.which("docker") is None:
        return False
    proc = subprocess.run(["docker", "info"], capture_output=True, check=False, timeout=30)
    return proc.returncode == 0


def choose_engine(name: str, root: str | None, runroot: str | None, driver: str | None) -> Engine:
    """``docker`` / ``buildah`` as asked; ``auto``: docker when its daemon runs, else buildah."""
    if name == "docker" or (name == "auto" and docker_running()):
        return Docker()
    if shutil.which("buildah") is None:
        raise StepError("neither a running docker nor buildah (run scripts/install-deps.sh)")
    return Buildah(root, runroot, driver)


# --- the build -----------------------------------------------------------------------------------------


def version() -> str:
    """mirrord's version from mirrord/__init__.py (no import: the venv may not exist)."""
    match = re.search(r'__version__\s*=\s*"([^"]+)"', (ROOT / "mirrord" / "__init__.py").read_text())
    return match.group(1) if match else "0.0.0"


def revision() -> str:
    """The checked-out commit, or ``unknown`` outside a git checkout."""
    proc = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, check=False)
    return proc.stdout.decode().strip() if proc.returncode == 0 else "unknown"


def resolve_base(engine: Engine, explicit: str | None, local_only: bool, timings: Timings) -> str:
    """The PYTHON_IMAGE to build on: the explicit one, else the public one if pullable, else the local one."""
    if explicit:
        return explicit
    if not local_only:
        with timings.step("pull public base"):
            pulled = engine.pull(PUBLIC_BASE)
        if pulled:
            return PUBLIC_BASE
    mirror = debian_mirror()
    with timings.step("local base (debootstrap or cache)"):
        tarball = local_base_tarball(mirror)
    image = f"localhost/mirrord-base:{base_key(mirror)}"
    with timings.step("import local base"):
        engine.import_rootfs(tarball, image)
    return image


def build(args: argparse.Namespace) -> dict[str, object]:
    """Build the image as ``args.tag``; a summary (engine, base, tag, size, step timings)."""
    timings = Timings()
    engine = choose_engine(args.engine, args.root, args.runroot, args.storage_driver)
    base = resolve_base(engine, args.base or os.environ.get("MIRRORD_PYTHON_IMAGE"), args.local_base, timings)
    with timings.step("build"):
        engine.build(base, args.tag, {"VERSION": version(), "REVISION": revision()})
    size = engine.size(args.tag)
    summary: dict[str, object] = {
        "engine": engine.name,
        "base": base,
        "tag": args.tag,
        "size_bytes": size,
        "seconds": timings.steps,
    }
    log(f"built {args.tag} with {engine.name} on {base}: {size / 2**20:.0f} MiB unpacked; {timings.steps}")
    return summary


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """The command line: ``build`` (default) or ``base``."""
    parser = argparse.ArgumentParser(prog="scripts/image.py", description=__doc__.splitlines()[0])
    parser.add_argument("command", nargs="?", default="build", choices=["build", "base"])
    parser.add_argument("--tag", default=DEFAULT_TAG, help=f"image name to build (default {DEFAULT_TAG})")
    parser.add_argument("--engine", default="auto", choices=["auto", "buildah", "docker"])
    parser.add_argument("--base", help=f"base image (PYTHON_IMAGE); default {PUBLIC_BASE} or the local base")
    parser.add_argument("--local-base", action="store_true", help="skip the public base; use the local one")
    parser.add_argument("--root", help="buildah: storage root (default: buildah's own)")
    parser.add_argument("--runroot", help="buildah: run root (default: buildah's own)")
    parser.add_argument(
        "--storage-driver", help="buildah: storage driver (default: buildah's own, or $STORAGE_DRIVER)"
    )
    parser.add_argument("--json", type=Path, help="write the build summary (timings, size) here as JSON")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; see the module docstring for the exit status."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        if args.command == "base":
            print(local_base_tarball(debian_mirror()))
            return 0
        summary = build(args)
    except StepError as exc:
        log(f"failed: {exc}")
        return 1
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
