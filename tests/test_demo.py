"""`make demo`: free ports, only the demo's own dependencies, and a run that ends in identical copies."""

from __future__ import annotations

import importlib.util
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from mirrord.plan import parse_plan
from tests.e2e.helpers import cli_env

ROOT = Path(__file__).resolve().parent.parent


def _demo() -> ModuleType:
    spec = importlib.util.spec_from_file_location("demo_script", ROOT / "scripts" / "demo.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_demo_plan_takes_the_ports_it_was_given(tmp_path: Path) -> None:
    demo = _demo()
    text = demo.demo_plan(
        (ROOT / "config" / "demo.yaml").read_text(), "127.0.0.1:40001", "127.0.0.1:40002", tmp_path
    )
    for old in ("127.0.0.1:5901", "127.0.0.1_5901", "127.0.0.1:5902", "oci:.demo"):
        assert old not in text
    plan = parse_plan(text, "demo.yaml")
    assert plan.entry("app").targets[0].ref == "127.0.0.1:40002/mirror/127.0.0.1_40001/demo/app"
    assert plan.entry("app-arm64").targets[1].ref == f"oci:{tmp_path}/layout"
    assert set(plan.registries) == {"127.0.0.1:40001", "127.0.0.1:40002"}


def test_free_port_is_bindable() -> None:
    port = _demo().free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_make_demo_installs_only_what_the_demo_needs(tmp_path: Path) -> None:
    make = shutil.which("make")
    if make is None:
        pytest.skip("make is not installed")
    dry = subprocess.run(
        [make, "-n", "demo", f"VENV={tmp_path}/venv"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    assert "scripts/install-deps.sh --demo" in dry
    assert f"{tmp_path}/venv/bin/pip install --quiet -e .\n" in dry
    assert "[test]" not in dry


@pytest.mark.integration
@pytest.mark.tools("docker-registry", "skopeo")
def test_install_deps_demo_names_only_the_demo_tools() -> None:
    out = subprocess.run(
        ["bash", "scripts/install-deps.sh", "--demo"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    tools = [line.split()[1] for line in out.splitlines() if line.endswith(")")]
    assert tools == ["docker-registry", "skopeo"]


@pytest.mark.integration
@pytest.mark.tools("docker-registry", "skopeo")
def test_the_demo_runs_on_free_ports(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "scripts/demo.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=cli_env({"MIRRORD_DEMO_DIR": str(tmp_path)}),
        timeout=240,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count(" identical to ") == 2, proc.stdout
    assert "4 copied" in proc.stdout
    assert "4 unchanged" in proc.stdout
    plan = (tmp_path / "demo.yaml").read_text()
    assert "127.0.0.1:5901" not in plan
    assert (tmp_path / "layout" / "index.json").is_file()
