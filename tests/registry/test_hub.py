"""Registries: settings lookup, docker.io's API host, `open` for registries and layouts, reloads."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mirrord.oci import Digest, Reference
from mirrord.registry.http.repository import HTTPRepository
from mirrord.registry.hub import Registries
from mirrord.registry.layout import LayoutRepository
from mirrord.registry.settings import RegistrySettings, TLSSettings

from .fakeregistry import FakeRegistry, running

LISTED = RegistrySettings(host="mirror.example.com", max_connections=4)


async def test_settings_for_listed_and_default_hosts() -> None:
    async with Registries({"mirror.example.com": LISTED}) as registries:
        assert registries.settings_for("mirror.example.com") is LISTED
        assert registries.settings_for("quay.io").tls.enabled
        assert not registries.settings_for("127.0.0.1:5000").tls.enabled


async def test_docker_hub_uses_its_api_host_but_docker_io_settings() -> None:
    hub = RegistrySettings(host="docker.io", requests_per_second=5)
    async with Registries({"docker.io": hub}) as registries:
        assert registries.client("docker.io").base_url == "https://registry-1.docker.io"
        repo = registries.repository(Reference.parse("nginx"))
        assert isinstance(repo, HTTPRepository)
        assert repo.client.base_url == "https://registry-1.docker.io"
        assert repo.client.settings is hub
        assert (repo.registry_key, repo.name, str(repo)) == (
            "docker.io",
            "library/nginx",
            "docker.io/library/nginx",
        )


async def test_one_client_per_host_shared_by_repositories() -> None:
    async with Registries() as registries:
        a = registries.repository(Reference.parse("r.example/a"))
        b = registries.repository(Reference.parse("r.example/b"))
        assert isinstance(a, HTTPRepository)
        assert isinstance(b, HTTPRepository)
        assert a.client is b.client


async def test_open_registry_references_and_layouts(tmp_path: Path) -> None:
    digest = Digest.of(b"x")
    async with Registries() as registries:
        repo, version = registries.open("127.0.0.1:5000/team/app:1.2")
        assert (str(repo), version) == ("127.0.0.1:5000/team/app", "1.2")
        _, version = registries.open(f"127.0.0.1:5000/team/app@{digest}")
        assert version == str(digest)
        _, version = registries.open("127.0.0.1:5000/team/app")
        assert version == "latest"
        layout, tag = registries.open(f"oci:{tmp_path}/layout:v1")
        assert isinstance(layout, LayoutRepository)
        assert tag == "v1"


async def test_update_settings_renews_changed_hosts_only() -> None:
    async with Registries({"a.example": RegistrySettings(host="a.example")}) as registries:
        a = registries.client("a.example")
        b = registries.client("b.example")
        registries.update_settings({"a.example": RegistrySettings(host="a.example", max_connections=2)})
        assert registries.client("a.example") is not a
        assert registries.client("a.example").settings.max_connections == 2
        assert registries.client("b.example") is b


async def test_requests_need_the_open_session() -> None:
    registries = Registries()
    repo = registries.repository(Reference.parse("127.0.0.1:9/a"))
    with pytest.raises(RuntimeError, match="not open"):
        await repo.tags_list()


async def test_round_trip_through_the_hub() -> None:
    async with running(FakeRegistry()) as fake, Registries() as registries:
        registries.update_settings(
            {fake.host: RegistrySettings(host=fake.host, tls=TLSSettings(enabled=False))}
        )
        repo = registries.repository(Reference.parse(f"{fake.host}/lib/app"))
        data = b"hello"

        async def one() -> AsyncIterator[bytes]:
            yield data

        await repo.blob_put(Digest.of(data), len(data), one())
        assert await repo.blob_head(Digest.of(data)) == len(data)
