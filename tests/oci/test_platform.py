"""Platforms: containerd's normalisations, JSON and matching."""

from __future__ import annotations

import pytest

from mirrord.oci import InvalidPlatform, Platform

NORMALISED = [
    ("linux/amd64", "linux/amd64"),
    ("linux/x86_64", "linux/amd64"),
    ("linux/x86-64", "linux/amd64"),
    ("linux/amd64/v1", "linux/amd64"),
    ("linux/amd64/v3", "linux/amd64/v3"),
    ("linux/arm64", "linux/arm64"),
    ("linux/aarch64", "linux/arm64"),
    ("linux/arm64/v8", "linux/arm64"),
    ("linux/arm64/8", "linux/arm64"),
    ("linux/arm64/v8.0", "linux/arm64"),
    ("linux/arm64/v9", "linux/arm64/v9"),
    ("linux/arm", "linux/arm/v7"),
    ("linux/arm/7", "linux/arm/v7"),
    ("linux/arm/v7", "linux/arm/v7"),
    ("linux/arm/v6", "linux/arm/v6"),
    ("linux/arm/6", "linux/arm/v6"),
    ("linux/arm/5", "linux/arm/v5"),
    ("linux/armhf", "linux/arm/v7"),
    ("linux/armel", "linux/arm/v6"),
    ("linux/i386", "linux/386"),
    ("linux/386", "linux/386"),
    ("Linux/AMD64", "linux/amd64"),
    ("LINUX/ARM/V7", "linux/arm/v7"),
    ("windows/amd64", "windows/amd64"),
    ("darwin/arm64", "darwin/arm64"),
    ("linux/ppc64le", "linux/ppc64le"),
    ("linux/s390x", "linux/s390x"),
    ("linux/riscv64", "linux/riscv64"),
    ("unknown/unknown", "unknown/unknown"),
]


@pytest.mark.parametrize(("text", "expected"), NORMALISED)
def test_parse_normalises(text: str, expected: str) -> None:
    platform = Platform.parse(text)
    assert str(platform) == expected
    assert Platform.parse(expected) == platform
    assert hash(Platform.parse(expected)) == hash(platform)


@pytest.mark.parametrize(
    "text", ["", "linux", "linux/", "/amd64", "linux//v7", "a/b/c/d", "linux/amd 64", "l/a/"]
)
def test_parse_rejects_malformed(text: str) -> None:
    with pytest.raises(InvalidPlatform, match="os/arch"):
        Platform.parse(text)


def test_from_json_reads_every_field_and_normalises() -> None:
    platform = Platform.from_json(
        {
            "architecture": "amd64",
            "os": "windows",
            "os.version": "10.0.17763.5458",
            "os.features": ["win32k"],
        }
    )
    assert platform == Platform("windows", "amd64", None, "10.0.17763.5458", ("win32k",))
    assert Platform.from_json({"os": "linux", "architecture": "arm64", "variant": "v8"}) == Platform(
        "linux", "arm64"
    )
    assert Platform.from_json({"os": "linux", "architecture": "arm", "variant": ""}).variant == "v7"


@pytest.mark.parametrize(
    ("obj", "fragment"),
    [
        ({"architecture": "amd64"}, "'os'"),
        ({"os": "linux"}, "'architecture'"),
        ({"os": "", "architecture": "amd64"}, "'os'"),
        ({"os": "linux", "architecture": 1}, "'architecture'"),
        ({"os": "linux", "architecture": "arm", "variant": 7}, "'variant'"),
        ({"os": "linux", "architecture": "amd64", "os.version": 10}, "'os.version'"),
        ({"os": "linux", "architecture": "amd64", "os.features": "x"}, "'os.features'"),
        ({"os": "linux", "architecture": "amd64", "os.features": [1]}, "'os.features'"),
    ],
)
def test_from_json_rejects_wrong_types(obj: dict[str, object], fragment: str) -> None:
    with pytest.raises(InvalidPlatform, match=fragment):
        Platform.from_json(obj)


def test_from_json_rejects_non_objects() -> None:
    with pytest.raises(InvalidPlatform):
        Platform.from_json(["linux"])  # type: ignore[arg-type]


def test_to_json_round_trips() -> None:
    platform = Platform("windows", "amd64", None, "10.0", ("win32k",))
    assert Platform.from_json(platform.to_json()) == platform
    assert Platform.parse("linux/arm").to_json() == {"architecture": "arm", "os": "linux", "variant": "v7"}


@pytest.mark.parametrize(
    ("entry", "wanted", "matches"),
    [
        ("linux/amd64", "linux/amd64", True),
        ("linux/amd64", "linux/arm64", False),
        ("linux/amd64", "windows/amd64", False),
        ("linux/arm/v7", "linux/arm", True),
        ("linux/arm/v6", "linux/arm", False),
        ("linux/arm/v6", "linux/arm/v6", True),
        ("linux/arm64/v8", "linux/arm64", True),
        ("linux/aarch64", "linux/arm64/v8", True),
        ("linux/amd64/v3", "linux/amd64", True),
        ("linux/amd64", "linux/amd64/v3", False),
        ("unknown/unknown", "linux/amd64", False),
    ],
)
def test_matches(entry: str, wanted: str, matches: bool) -> None:
    assert Platform.parse(entry).matches(Platform.parse(wanted)) is matches


def test_os_version_and_features_only_matter_when_wanted() -> None:
    entry = Platform("windows", "amd64", None, "10.0.17763", ("win32k",))
    assert entry.matches(Platform.parse("windows/amd64"))
    assert entry.matches(Platform("windows", "amd64", None, "10.0.17763"))
    assert not entry.matches(Platform("windows", "amd64", None, "10.0.20348"))
    assert entry.matches(Platform("windows", "amd64", os_features=("win32k",)))
    assert not entry.matches(Platform("windows", "amd64", os_features=("other",)))


def test_is_unknown() -> None:
    assert Platform.parse("unknown/unknown").is_unknown
    assert not Platform.parse("linux/amd64").is_unknown
