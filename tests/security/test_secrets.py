"""No secret in any output: a run with credentials (Basic and token registries, a wrong password,
a trigger token) with verbose and debug logging; every output is searched for every secret and for
any bearer token (a JWT) the token server issued."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from mirrord.oci import Reference
from mirrord.registry.hub import Registries
from mirrord.testing.sample import push_sample
from tests.conftest import RegistryFactory
from tests.e2e.helpers import cli_env, run_cli, write_plan
from tests.reliability.kit import corpus
from tests.testbed.registry import RegistryServer

pytestmark = pytest.mark.integration

JWT = re.compile(r"eyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{10,}")
WRONG = "wrong-Secret-7f3a9c"
TRIGGER = "trigger-Secret-51c0de"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def _seed_with_credentials(server: RegistryServer, repo: str) -> None:
    async with Registries({server.host: server.settings()}) as registries:
        repository = registries.repository(Reference.parse(f"{server.host}/{repo}", default_tag=None))
        for tag, image in corpus(1, prefix="c", layer_size=2048).items():
            await push_sample(repository, image, tag)


def _plan(
    tmp: Path, basic: RegistryServer, token: RegistryServer, wrong: RegistryServer, target: str, repo: str
) -> Path:
    (tmp / "token-password").write_text(f"{token.password}\n")
    (tmp / "trigger").write_text(TRIGGER)
    return write_plan(
        tmp / "plan.yaml",
        f"""
        version: 1
        registries:
          {basic.host}:
            tls: false
            auth: {{username: {basic.username}, password: {basic.password}}}
          {token.host}:
            tls: false
            auth: {{username: {token.username}, password_file: {tmp / "token-password"}}}
          {wrong.host}:
            tls: false
            auth: {{username: {wrong.username}, password_env: MIRRORD_TEST_WRONG}}
          {target}:
            tls: false
        server:
          trigger_token_file: {tmp / "trigger"}
        sync:
          - name: basic
            source: {basic.host}/{repo}
            target: {target}/{repo}-basic
            tags: [c1, missing]
          - name: token
            source: {token.host}/{repo}
            target: {target}/{repo}-token
            tags: [c1, missing]
          - name: wrong
            source: {wrong.host}/{repo}
            target: {target}/{repo}-wrong
            tags: [c1]
        """,
    )


def _secrets(basic: RegistryServer, token: RegistryServer) -> list[str]:
    found = [WRONG, TRIGGER]
    for server in (basic, token):
        assert server.password
        found += [server.password, base64.b64encode(f"{server.username}:{server.password}".encode()).decode()]
    return found


async def _daemon_outputs(plan: Path, tmp: Path, port: int) -> dict[str, str]:
    log = tmp / "daemon.log"
    env = cli_env({"MIRRORD_TEST_WRONG": WRONG})
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "mirrord", "--log-format", "json", "-v", "run", "-c", str(plan),
            "--listen", f"127.0.0.1:{port}", "--state-dir", str(tmp / "state-run"),
            stdout=out, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
    outputs: dict[str, str] = {}
    try:
        base = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession() as session:
            deadline = time.monotonic() + 60
            while True:
                with contextlib.suppress(aiohttp.ClientError, OSError):
                    async with session.get(base + "/status") as resp:
                        outputs["/status"] = await resp.text()
                    entries = json.loads(outputs["/status"])["entries"].values()
                    if all(e["last_end"] is not None for e in entries):
                        break
                assert time.monotonic() < deadline, log.read_text()
                await asyncio.sleep(0.2)
            async with session.get(base + "/metrics") as resp:
                outputs["/metrics"] = await resp.text()
            async with session.post(base + "/sync", headers={"Authorization": "Bearer nope"}) as resp:
                assert resp.status == 401
                outputs["POST /sync refused"] = await resp.text()
            async with session.post(base + "/sync", headers={"Authorization": f"Bearer {TRIGGER}"}) as resp:
                assert resp.status == 202
                outputs["POST /sync"] = await resp.text()
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 30)
    outputs["daemon log"] = log.read_text()
    return outputs


async def test_no_secret_in_any_output(
    registry_factory: RegistryFactory, plain_registry: RegistryServer, unique_repo: str, tmp_path: Path
) -> None:
    basic, token, wrong = registry_factory("basic"), registry_factory("token"), registry_factory("basic")
    for server in (basic, token):
        await _seed_with_credentials(server, unique_repo)
    plan = _plan(tmp_path, basic, token, wrong, plain_registry.host, unique_repo)
    env = {"MIRRORD_TEST_WRONG": WRONG}
    outputs: dict[str, str] = {}

    check = await run_cli("check", "-c", str(plan), env=env)
    assert check.code == 0, check.output
    outputs["check"] = check.output
    report = tmp_path / "report.json"
    sync = await run_cli("-v", "sync", "-c", str(plan), "--report", str(report), env=env)
    assert sync.code == 1, sync.output  # the missing tags and the wrong password fail; the rest copies
    outputs["sync"], outputs["report"] = sync.output, report.read_text()
    outputs |= await _daemon_outputs(plan, tmp_path, _free_port())

    # The run did what it should: content copied with both kinds of credentials, the wrong one refused.
    results = {(i["entry"], i["result"]) for i in json.loads(outputs["report"])["images"]}
    assert {("basic", "copied"), ("token", "copied"), ("wrong", "failed")} <= results, results
    assert token.token_requests > 0
    assert '"level":"debug"' in outputs["daemon log"]  # debug logging was on
    print({name: len(text) for name, text in outputs.items()})
    for name, text in outputs.items():
        for secret in _secrets(basic, token):
            assert secret not in text, f"a secret appears in {name}"
        assert JWT.search(text) is None, f"a bearer token appears in {name}"
