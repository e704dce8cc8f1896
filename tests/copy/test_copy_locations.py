"""The location cache: recency, caps, atomic persistence, tolerance of a bad state file."""

from __future__ import annotations

import json
from pathlib import Path

from mirrord.copy import LocationCache
from mirrord.oci import Digest

A, B = Digest.of(b"a"), Digest.of(b"b")


def test_add_known_recent_forget() -> None:
    cache = LocationCache()
    cache.add("reg", A, "one")
    cache.add("reg", A, "two")
    cache.add("reg", A, "one")
    cache.add("other", A, "three")
    assert cache.known("reg", A) == {"one", "two"}
    assert cache.recent("reg", A) == ("one", "two")
    assert cache.known("reg", B) == frozenset()
    cache.forget("reg", A, "one")
    assert cache.recent("reg", A) == ("two",)
    cache.forget("reg", A, "two")
    assert cache.known("reg", A) == frozenset()
    assert len(cache) == 1


def test_caps_keep_the_newest() -> None:
    cache = LocationCache(max_repositories=2, max_blobs=1)
    for name in ("x", "y", "z"):
        cache.add("reg", A, name)
    assert cache.recent("reg", A) == ("z", "y")
    cache.add("reg", B, "w")
    assert cache.known("reg", A) == frozenset()
    assert cache.known("reg", B) == {"w"}


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "locations.json"
    cache = LocationCache(path)
    cache.add("reg:5000", A, "lib/app")
    cache.save()
    assert json.loads(path.read_text())["version"] == 1
    assert [p.name for p in path.parent.iterdir()] == ["locations.json"]  # no temporary left behind

    again = LocationCache(path)
    assert len(again) == 0  # construction does no I/O
    again.load()
    assert again.known("reg:5000", A) == {"lib/app"}


def test_missing_or_bad_state_file_means_empty(tmp_path: Path) -> None:
    cache = LocationCache(tmp_path / "absent.json")
    cache.load()
    assert len(cache) == 0
    bad = tmp_path / "bad.json"
    for text in ("{not json", '{"version": 9}', '{"version": 1, "locations": {"r": {"nope": ["x"]}}}'):
        bad.write_text(text)
        cache = LocationCache(bad)
        cache.load()
        assert len(cache) == 0


def test_without_state_file_save_and_load_do_nothing() -> None:
    cache = LocationCache()
    cache.add("reg", A, "x")
    cache.save()
    cache.load()
    assert cache.known("reg", A) == {"x"}
