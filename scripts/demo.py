"""`make demo`: mirror sample images between two throwaway local registries with `mirrord sync`.

Starts Debian's docker-registry twice on free ports of 127.0.0.1 (source and target; a port taken
between picking and binding is picked again), writes config/demo.yaml with those ports to
.demo/demo.yaml, seeds the source with multi-platform images built by mirrord's own code
(mirrord.testing.sample), runs `mirrord sync` twice (the second pass finds everything unchanged),
checks the copies with skopeo, and stops the registries. $MIRRORD_DEMO_DIR moves .demo elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
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
WORK = Path(os.environ.get("MIRRORD_DEMO_DIR") or ROOT / ".demo").resolve()
TEMPLATE = ROOT / "config" / "demo.yaml"
#: The hosts config/demo.yaml is written for; the demo replaces them with the ports it got.
TEMPLATE_SOURCE, TEMPLATE_TARGET = "127.0.0.1:5901", "127.0.0.1:5902"
MIRRORD = [sys.executable, "-m", "mirrord"]
ATTEMPTS = 3


class PortTaken(Exception):
    """The registry could not bind its port (taken since it was picked)."""


def free_port() -> int:
    """A port of 127.0.0.1 that nothing listens on now (the kernel's pick)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def prefixed(host: str) -> str:
    """How target_prefix spells a source host in a repository path (127.0.0.1:5901 -> 127.0.0.1_5901)."""
    return host.replace(":", "_")


def demo_plan(template: str, source: str, target: str, work: Path) -> str:
    """config/demo.yaml's text with the template's hosts replaced by ``source`` and ``target``, and
    its OCI layout (``oci:.demo/layout``, relative to the checkout) put under ``work``."""
    text = template.replace(prefixed(TEMPLATE_SOURCE), prefixed(source))
    text = text.replace(TEMPLATE_SOURCE, source).replace(TEMPLATE_TARGET, target)
    return text.replace("oci:.demo/layout", f"oci:{work}/layout")


@contextlib.contextmanager
def registry(host_port: str) -> Iterator[None]:
    """A throwaway docker-registry with storage under .demo/, stopped on exit; PortTaken when it
    cannot bind."""
    data = WORK / prefixed(host_port)
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
                if proc.poll() is not None and "address already in use" in _log_text(data):
                    raise PortTaken(host_port) from None
                if time.monotonic() > deadline or proc.poll() is not None:
                    sys.exit(f"demo: docker-registry on {host_port} did not start (see {data}/registry.log)")
                time.sleep(0.1)
        yield
    finally:
        proc.terminate()
        proc.wait(10)


def _log_text(data: Path) -> str:
    return (data / "registry.log").read_text(errors="replace").lower()


@contextlib.contextmanager
def registries() -> Iterator[tuple[str, str]]:
    """Source and target registries on free ports: (source host, target host)."""
    for attempt in range(1, ATTEMPTS + 1):
        source, target = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
        try:
            with registry(source), registry(target):
                yield source, target
                return
        except PortTaken as taken:
            if attempt == ATTEMPTS:
                sys.exit(f"demo: {taken} was taken by another program {ATTEMPTS} times; run it again")


async def seed(source: str) -> None:
    """Push the sample images to the source registry."""
    async with Registries() as registries:
        for tag, seed_no, kind in [
            ("1.0.0", 1, "docker-list"),
            ("1.1.0", 2, "oci-index"),
            ("2.0.0-rc.1", 3, "attested-index"),
        ]:
            repo, _ = registries.open(f"{source}/demo/app")
            await push_sample(repo, sample_image("app", kind=kind, seed=seed_no, base_seed=0), tag)
        repo, _ = registries.open(f"{source}/demo/tools")
        await push_sample(repo, sample_image("tools", kind="oci-index", seed=9, base_seed=0), "stable")
    print(f"seeded {source}: demo/app:1.0.0, 1.1.0, 2.0.0-rc.1 (multi-platform), demo/tools:stable")


def run(*args: str) -> int:
    print("$ mirrord " + " ".join(args), flush=True)
    return subprocess.call([*MIRRORD, *args], cwd=ROOT)


def verify(source: str, target: str) -> bool:
    """Digests at the mirror equal the source's, as skopeo (not mirrord) reads them."""
    if shutil.which("skopeo") is None:
        print("skopeo not installed: skipping the independent check")
        return True
    pairs = [
        (f"{source}/demo/app:1.0.0", f"{target}/mirror/{prefixed(source)}/demo/app:1.0.0"),
        (f"{source}/demo/tools:stable", f"{target}/hub/demo/tools:stable"),
    ]
    same_everywhere = True
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
        same_everywhere = same_everywhere and same == "identical"
        print(f"skopeo: {dst} {same} to {src} (list digest {digests[0]})")
    return same_everywhere


def main() -> int:
    shutil.rmtree(WORK / "layout", ignore_errors=True)
    WORK.mkdir(parents=True, exist_ok=True)
    with registries() as (source, target):
        plan = WORK / "demo.yaml"
        plan.write_text(demo_plan(TEMPLATE.read_text(), source, target, WORK))
        print(f"registries: source {source}, target {target}; plan {plan}")
        asyncio.run(seed(source))
        sync = ("--log-format", "text", "sync", "-c", str(plan), "--no-progress")
        first = run(*sync, "--report", str(WORK / "report.json"))
        second = run(*sync)
        identical = verify(source, target)
    print(f"report: {WORK / 'report.json'}; OCI layout: {WORK / 'layout'}")
    return first or second or (0 if identical else 1)


if __name__ == "__main__":
    sys.exit(main())
