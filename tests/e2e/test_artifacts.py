"""Signatures, SBOMs, attestations and referrers end to end: `mirrord sync` between two real
registries (distribution 2.8: no referrers API, so the fallback tag scheme), checked with skopeo."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mirrord.oci import Reference
from mirrord.plan import load_plan
from mirrord.registry.hub import Registries
from mirrord.registry.settings import RegistrySettings
from mirrord.sync.runner import SyncRunner
from mirrord.testing.sample import (
    cosign_tag,
    push_sample,
    referrers_index,
    sample_cosign,
    sample_image,
    sample_referrer,
)
from tests.e2e.helpers import PLAIN, read_report, registries_yaml, run_cli, write_plan
from tests.testbed.proxy import FaultProxy
from tests.testbed.registry import RegistryServer
from tests.testbed.tools import skopeo_inspect_raw

pytestmark = [pytest.mark.integration, pytest.mark.tools("skopeo")]


async def seed_signed(host: str, repo: str) -> dict[str, str]:
    """An index tagged 1 with cosign .sig/.att/.sbom, two referrers in the fallback tag, a referrer of
    a referrer (its own fallback tag) and a .sig of the .sbom. Returns name -> reference to check."""
    async with Registries({host: RegistrySettings(host=host, tls=PLAIN)}) as hub:
        repository = hub.repository(Reference.parse(f"{host}/{repo}", default_tag=None))
        image = sample_image(repo, kind="oci-index", platforms=("linux/amd64", "linux/arm64"))
        await push_sample(repository, image, "1")
        refs = {"image": "1"}
        sbom = None
        for suffix in (".sig", ".att", ".sbom"):
            artifact = sample_cosign(image.root, suffix)
            sbom = artifact if suffix == ".sbom" else sbom
            refs[suffix] = cosign_tag(image.digest, suffix)
            await push_sample(repository, artifact, refs[suffix])
        assert sbom is not None
        refs["sbom.sig"] = cosign_tag(sbom.digest, ".sig")
        await push_sample(repository, sample_cosign(sbom.root, ".sig", seed=1), refs["sbom.sig"])
        one, two = sample_referrer(image.root, seed=1), sample_referrer(image.root, seed=2)
        deep = sample_referrer(one.root, seed=3)
        for referrer in (one, two, deep):
            await push_sample(repository, referrer)
        for subject, listed in ((image.root, [one.root, two.root]), (one.root, [deep.root])):
            index = referrers_index(listed)
            await repository.manifest_put(cosign_tag(subject.digest), index.raw, index.media_type)
            refs[f"referrers of {subject.digest}"] = cosign_tag(subject.digest)
        refs.update(one=f"@{one.digest}", two=f"@{two.digest}", deep=f"@{deep.digest}")
    return refs


_RECHECK = "defaults:\n  recheck_artifacts: true\n"


def _ref(repo: str, reference: str) -> str:
    return f"{repo}{reference}" if reference.startswith("@") else f"{repo}:{reference}"


def _plan(path: Path, source: str, target: str, repo: str, options: str = "", extra: str = "") -> Path:
    return write_plan(
        path,
        f"""
