"""The state directory: blob locations and re-encoded layers remembered across runs."""

from __future__ import annotations

from pathlib import Path

from mirrord.copy.conversions import ConversionMap
from mirrord.copy.locations import LocationCache


def conversions_beside(locations: LocationCache | None) -> ConversionMap:
    """The re-encoded layer map, kept in ``conversions.json`` next to the location cache's state file
    (in memory when it has none), so later runs skip recompression already done."""
    state = locations.state_file if locations is not None else None
    return ConversionMap.loaded(state.parent / "conversions.json") if state is not None else ConversionMap()


def open_location_cache(state_dir: str | None) -> LocationCache:
    """The blob-location cache: in memory, and kept in ``state_dir/locations.json`` when given so a
    restart can still mount instead of upload. A missing or unreadable file starts empty."""
    cache = LocationCache(Path(state_dir) / "locations.json" if state_dir else None)
    if state_dir:
        Path(state_dir).mkdir(parents=True, exist_ok=True)
        cache.load()
    return cache
