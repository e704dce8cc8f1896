"""Shared helpers for end-to-end tests: seeding sample images, writing plans, running the CLI."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mirrord.oci import Reference
from mirrord.registry.hub import Registries
from mirrord.registry.settings import RegistrySettings, TLSSettings
from mirrord.testing.sample import SampleImage, push_sample, sample_image

PLAIN = TLSSettings(enabled=False)


@dataclass
class CliResult:
    """Exit status and output of one ``mirrord`` run."""

    code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


async def seed(host: str, repo: str, images: Mapping[str, SampleImage]) -> None:
    """Push ``images`` (tag -> image) into ``host/repo`` over plain HTTP."""
    settings = {host: RegistrySettings(host=host, tls=PLAIN)}
    async with Registries(settings) as registries:
        repository = registries.repository(Reference.parse(f"{host}/{repo}", default_tag=None))
        for tag, image in images.items():
            await push_sample(repository, image, tag)


def images(*tags: str, kind: str = "oci-index", seed_base: int = 0) -> dict[str, SampleImage]:
    """Small distinct sample images, one per tag, sharing base layers."""
    return {
        tag: sample_image(f"img-{tag}", kind=kind, seed=seed_base + i + 1, base_seed=0)
        for i, tag in enumerate(tags)
    }


def write_plan(path: Path, body: str) -> Path:
    """Write a plan (dedented) and return its path."""
    path.write_text(textwrap.dedent(body).lstrip())
    return path


def cli_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("MIRRORD_CONFIG", None)
    env.update(extra or {})
    return env


async def run_cli(*args: str, env: Mapping[str, str] | None = None, timeout: float = 120) -> CliResult:
    """Run ``python -m mirrord ARGS`` without blocking the event loop (test proxies keep serving)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "mirrord",
        "--log-format",
        "json",
        *args,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=cli_env(env),
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode is not None
    return CliResult(proc.returncode, out.decode(), err.decode())


def read_report(path: Path) -> list[dict[str, Any]]:
    images: list[dict[str, Any]] = json.loads(path.read_text())["images"]
    return images


async def tags_at(host: str, repo: str) -> list[str]:
    settings = {host: RegistrySettings(host=host, tls=PLAIN)}
    async with Registries(settings) as registries:
        return sorted(
            await registries.repository(Reference.parse(f"{host}/{repo}", default_tag=None)).tags_list()
        )


async def digest_at(host: str, repo: str, tag: str) -> str | None:
    settings = {host: RegistrySettings(host=host, tls=PLAIN)}
    async with Registries(settings) as registries:
        desc = await registries.repository(Reference.parse(f"{host}/{repo}", default_tag=None)).manifest_head(
            tag
        )
    return None if desc is None else str(desc.digest)


def registries_yaml(hosts: Sequence[str]) -> str:
    """A `registries:` section marking every host plain HTTP."""
    lines = ["registries:"]
    for host in hosts:
        lines += [f"  {host}:", "    tls: false"]
    return "\n".join(lines) + "\n"


def entry_plan(
    path: Path, source: str, target: str, repo: str, tags: str, *, name: str, extra: str = ""
) -> Path:
    """A plan with one entry ``name`` copying ``source/repo`` to ``target/repo`` (both plain HTTP);
    ``extra`` is appended as further entry lines (indented four spaces)."""
    return write_plan(
        path,
        f"""
version: 1
{registries_yaml([source, target])}
sync:
  - name: {name}
    source: {source}/{repo}
    target: {target}/{repo}
    tags: {tags}
{extra}""",
    )
