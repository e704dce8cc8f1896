"""Seed a :class:`~bench.corpus.Corpus` into a registry over the distribution HTTP API (aiohttp).

Layers stream as ``POST`` + one streaming ``PATCH`` + ``PUT ?digest=`` so the digest is computed while the
bytes go out (one generation pass, nothing held in memory). Base layers are pushed once and mounted into
every other repository. Children are pushed before the index that names them.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from typing import Any

import aiohttp
from yarl import URL

from bench.corpus import (
    OCI_INDEX,
    OCI_MANIFEST,
    Corpus,
    CorpusSpec,
    LayerKey,
    LayerStream,
    app_layer,
    base_layer,
    config_bytes,
    image_layers,
    index_bytes,
    manifest_bytes,
    sha256_digest,
)

REPO_CONCURRENCY = 4


class PushError(Exception):
    """The registry refused a push."""


class Pusher:
    """The few write calls seeding needs, against ``http://host``."""

    def __init__(self, session: aiohttp.ClientSession, host: str) -> None:
        self._session = session
        self._base = URL(f"http://{host}")

    async def _start_upload(self, repo: str, query: dict[str, str] | None = None) -> URL | None:
        url = self._base / "v2" / repo / "blobs" / "uploads" / ""
        async with self._session.post(url, params=query) as resp:
            if resp.status == 201:
                return None  # mounted
            await _expect(resp, 202)
            return self._base.join(URL(resp.headers["Location"]))

    async def blob_stream(self, repo: str, stream: LayerStream) -> dict[str, Any]:
        """Upload ``stream`` in one streaming PATCH; its descriptor (digest, diff_id, size)."""
        location = await self._start_upload(repo)
        assert location is not None

        async def body() -> AsyncIterator[bytes]:
            for chunk in stream:
                yield chunk

        headers = {"Content-Type": "application/octet-stream"}
        async with self._session.patch(location, data=body(), headers=headers) as resp:
            await _expect(resp, 202)
            location = self._base.join(URL(resp.headers["Location"]))
        async with self._session.put(location.update_query(digest=stream.digest)) as resp:
            await _expect(resp, 201)
        return {"digest": stream.digest, "diff_id": stream.diff_id, "size": stream.size}

    async def blob_bytes(self, repo: str, data: bytes) -> dict[str, Any]:
        """Upload a small blob monolithically (POST + PUT); its descriptor (digest, size)."""
        digest = sha256_digest(data)
        location = await self._start_upload(repo)
        assert location is not None
        headers = {"Content-Type": "application/octet-stream"}
        async with self._session.put(location.update_query(digest=digest), data=data, headers=headers) as r:
            await _expect(r, 201)
        return {"digest": digest, "size": len(data)}

    async def blob_mount(self, repo: str, digest: str, source_repo: str) -> None:
        """Mount ``digest`` from ``source_repo``; the registry holds it, so anything but 201 is an error."""
        location = await self._start_upload(repo, {"mount": digest, "from": source_repo})
        if location is not None:
            raise PushError(f"mount of {digest} into {repo} was not done (202)")

    async def manifest_put(self, repo: str, ref: str, media_type: str, data: bytes) -> None:
        """Put a manifest or index under ``ref`` (a tag or its digest)."""
        url = self._base / "v2" / repo / "manifests" / ref
        async with self._session.put(url, data=data, headers={"Content-Type": media_type}) as resp:
            await _expect(resp, 201)


async def _expect(resp: aiohttp.ClientResponse, status: int) -> None:
    if resp.status != status:
        body = (await resp.read())[:300].decode(errors="replace")
        raise PushError(f"{resp.method} {resp.url.path}: {resp.status} (wanted {status}): {body}")
    await resp.read()