version: 1
{registries_yaml([source, target])}
sync:
  - name: signed
    source: {source}/{repo}:1
    target: {{ref: {target}/{repo}{options}}}
{extra}""",
    )


async def test_signatures_and_referrers_arrive_byte_identical_and_cost_nothing_when_unchanged(
    plain_registry: RegistryServer, registry_factory: object, unique_repo: str, tmp_path: Path
) -> None:
    mirror = registry_factory("plain")  # type: ignore[operator]
    refs = await seed_signed(plain_registry.host, unique_repo)
    async with FaultProxy(plain_registry.url) as src:
        plan = _plan(tmp_path / "plan.yaml", src.host, mirror.host, unique_repo)
        first = await run_cli("sync", "-c", str(plan), "--report", str(tmp_path / "r1.json"))
        assert first.code == 0, first.output
        (row,) = read_report(tmp_path / "r1.json")
        assert row["result"] == "copied"
        assert len(row["artifacts"]) == 7
        for name, reference in refs.items():  # byte-identical as skopeo reads both ends
            at_source = skopeo_inspect_raw(plain_registry, _ref(unique_repo, reference))
            assert skopeo_inspect_raw(mirror, _ref(unique_repo, reference)) == at_source, name

        src.requests.clear()
        second = await run_cli("sync", "-c", str(plan), "--report", str(tmp_path / "r2.json"))
        assert second.code == 0, second.output
        assert read_report(tmp_path / "r2.json")[0]["result"] == "unchanged"
        # The contract: an unchanged tag costs one HEAD at the source and no GET, artifacts or not.
        assert src.count("HEAD", "manifest") == 1
        assert src.count("GET", None) == 0
        assert len(src.requests) == 1

        src.requests.clear()
        recheck = _plan(tmp_path / "recheck.yaml", src.host, mirror.host, unique_repo, "", _RECHECK)
        third = await run_cli("sync", "-c", str(recheck), "--report", str(tmp_path / "r3.json"))
        assert third.code == 0, third.output
        assert read_report(tmp_path / "r3.json")[0]["result"] == "unchanged"
        # With recheck_artifacts: the image tag's HEAD, one tags list, one referrers probe (404 on
        # distribution 2.8), a HEAD per cosign tag (4) and a GET per fallback referrers index (2);
        # no blob.
        assert src.count("HEAD", "manifest") == 1 + 4
        assert src.count("GET", "manifest") == 2
        assert src.count("GET", "tags") == 1
        assert src.count("GET", "other") == 1  # the referrers probe
        assert src.count(None, "blob") == 0


async def test_converted_target_reports_dropped_signatures(
    plain_registry: RegistryServer, registry_factory: object, unique_repo: str, tmp_path: Path
) -> None:
    mirror = registry_factory("plain")  # type: ignore[operator]
    refs = await seed_signed(plain_registry.host, unique_repo)
    plan = _plan(tmp_path / "plan.yaml", plain_registry.host, mirror.host, unique_repo, ", format: docker")
    result = await run_cli("sync", "-c", str(plan), "--report", str(tmp_path / "r.json"))
    assert result.code == 0, result.output
    (row,) = read_report(tmp_path / "r.json")
    dropped = row["dropped_signatures"]
    assert {d["artifact"] for d in dropped} >= {refs[".sig"], refs[".att"], refs[".sbom"]}
    assert all(row["digest_map"][d["subject"]] == d["replacement"] for d in dropped)
    raw = json.loads(skopeo_inspect_raw(mirror, f"{unique_repo}:1"))
    assert raw["mediaType"] == "application/vnd.docker.distribution.manifest.list.v2+json"
    assert "signature not copied" in result.output


async def test_require_signatures_refuses_a_conversion(
    plain_registry: RegistryServer, registry_factory: object, unique_repo: str, tmp_path: Path
) -> None:
    mirror = registry_factory("plain")  # type: ignore[operator]
    await seed_signed(plain_registry.host, unique_repo)
    plan = _plan(
        tmp_path / "plan.yaml",
        plain_registry.host,
        mirror.host,
        unique_repo,
        ", format: docker",
        "    require_signatures: true\n",
    )
    result = await run_cli("sync", "-c", str(plan), "--report", str(tmp_path / "r.json"))
    assert result.code == 1, result.output
    (row,) = read_report(tmp_path / "r.json")
    assert row["result"] == "failed"
    assert "require_signatures" in row["error"]


async def test_the_daemon_looks_again_for_artifacts_on_the_pass_after_a_copy_then_stops(
    plain_registry: RegistryServer, registry_factory: object, unique_repo: str, tmp_path: Path
) -> None:
    """A signature pushed after its image was mirrored arrives on the next pass of the same runner
    (the daemon keeps one); the pass after that costs the source one HEAD again."""
    mirror = registry_factory("plain")  # type: ignore[operator]
    settings = {plain_registry.host: RegistrySettings(host=plain_registry.host, tls=PLAIN)}
    async with Registries(settings) as hub:
        source = hub.repository(Reference.parse(f"{plain_registry.host}/{unique_repo}", default_tag=None))
        image = sample_image(unique_repo, kind="oci-index", platforms=("linux/amd64",))
        await push_sample(source, image, "1")
        async with FaultProxy(plain_registry.url) as src:
            plan = load_plan(_plan(tmp_path / "plan.yaml", src.host, mirror.host, unique_repo))
            async with Registries(plan.registries) as registries:
                runner = SyncRunner(plan, registries)
                passes = []
                for n in range(3):
                    if n == 1:  # signed after the first pass mirrored the image
                        signature = sample_cosign(image.root, ".sig")
                        await push_sample(source, signature, cosign_tag(image.digest, ".sig"))
                    src.requests.clear()
                    (report,) = await runner.run_pass()
                    passes.append(([i.result for i in report.images], len(src.requests)))
                    if n == 1:
                        assert src.count("GET", "tags") == 1
    assert [results for results, _ in passes] == [["copied"], ["unchanged"], ["unchanged"]]
    assert passes[2][1] == 1  # the third pass: one HEAD, nothing else
    sig = _ref(unique_repo, cosign_tag(image.digest, ".sig"))
    assert skopeo_inspect_raw(mirror, sig) == skopeo_inspect_raw(plain_registry, sig)
