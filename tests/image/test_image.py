"""mirrord's container image, built by ``scripts/image.py`` and run by podman: the CLI answers, and the
daemon mirrors between two loopback registries on a read-only root with a tmpfs /tmp and the state
volume, answers /healthz, passes the image's HEALTHCHECK and stops cleanly on ``podman stop``.

The container shares the host's network (the registries listen on 127.0.0.1 only). The daemon therefore
listens on a free port rather than the image's 9402, and the HEALTHCHECK runs as the image declares it
with only that port substituted, through ``podman healthcheck run`` (podman's periodic health timers need
systemd, which this sandbox lacks; the on-demand run does not).
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import mirrord
from tests.conftest import RegistryFactory
from tests.e2e.helpers import images, seed, write_plan
from tests.image.kit import Containers
from tests.testbed.tools import skopeo

pytestmark = [pytest.mark.image, pytest.mark.integration, pytest.mark.timeout(1800)]

#: The UID the Dockerfile runs mirrord as (owner of the state volume).
MIRRORD_UID = 10001
#: Seconds the daemon gets for startup, a pass, and shutdown (generous: two shared cores).
DEADLINE = 180.0
#: podman stop's grace period before SIGKILL; a clean stop is exit code 0, a kill is 137.
STOP_GRACE = 60


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _poll(predicate: Callable[[], bool], what: str, on_timeout: Callable[[], str]) -> None:
    deadline = time.monotonic() + DEADLINE
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}\n{on_timeout()}")
        time.sleep(0.2)


def _http_status(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        exc.close()
        return exc.code
    except OSError:
        return None


def test_mirrord_version_runs_in_the_image(containers: Containers, mirrord_image: dict[str, Any]) -> None:
    tag = mirrord_image["tag"]
    out = containers.podman(
        "run", "--rm", "--read-only", "--network", "none", "--entrypoint", "mirrord", tag, "version"
    )
    assert out.strip() == f"mirrord {mirrord.__version__}"
    config = containers.inspect_image(tag)
    assert config["Config"]["User"] == f"{MIRRORD_UID}:{MIRRORD_UID}"
    assert config["Config"]["Entrypoint"] == ["mirrord", "run"]
    labels = config["Config"]["Labels"]
    assert labels["org.opencontainers.image.version"] == mirrord.__version__
    assert labels["org.opencontainers.image.base.name"] == mirrord_image["base"]


def _health_cmd(config: dict[str, Any], port: int) -> str:
    """The image's HEALTHCHECK command (JSON, without the CMD marker) aimed at ``port`` instead of 9402."""
    test = config["Healthcheck"]["Test"]
    assert test[0] == "CMD"
    body = json.dumps(test[1:])
    assert body.count("127.0.0.1:9402/healthz") == 1, body
    return body.replace("127.0.0.1:9402/", f"127.0.0.1:{port}/")


@pytest.fixture
def daemon_name(containers: Containers) -> Iterator[str]:
    """A unique container name; the container is removed (forced) after the test."""
    name = f"mirrord-daemon-{secrets.token_hex(4)}"
    yield name
    containers.podman("rm", "--force", name, check=False)


