"""Re-encoded layers for the targets of one pass: lookup, recompression, upload from the spool.

For a layer a target wants in another compression, the cheapest way wins: the conversion is known
(:class:`~mirrord.copy.conversions.ConversionMap`) and the target has the result (one HEAD) or can
mount it from a repository known to hold it; else the layer is re-encoded once (one source read,
streamed through a spool file) and uploaded to every target missing it. One re-encoding per
(layer, codec) at a time: later callers wait and then find the conversion known.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from mirrord.copy.conversions import Conversion, ConversionMap
from mirrord.copy.convert import Transform, transform_plan
from mirrord.copy.locations import LocationCache
from mirrord.copy.planner import ImagePlan
from mirrord.copy.recompress import (
    RecompressionFailed,
    discard,
    recompress_layer,
    spool_upload,
)
from mirrord.core.events import BlobDone, EventBus
from mirrord.oci import Descriptor, Digest, ImageManifest, parse_manifest
from mirrord.oci import mediatypes as mt
from mirrord.oci.convert import IMAGE_CONFIG_TYPES, Codec
from mirrord.registry.base import Repository, UploadSession

log = logging.getLogger(__name__)

#: Image configs larger than this are refused (they are read whole to learn the diff_ids).
MAX_CONFIG_BYTES = 4 * 1024 * 1024
#: Targets (by index) missing a re-encoded layer -> the upload session to use for it, if any.
_Missing = dict[int, UploadSession | None]
_NEW_TYPES: Mapping[Codec, str] = {"zstd": mt.OCI_LAYER_ZSTD, "gzip": mt.OCI_LAYER_GZIP}


class StreamSlots(Protocol):
    """The engine's blob stream slots (:class:`~mirrord.copy.blobs.BlobTransfers`)."""

    async def spawn(self, group: asyncio.TaskGroup, work: Coroutine[object, object, object]) -> None:
        """Run ``work`` in ``group`` holding a slot, given back when its task is done."""
        ...


@dataclass(slots=True)
class Recoded:
    """What :meth:`LayerRecoder.apply` did: final plans and failures per target index, and the
    bytes read from the source."""

    plans: dict[int, ImagePlan] = field(default_factory=dict)
    failures: dict[int, BaseException] = field(default_factory=dict)
    pulled: int = 0


@dataclass(slots=True)
class RecodeStats:
    """What this pass re-encoded: layers, bytes read and written, seconds in the codec."""

    layers: int = 0
    read: int = 0
    written: int = 0
    uncompressed: int = 0
    seconds: float = 0.0


