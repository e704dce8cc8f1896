"""The engine's state files go through the one atomic writer (``mirrord.core.files``): a save
creates missing directories, leaves no temporary file behind, and a failed save keeps the old file."""

from __future__ import annotations

from pathlib import Path

import pytest

from mirrord.copy import LocationCache
from mirrord.copy.conversions import Conversion, ConversionMap
from mirrord.core import files
from mirrord.oci import Digest

A, B = Digest.of(b"a"), Digest.of(b"b")


def test_both_state_files_save_into_a_new_directory_without_leftovers(tmp_path: Path) -> None:
    state = tmp_path / "new" / "state"
    cache = LocationCache(state_file=state / "locations.json")
    cache.add("reg", A, "one")
    cache.save()
    conversions = ConversionMap(state / "conversions.json")
    conversions.put(A, "zstd", Conversion(B, 3))
    conversions.save()
    assert sorted(p.name for p in state.iterdir()) == ["conversions.json", "locations.json"]
    assert ConversionMap.loaded(state / "conversions.json").get(A, "zstd") == Conversion(B, 3)


def test_a_failed_save_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "conversions.json"
    conversions = ConversionMap(path)
    conversions.put(A, "gzip", Conversion(B, 1))
    conversions.save()
    before = path.read_bytes()

    def broken_commit(self: files.AtomicWriter) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(files.AtomicWriter, "commit", broken_commit)
    conversions.put(B, "gzip", Conversion(A, 2))
    with pytest.raises(OSError, match="disk full"):
        conversions.save()
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["conversions.json"]
