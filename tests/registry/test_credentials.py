"""Credential resolution: inline, files, environment, docker config auths and credential helpers."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import pytest

from mirrord.registry.errors import AuthError
from mirrord.registry.http.credentials import (
    Credentials,
    default_docker_config,
    normalize_host,
    resolve_credentials,
)
from mirrord.registry.settings import CredentialSpec


def test_repr_masks_the_secret() -> None:
    creds = Credentials("alice", "hunter2")
    assert "hunter2" not in repr(creds)
    assert "hunter2" not in str(creds)
    assert "hunter2" not in repr(CredentialSpec(username="a", password="hunter2"))


async def test_inline_password() -> None:
    spec = CredentialSpec(username="alice", password="pw")
    assert await resolve_credentials(spec, "r.example") == Credentials("alice", "pw")


async def test_password_file_strips_exactly_one_trailing_newline(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("pw \n\n")
    spec = CredentialSpec(username="alice", password_file=str(secret))
    assert await resolve_credentials(spec, "r.example") == Credentials("alice", "pw \n")
    secret.write_text("pw\r\n")
    assert await resolve_credentials(spec, "r.example") == Credentials("alice", "pw")


async def test_password_env() -> None:
    spec = CredentialSpec(username="alice", password_env="HUB_TOKEN")
    assert await resolve_credentials(spec, "docker.io", env={"HUB_TOKEN": "tok"}) == Credentials(
        "alice", "tok"
    )
    with pytest.raises(AuthError, match="HUB_TOKEN"):
        await resolve_credentials(spec, "docker.io", env={})


async def test_misconfigured_sources_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(AuthError, match="no password"):
        await resolve_credentials(CredentialSpec(username="alice"), "h")
    with pytest.raises(AuthError, match="without a username"):
        await resolve_credentials(CredentialSpec(password_env="X"), "h")
    with pytest.raises(AuthError, match="cannot read"):
        await resolve_credentials(CredentialSpec(username="a", password_file=str(tmp_path / "nope")), "h")
    with pytest.raises(AuthError, match="does not exist"):
        await resolve_credentials(CredentialSpec(docker_config=str(tmp_path / "nope.json")), "h")


@pytest.mark.parametrize(
    ("key", "host"),
    [
        ("https://index.docker.io/v1/", "docker.io"),
        ("registry-1.docker.io", "docker.io"),
        ("docker.io", "docker.io"),
        ("http://127.0.0.1:5000", "127.0.0.1:5000"),
        ("https://Quay.IO/v2/", "quay.io"),
        ("ghcr.io", "ghcr.io"),
    ],
)
def test_normalize_docker_config_keys(key: str, host: str) -> None:
    assert normalize_host(key) == host


def write_config(path: Path, config: dict[str, object]) -> str:
    path.write_text(json.dumps(config))
    return str(path)


async def test_docker_config_auths(tmp_path: Path) -> None:
    auth = base64.b64encode(b"bob:pa:ss").decode()
    config = write_config(
        tmp_path / "config.json",
        {
            "auths": {
                "https://index.docker.io/v1/": {"auth": auth},
                "r.example:5000": {"username": "carol", "password": "pw2"},
                "token.example": {"identitytoken": "refresh"},
            }
        },
    )
    spec = CredentialSpec(docker_config=config)
    assert await resolve_credentials(spec, "docker.io") == Credentials("bob", "pa:ss")
    assert await resolve_credentials(spec, "r.example:5000") == Credentials("carol", "pw2")
    # An identity token is an OAuth2 refresh token, exchanged at the realm, never sent as a password.
    assert await resolve_credentials(spec, "token.example") == Credentials(
        "<token>", "refresh", identity_token=True
    )
    assert await resolve_credentials(spec, "unknown.example") is None


async def test_default_docker_config_from_env(tmp_path: Path) -> None:
    write_config(tmp_path / "config.json", {"auths": {"h.example": {"username": "u", "password": "p"}}})
    env = {"DOCKER_CONFIG": str(tmp_path)}
    assert default_docker_config(env) == tmp_path / "config.json"
    assert default_docker_config({"HOME": "/home/x"}) == Path("/home/x/.docker/config.json")
    assert await resolve_credentials(CredentialSpec(), "h.example", env=env) == Credentials("u", "p")
    # No default config at all: anonymous.
    assert (
        await resolve_credentials(CredentialSpec(), "h.example", env={"DOCKER_CONFIG": str(tmp_path / "x")})
        is None
    )


async def test_invalid_auth_field_is_an_auth_error(tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.json", {"auths": {"h": {"auth": "!!notbase64"}}})
    with pytest.raises(AuthError, match="base64"):
        await resolve_credentials(CredentialSpec(docker_config=config), "h")


HELPER = """#!/bin/sh
read server
echo "$server" >> "{log}"
case "$server" in
  https://index.docker.io/v1/) echo '{{"ServerURL":"x","Username":"hubuser","Secret":"hubsecret"}}' ;;
  helped.example) echo '{{"Username":"helper-user","Secret":"helper-secret"}}' ;;
  garbage.example) echo 'not json' ;;
  *) echo "credentials not found in native keychain"; exit 1 ;;
esac
"""


def read_lines(path: Path) -> list[str]:
    return path.read_text().split()


@pytest.fixture
def helper_on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    log = tmp_path / "helper.log"
    script = bindir / "docker-credential-test"
    script.write_text(HELPER.format(log=log))
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}")
    return log


async def test_cred_helpers_and_creds_store(tmp_path: Path, helper_on_path: Path) -> None:
    config = write_config(
        tmp_path / "c.json",
        {
            "credHelpers": {"helped.example": "test", "garbage.example": "test", "docker.io": "test"},
            "credsStore": "test",
            "auths": {"plain.example": {"username": "u", "password": "p"}},
        },
    )
    spec = CredentialSpec(docker_config=config)
    assert await resolve_credentials(spec, "helped.example") == Credentials("helper-user", "helper-secret")
    assert await resolve_credentials(spec, "docker.io") == Credentials("hubuser", "hubsecret")
    assert await resolve_credentials(spec, "plain.example") == Credentials("u", "p")  # auths before the store
    assert await resolve_credentials(spec, "stored.example") is None  # store: "credentials not found"
    with pytest.raises(AuthError, match="not JSON") as caught:
        await resolve_credentials(spec, "garbage.example")
    assert "secret" not in str(caught.value)
    assert read_lines(helper_on_path) == [
        "helped.example",
        "https://index.docker.io/v1/",
        "stored.example",
        "garbage.example",
    ]


async def test_missing_helper_is_an_auth_error(tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.json", {"credHelpers": {"h": "does-not-exist-anywhere"}})
    with pytest.raises(AuthError, match="not on PATH"):
        await resolve_credentials(CredentialSpec(docker_config=config), "h")
