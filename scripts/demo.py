"""`make demo`: mirror sample images between two throwaway local registries with `mirrord sync`.

Starts Debian's docker-registry on 127.0.0.1:5901 (source) and :5902 (target), seeds the source with
multi-platform images built by mirrord's own code (mirrord.testing.sample), runs `mirrord sync -c
config/demo.yaml` twice (the second pass finds everything unchanged), checks the copies with skopeo,
and stops the registries.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from mirrord.registry.hub import Registries
from mirrord.testing.sample import push_sample, sample_image

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / ".demo"
PLAN = ROOT / "config" / "demo.yaml"
SOURCE, TARGET = "127.0.0.1:5901", "127.0.0.1:5902"
MIRRORD = [sys.executable, "-m", "mirrord"]


def _port_free(host_port: str) -> bool:
    host, port = host_port.split(":")
    with socket.socket() as sock:
        return sock.connect_ex((host, int(port))) != 0


@contextlib.contextmanager
def registry(host_port: str) -> Iterator[None]:
    """A throwaway docker-registry with storage under .demo/, stopped on exit."""
    if not _port_free(host_port):
        sys.exit(f"demo: {host_port} is in use; stop whatever listens there and run `make demo` again")
    data = WORK / host_port.replace(":", "_")
    shutil.rmtree(data, ignore_errors=True)
    data.mkdir(parents=True)
    config = data / "config.yml"
    config.write_text(
        "version: 0.1\nlog: {level: warn}\n"
        f"storage: {{filesystem: {{rootdirectory: {data / 'storage'}}}, delete: {{enabled: true}}}}\n"
        f"http: {{addr: {host_port}}}\n"
    )
    with open(data / "registry.log", "wb") as registry_log:
        proc = subprocess.Popen(
            ["docker-registry", "serve", str(config)], stdout=subprocess.DEVNULL, stderr=registry_log
        )
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                urllib.request.urlopen(f"http://{host_port}/v2/", timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    sys.exit(f"demo: docker-registry on {host_port} did not start (see {data}/registry.log)")
                time.sleep(0.1)
        yield
    finally:
        proc.terminate()
        proc.wait(10)


async def seed() -> None:
    """Push the sample images to the source registry."""
    async with Registries() as registries:
        for tag, seed_no, kind in [
            ("1.0.0", 1, "docker-list"),
            ("1.1.0", 2, "oci-index"),
            ("2.0.0-rc.1", 3, "attested-index"),
        ]:
            repo, _ = registries.open(f"{SOURCE}/demo/app")
            await push_sample(repo, sample_image("app", kind=kind, seed=seed_no, base_seed=0), tag)
        repo, _ = registries.open(f"{SOURCE}/demo/tools")
        await push_sample(repo, sample_image("tools", kind="oci-index", seed=9, base_seed=0), "stable")
    print(f"seeded {SOURCE}: demo/app:1.0.0, 1.1.0, 2.0.0-rc.1 (multi-platform), demo/tools:stable")


def run(*args: str) -> int:
    print("$ mirrord " + " ".join(args), flush=True)
    return subprocess.call([*MIRRORD, *args], cwd=ROOT)


def verify() -> None:
    """Digests at the mirror equal the source's, as skopeo (not mirrord) reads them."""
    if shutil.which("skopeo") is None:
        print("skopeo not installed: skipping the independent check")
        return
    pairs = [
        (f"{SOURCE}/demo/app:1.0.0", f"{TARGET}/mirror/127.0.0.1_5901/demo/app:1.0.0"),
        (f"{SOURCE}/demo/tools:stable", f"{TARGET}/hub/demo/tools:stable"),
    ]
    for src, dst in pairs:
        digests = [
            subprocess.run(
                ["skopeo", "inspect", "--tls-verify=false", "--format", "{{.Digest}}", f"docker://{ref}"],
                capture_output=True,
                text=True,
                check=False,
            ).stdout.strip()
            or "?"
            for ref in (src, dst)
        ]
        same = "identical" if digests[0] == digests[1] and digests[0] != "?" else "DIFFERENT"
        print(f"skopeo: {dst} {same} to {src} (list digest {digests[0]})")


def main() -> int:
    shutil.rmtree(WORK / "layout", ignore_errors=True)
    with registry(SOURCE), registry(TARGET):
        asyncio.run(seed())
        first = run(
            "--log-format",
            "text",
            "sync",
            "-c",
            str(PLAN),
            "--no-progress",
            "--report",
            str(WORK / "report.json"),
        )
        second = run("--log-format", "text", "sync", "-c", str(PLAN), "--no-progress")
        verify()
    print(f"report: {WORK / 'report.json'}; OCI layout: {WORK / 'layout'}")
    return first or second


if __name__ == "__main__":
    sys.exit(main())