class Seeder:
    """Pushes a corpus into one registry and records it in a :class:`Corpus`."""

    def __init__(self, pusher: Pusher, spec: CorpusSpec) -> None:
        self._push = pusher
        self._spec = spec
        self.corpus = Corpus(spec=spec)
        self._base: dict[int, dict[str, Any]] = {}
        #: Without indexes: each tag's manifest by digest, until it is tagged.
        self._untagged: dict[str, bytes] = {}

    async def run(self) -> Corpus:
        """Seed everything; the record of what was pushed."""
        repos = self._spec.repo_names()
        for p in range(self._spec.platforms):
            if self._spec.base_mb > 0:
                self._base[p] = await self._push.blob_stream(
                    repos[0], _stream(self._spec, base_layer(self._spec, p))
                )
        limit = asyncio.Semaphore(REPO_CONCURRENCY)
        async with asyncio.TaskGroup() as tg:
            for repo in repos:
                tg.create_task(self._repo_limited(limit, repo, repos[0]))
        return self.corpus

    async def _repo_limited(self, limit: asyncio.Semaphore, repo: str, first: str) -> None:
        async with limit:
            await self._repo(repo, first)

    async def _repo(self, repo: str, first: str) -> None:
        if repo != first:
            for desc in self._base.values():
                await self._push.blob_mount(repo, desc["digest"], first)
        apps: dict[tuple[int, int], dict[str, Any]] = {}
        self.corpus.tags[repo], self.corpus.repo_blobs[repo] = {}, []
        self.corpus.referenced[repo] = self.corpus.manifests[repo] = 0
        for i, tag in enumerate(self._spec.tag_names()):
            children = [await self._image(repo, tag, i, p, apps) for p in range(self._spec.platforms)]
            if not self._spec.index:
                digest = children[0][1]
                await self._push.manifest_put(repo, tag, OCI_MANIFEST, self._untagged.pop(digest))
                self.corpus.tags[repo][tag] = digest
                continue
            index = index_bytes(children)
            await self._push.manifest_put(repo, tag, OCI_INDEX, index)
            self.corpus.tags[repo][tag] = sha256_digest(index)
            self.corpus.manifests[repo] += 1

    async def _image(
        self, repo: str, tag: str, i: int, p: int, apps: dict[tuple[int, int], dict[str, Any]]
    ) -> tuple[int, str, int]:
        """Push tag ``i``'s manifest for platform ``p`` (its new app layer and config first)."""
        spec = self._spec
        if spec.app_mb > 0:
            apps[(p, i)] = await self._push.blob_stream(repo, _stream(spec, app_layer(spec, repo, p, i)))
        layers = [self._layer(apps, key, p) for key in image_layers(spec, repo, p, i)]
        config_json = config_bytes(spec, repo, tag, p, [d["diff_id"] for d in layers])
        config = await self._push.blob_bytes(repo, config_json)
        manifest = manifest_bytes(config, layers)
        digest = sha256_digest(manifest)
        if spec.index:
            await self._push.manifest_put(repo, digest, OCI_MANIFEST, manifest)
        else:
            self._untagged[digest] = manifest  # the tag's own manifest: put under the tag by _repo
        self._record(repo, [config, *layers])
        return p, digest, len(manifest)

    def _record(self, repo: str, blobs: list[dict[str, Any]]) -> None:
        corpus = self.corpus
        for d in blobs:
            if d["digest"] not in corpus.repo_blobs[repo]:
                corpus.repo_blobs[repo].append(d["digest"])
            corpus.blobs[d["digest"]] = d["size"]
            corpus.referenced[repo] += d["size"]
        corpus.manifests[repo] += 1

    def _layer(self, apps: dict[tuple[int, int], dict[str, Any]], key: LayerKey, p: int) -> dict[str, Any]:
        if key.key.startswith("base/"):
            return self._base[p]
        tag_index = int(key.key.rsplit("/", 1)[1])
        return apps[(p, tag_index)]


def _stream(spec: CorpusSpec, layer: LayerKey) -> LayerStream:
    return LayerStream(spec.seed, layer)


async def seed_corpus(host: str, spec: CorpusSpec) -> Corpus:
    """Push the corpus ``spec`` describes into the registry at ``host`` (plain HTTP)."""
    timeout = aiohttp.ClientTimeout(total=None, sock_read=300)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        return await Seeder(Pusher(session, host), spec).run()


async def head_digests(host: str, refs: Iterable[tuple[str, str]]) -> dict[tuple[str, str], str | None]:
    """``Docker-Content-Digest`` of each ``(repo, tag)`` at ``host`` (None if absent): checks a copy."""
    accept = ", ".join([OCI_INDEX, OCI_MANIFEST, "application/vnd.docker.distribution.manifest.list.v2+json"])
    out: dict[tuple[str, str], str | None] = {}
    async with aiohttp.ClientSession() as session:
        for repo, tag in refs:
            url = f"http://{host}/v2/{repo}/manifests/{tag}"
            async with session.head(url, headers={"Accept": accept}) as resp:
                out[(repo, tag)] = resp.headers.get("Docker-Content-Digest") if resp.status == 200 else None
    return out