def test_daemon_in_the_image_mirrors_and_stops_cleanly(
    containers: Containers,
    mirrord_image: dict[str, Any],
    registry_factory: RegistryFactory,
    tmp_path: Path,
    daemon_name: str,
) -> None:
    source, target = registry_factory("plain"), registry_factory("plain")
    asyncio.run(seed(source.host, "t/app", images("1.0")))
    plan = write_plan(
        tmp_path / "mirrord.yaml",
        f"""
        version: 1
        registries:
          {source.host}: {{tls: false}}
          {target.host}: {{tls: false}}
        sync:
          - name: app
            source: {source.host}/t/app
            target: {target.host}/t/app
            tags: ['1.0']
            interval: 1h
        """,
    )
    plan.chmod(0o644)
    state = tmp_path / "state"
    state.mkdir()
    os.chown(state, MIRRORD_UID, MIRRORD_UID)
    port = _free_port()
    tag = mirrord_image["tag"]
    containers.podman(
        "run", "--detach", "--name", daemon_name, "--read-only", "--tmpfs", "/tmp", "--network", "host",
        "--volume", f"{state}:/var/lib/mirrord", "--volume", f"{plan}:/etc/mirrord/mirrord.yaml:ro",
        "--health-cmd", _health_cmd(containers.inspect_image(tag), port),
        tag, "--listen", f"127.0.0.1:{port}",
    )  # fmt: skip

    def logs() -> str:
        return containers.podman("logs", daemon_name, check=False)[-4000:]

    def running() -> bool:
        return containers.podman("inspect", "--format", "{{.State.Running}}", daemon_name).strip() == "true"

    def healthy() -> bool:
        assert running(), f"the daemon exited:\n{logs()}"
        return _http_status(f"http://127.0.0.1:{port}/healthz") == 200

    _poll(healthy, "/healthz", logs)
    source_raw = skopeo(
        "inspect", "--raw", *source.skopeo_flags(""), f"docker://{source.ref('t/app:1.0')}"
    ).stdout

    def mirrored() -> bool:
        ran = skopeo(
            "inspect", "--raw", *target.skopeo_flags(""), f"docker://{target.ref('t/app:1.0')}", check=False
        )
        return ran.returncode == 0

    _poll(mirrored, "the image at the target", logs)
    target_raw = skopeo(
        "inspect", "--raw", *target.skopeo_flags(""), f"docker://{target.ref('t/app:1.0')}"
    ).stdout
    assert target_raw == source_raw
    # Every blob and manifest arrived intact: skopeo copies the mirrored image with digest verification.
    skopeo(
        "copy",
        "--all",
        *target.skopeo_flags("src"),
        f"docker://{target.ref('t/app:1.0')}",
        f"dir:{tmp_path / 'copy'}",
    )

    # The state volume is where the daemon keeps blob locations; a failed save is only a warning, so look.
    locations = state / "locations.json"
    _poll(locations.is_file, "locations.json in the state volume", logs)
    assert locations.stat().st_uid == MIRRORD_UID

    info = json.loads(containers.podman("inspect", daemon_name))[0]
    assert info["HostConfig"]["ReadonlyRootfs"] is True
    health = containers.run("podman", "healthcheck", "run", daemon_name, check=False)
    assert health.returncode == 0, f"{health.stdout}{health.stderr}\n{logs()}"

    stop = containers.run("podman", "stop", "--time", str(STOP_GRACE), daemon_name, check=False)
    assert stop.returncode == 0, stop.stderr
    exit_code = containers.podman("inspect", "--format", "{{.State.ExitCode}}", daemon_name).strip()
    assert exit_code == "0", f"exit code {exit_code} (137: killed after the grace period)\n{logs()}"
    assert "SIGKILL" not in stop.stderr


def test_the_healthcheck_passes_as_the_image_declares_it(
    containers: Containers, mirrord_image: dict[str, Any], tmp_path: Path, daemon_name: str
) -> None:
    # In a network namespace of its own (loopback only) the daemon listens on the image's default
    # 0.0.0.0:9402 without taking a host port, so the HEALTHCHECK runs exactly as declared. The plan's
    # one source cannot be reached from there; the daemon still serves /healthz.
    plan = write_plan(
        tmp_path / "mirrord.yaml",
        """
        version: 1
        registries:
          127.0.0.1:9: {tls: false}
        sync:
          - name: unreachable
            source: 127.0.0.1:9/t/app
            target: 127.0.0.1:9/t/copy
            tags: ['1.0']
            interval: 1h
        """,
    )
    plan.chmod(0o644)
    tag = mirrord_image["tag"]
    containers.podman(
        "run", "--detach", "--name", daemon_name, "--read-only", "--tmpfs", "/tmp", "--network", "none",
        "--volume", f"{plan}:/etc/mirrord/mirrord.yaml:ro", tag,
    )  # fmt: skip

    def logs() -> str:
        return containers.podman("logs", daemon_name, check=False)[-4000:]

    def healthy() -> bool:
        state = containers.podman("inspect", "--format", "{{.State.Running}}", daemon_name).strip()
        assert state == "true", f"the daemon exited:\n{logs()}"
        return containers.run("podman", "healthcheck", "run", daemon_name, check=False).returncode == 0

    _poll(healthy, "the image's HEALTHCHECK to pass", logs)
    info = json.loads(containers.podman("inspect", daemon_name))[0]
    declared = containers.inspect_image(tag)["Healthcheck"]["Test"]
    assert info["Config"]["Healthcheck"]["Test"] == declared
    assert "127.0.0.1:9402/healthz" in " ".join(declared)
    stop = containers.run("podman", "stop", "--time", str(STOP_GRACE), daemon_name, check=False)
    assert stop.returncode == 0, stop.stderr
    assert containers.podman("inspect", "--format", "{{.State.ExitCode}}", daemon_name).strip() == "0", logs()