class LayerRecoder:
    """Re-encoded layers for one engine (one pass)."""

    def __init__(
        self,
        *,
        conversions: ConversionMap,
        locations: LocationCache,
        events: EventBus,
        spool_dir: Path | None = None,
        threads: int = 2,
    ) -> None:
        self.conversions = conversions
        self.locations = locations
        self.events = events
        self.spool_dir = spool_dir
        self.threads = threads
        self.stats = RecodeStats()
        self._locks: dict[tuple[Digest, Codec], asyncio.Lock] = {}

    async def apply(
        self,
        source: Repository,
        plan: ImagePlan,
        targets: Mapping[int, tuple[Transform, Repository]],
        *,
        slots: StreamSlots,
        entry: str = "",
    ) -> Recoded:
        """For every target (index -> its transform and repository) that re-encodes layers of
        ``plan``: the layers brought there and the target's final plan. A stream slot of ``slots``
        is held per layer. Never raises for a failed layer (the failure is per target in the
        result), only CancelledError."""
        result = Recoded()
        by_codec: dict[Codec, list[int]] = {}
        for i, (transform, _) in targets.items():
            if transform.codec is not None and layers_to_recode(plan, transform):
                by_codec.setdefault(transform.codec, []).append(i)
        for codec, indexes in by_codec.items():
            try:
                layers = await self._recode(
                    source, plan, codec, [targets[i][1] for i in indexes], slots, result, entry
                )
                for i in indexes:
                    result.plans[i] = transform_plan(plan, targets[i][0], layers)
            except Exception as exc:
                for i in indexes:
                    result.failures[i] = exc
        return result

    async def _recode(
        self,
        source: Repository,
        plan: ImagePlan,
        codec: Codec,
        repositories: list[Repository],
        slots: StreamSlots,
        result: Recoded,
        entry: str,
    ) -> dict[Digest, Descriptor]:
        wanted = layers_to_recode(plan, Transform(compression=codec))
        diff_ids = await layer_diff_ids(source, plan, wanted)

        found: dict[Digest, Descriptor] = {}

        async def one(layer: Descriptor) -> None:
            descriptor, read = await self.ensure(
                source, layer, diff_ids[layer.digest], codec, repositories, entry=entry
            )
            result.pulled += read
            found[layer.digest] = descriptor

        async with asyncio.TaskGroup() as group:
            for layer in wanted:
                await slots.spawn(group, one(layer))
        return {layer.digest: found[layer.digest] for layer in wanted}

    async def ensure(
        self,
        source: Repository,
        layer: Descriptor,
        diff_id: Digest,
        codec: Codec,
        targets: Sequence[Repository],
        *,
        entry: str = "",
    ) -> tuple[Descriptor, int]:
        """``layer`` re-encoded as ``codec`` present at every target: its new descriptor (OCI media
        type; the manifest conversion names it in the target format) and the bytes read from the
        source. Raises RecompressionFailed or a registry error."""
        lock = self._locks.setdefault((layer.digest, codec), asyncio.Lock())
        async with lock:
            known = self.conversions.get(layer.digest, codec)
            missing: _Missing = (
                dict.fromkeys(range(len(targets)))
                if known is None
                else await self._missing(known, targets, entry)
            )
            if known is not None and not missing:
                return self._descriptor(codec, known), 0
            done = await recompress_layer(
                source, layer, diff_id, codec, spool_dir=self.spool_dir, threads=self.threads
            )
            try:
                self._count(layer, codec, done.read, done.size, done.uncompressed, done.seconds)
                conversion = Conversion(done.digest, done.size)
                if known is None or known != conversion:  # new, or re-encoded differently: check all
                    missing = await self._missing(conversion, targets, entry, held=missing)
                for index, upload in missing.items():
                    await spool_upload(targets[index], done, upload=upload)
                    self._done(targets[index], conversion, "copied", entry)
            finally:
                discard(done.path)
            self.conversions.put(layer.digest, codec, conversion)
            return self._descriptor(codec, conversion), done.read

    async def _missing(
        self,
        conversion: Conversion,
        targets: Sequence[Repository],
        entry: str,
        *,
        held: _Missing | None = None,
    ) -> _Missing:
        """The targets (by index) still missing ``conversion``, each with the upload session a
        mount answered instead (202), which the upload must then use. A target ``held`` gives a
        session for (from an earlier look) keeps it and is not asked to mount again."""
        missing: _Missing = {}
        for index, target in enumerate(targets):
            upload = (held or {}).get(index)
            if await target.blob_head(conversion.digest) is not None:
                self._done(target, conversion, "exists", entry)
                if upload is not None:  # only if another writer raced us; the registry expires it
                    log.debug("upload session unused", extra={"fields": {"target": str(target)}})
            elif upload is not None:
                missing[index] = upload
            else:
                mounted, upload = await self._mounted(target, conversion, entry)
                if not mounted:
                    missing[index] = upload
        return missing

    async def _mounted(
        self, target: Repository, conversion: Conversion, entry: str
    ) -> tuple[bool, UploadSession | None]:
        """Mount from a known holder; else the upload session the first refused mount started."""
        for holder in self.locations.recent(target.registry_key, conversion.digest):
            if holder == target.name:
                continue
            result = await target.blob_mount(conversion.digest, holder)
            if result.mounted:
                self._done(target, conversion, "mounted", entry)
                return True, None
            self.locations.forget(target.registry_key, conversion.digest, holder)
            if result.upload is not None:
                return False, result.upload  # a session to use, not one to leave behind by trying on
        return False, None

    def _done(self, target: Repository, conversion: Conversion, outcome: str, entry: str) -> None:
        self.locations.add(target.registry_key, conversion.digest, target.name)
        self.events.emit(
            BlobDone(
                entry,
                target.registry_key,
                target.name,
                str(conversion.digest),
                conversion.size,
                outcome,  # type: ignore[arg-type]
            )
        )

    def _count(
        self, layer: Descriptor, codec: Codec, read: int, written: int, plain: int, seconds: float
    ) -> None:
        stats = self.stats
        stats.layers += 1
        stats.read += read
        stats.written += written
        stats.uncompressed += plain
        stats.seconds += seconds
        log.info(
            "layer recompressed",
            extra={
                "fields": {
                    "digest": str(layer.digest),
                    "to": codec,
                    "read": read,
                    "written": written,
                    "seconds": round(seconds, 3),
                }
            },
        )

    @staticmethod
    def _descriptor(codec: Codec, conversion: Conversion) -> Descriptor:
        return Descriptor(_NEW_TYPES[codec], conversion.digest, conversion.size)


def layers_to_recode(plan: ImagePlan, transform: Transform) -> list[Descriptor]:
    """The plan's layers ``transform`` re-encodes, largest first."""
    return [blob for blob in plan.blobs if transform.recompresses(blob)]


async def layer_diff_ids(
    source: Repository, plan: ImagePlan, wanted: Sequence[Descriptor]
) -> dict[Digest, Digest]:
    """layer digest -> diff_id for every layer in ``wanted``, read from the configs of the plan's
    image manifests (one small GET per config). Raises RecompressionFailed when a config does not
    name a diff_id for each layer."""
    digests = {layer.digest for layer in wanted}
    found: dict[Digest, Digest] = {}
    for planned in plan.manifests:
        manifest = parse_manifest(planned.raw, planned.media_type)
        if not isinstance(manifest, ImageManifest) or not digests & {x.digest for x in manifest.layers}:
            continue
        if manifest.config.media_type not in IMAGE_CONFIG_TYPES:
            raise RecompressionFailed(
                f"manifest {manifest.digest} is not an image: its layers are not recompressed"
            )
        diff_ids = await _diff_ids(source, manifest)
        found.update(zip((layer.digest for layer in manifest.layers), diff_ids, strict=True))
    return found


async def _diff_ids(source: Repository, manifest: ImageManifest) -> list[Digest]:
    config = manifest.config
    if config.size > MAX_CONFIG_BYTES:
        raise RecompressionFailed(f"config {config.digest} of {config.size} bytes is too large")
    data = bytearray()
    async with source.blob_open(config.digest) as stream:
        async for chunk in stream:
            data += chunk
            if len(data) > MAX_CONFIG_BYTES:
                raise RecompressionFailed(f"config {config.digest} is too large")
    try:
        raw = json.loads(bytes(data))["rootfs"]["diff_ids"]
        diff_ids = [Digest.parse(value) for value in raw]
    except (ValueError, KeyError, TypeError) as exc:
        raise RecompressionFailed(f"config {config.digest} has no readable rootfs.diff_ids") from exc
    if len(diff_ids) != len(manifest.layers):
        raise RecompressionFailed(
            f"manifest {manifest.digest} has {len(manifest.layers)} layers but {len(diff_ids)} diff_ids"
        )
    return diff_ids
