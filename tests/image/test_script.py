"""scripts/image.py without an engine: which Debian mirror the local base comes from, the cache key, the
base choice, and the command line. (The build itself is covered by the ``image`` tests beside this.)"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests.image.kit import IMAGE_SCRIPT


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("mirrord_image_script", IMAGE_SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


script = _load()


@pytest.fixture(autouse=True)
def _no_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("MIRRORD_DEBIAN_MIRROR", "MIRRORD_IMAGE_CACHE", "MIRRORD_PYTHON_IMAGE", "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)


def _apt(tmp_path: Path, files: dict[str, str]) -> Path:
    apt = tmp_path / "apt"
    (apt / "sources.list.d").mkdir(parents=True)
    for name, text in files.items():
        (apt / name).write_text(text)
    return apt


def test_mirror_from_a_deb822_sources_file(tmp_path: Path) -> None:
    apt = _apt(
        tmp_path,
        {
            "sources.list.d/debian.sources": (
                "Types: deb\nURIs: http://mirror.example/debian/\nSuites: bookworm bookworm-updates\n"
                "Components: main\n\nTypes: deb\nURIs: http://mirror.example/debian-security\n"
                "Suites: bookworm-security\n"
            ),
            "sources.list.d/other.list": "deb https://apt.example/x nodistro main\n",
        },
    )
    assert script.debian_mirror(apt) == "http://mirror.example/debian"


def test_mirror_from_a_one_line_sources_list(tmp_path: Path) -> None:
    apt = _apt(
        tmp_path,
        {
            "sources.list": (
                "# deb http://commented.example/debian bookworm main\n"
                "deb-src http://src.example/debian bookworm main\n"
                "deb [arch=amd64 signed-by=/k.gpg] http://one.example/debian bookworm main\n"
            )
        },
    )
    assert script.debian_mirror(apt) == "http://one.example/debian"


def test_mirror_override_and_fallback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    apt = _apt(tmp_path, {"sources.list": "deb http://trixie.example/debian trixie main\n"})
    assert script.debian_mirror(apt) == script.DEFAULT_MIRROR
    monkeypatch.setenv("MIRRORD_DEBIAN_MIRROR", "http://override.example/debian/")
    assert script.debian_mirror(apt) == "http://override.example/debian"


def test_the_cache_key_follows_the_mirror_and_the_recipe(monkeypatch: pytest.MonkeyPatch) -> None:
    key = script.base_key("http://a.example/debian")
    assert key == script.base_key("http://a.example/debian")
    assert key != script.base_key("http://b.example/debian")
    monkeypatch.setitem(script.BASE_RECIPE, "include", ["python3"])
    assert key != script.base_key("http://a.example/debian")


def test_the_cache_lives_outside_the_repository(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    assert script.cache_dir() == tmp_path / ".cache" / "mirrord" / "image"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert script.cache_dir() == tmp_path / "xdg" / "mirrord" / "image"
    monkeypatch.setenv("MIRRORD_IMAGE_CACHE", str(tmp_path / "explicit"))
    assert script.cache_dir() == tmp_path / "explicit"


def test_a_cached_base_is_reused_without_debootstrap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mirror = "http://a.example/debian"
    cached = tmp_path / f"base-{script.base_key(mirror)}.tar"
    cached.write_bytes(b"rootfs")
    monkeypatch.setattr(script, "run", lambda *a, **k: pytest.fail(f"ran {a}"))
    assert script.local_base_tarball(mirror, tmp_path) == cached


class _Engine(script.Engine):  # type: ignore[name-defined,misc]
    def __init__(self, pullable: bool) -> None:
        self.pullable = pullable
        self.imported: list[tuple[Path, str]] = []

    def pull(self, image: str) -> bool:
        return self.pullable

    def import_rootfs(self, tarball: Path, image: str) -> None:
        self.imported.append((tarball, image))


def test_the_public_base_wins_when_it_can_be_pulled() -> None:
    engine = _Engine(pullable=True)
    assert script.resolve_base(engine, None, False, script.Timings()) == script.PUBLIC_BASE
    assert engine.imported == []
    assert script.resolve_base(engine, "registry.example/py:3.11", False, script.Timings()) == (
        "registry.example/py:3.11"
    )


def test_the_local_base_when_the_public_one_cannot_be_pulled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MIRRORD_DEBIAN_MIRROR", "http://a.example/debian")
    monkeypatch.setenv("MIRRORD_IMAGE_CACHE", str(tmp_path))
    key = script.base_key("http://a.example/debian")
    (tmp_path / f"base-{key}.tar").write_bytes(b"rootfs")
    engine = _Engine(pullable=False)
    timings = script.Timings()
    assert script.resolve_base(engine, None, False, timings) == f"localhost/mirrord-base:{key}"
    assert engine.imported == [(tmp_path / f"base-{key}.tar", f"localhost/mirrord-base:{key}")]
    assert set(timings.steps) == {
        "pull public base",
        "local base (debootstrap or cache)",
        "import local base",
    }


def test_unknown_arguments_are_a_usage_error() -> None:
    with pytest.raises(SystemExit) as exc:
        script.parse_args(["build", "--no-such-flag"])
    assert exc.value.code == 2
