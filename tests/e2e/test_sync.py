"""`mirrord sync` end to end against real registries: no-op cost, bad plans, dry run, report, prune."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.helpers import (
    digest_at,
    entry_plan,
    images,
    read_report,
    registries_yaml,
    run_cli,
    seed,
    tags_at,
    write_plan,
)
from tests.testbed.proxy import FaultProxy
from tests.testbed.registry import RegistryServer
from tests.testbed.tools import skopeo_inspect_raw

pytestmark = [pytest.mark.integration, pytest.mark.tools("skopeo")]


def _plan(path: Path, source: str, target: str, repo: str, tags: str, extra: str = "") -> Path:
    return entry_plan(path, source, target, repo, tags, name="e2e", extra=extra)


async def test_second_sync_costs_one_head_per_tag_and_no_get(
    plain_registry: RegistryServer, registry_factory: object, unique_repo: str, tmp_path: Path
) -> None:
    target = registry_factory("plain")  # type: ignore[operator]
    await seed(plain_registry.host, unique_repo, images("1.0.0", "1.1.0", "2.0.0"))
    async with FaultProxy(plain_registry.url) as src, FaultProxy(target.url) as dst:
        plan = _plan(tmp_path / "plan.yaml", src.host, dst.host, unique_repo, "[1.0.0, 1.1.0, 2.0.0]")
        first = await run_cli("sync", "-c", str(plan), "--report", str(tmp_path / "r1.json"))
        assert first.code == 0, first.output
        assert {i["result"] for i in read_report(tmp_path / "r1.json")} == {"copied"}
        # Without -v the log has one line per image, none per blob or manifest.
        messages = [json.loads(line)["msg"] for line in first.stderr.splitlines() if line.startswith("{")]
        assert messages.count("image copied") == 3
        assert not [m for m in messages if m.startswith(("blob ", "manifest "))], messages
        src.requests.clear()
        dst.requests.clear()

        # -X importtime (as an environment variable): which modules the pass imported, on stderr.
        env = {"PYTHONPROFILEIMPORTTIME": "1"}
        second = await run_cli("sync", "-c", str(plan), "--report", str(tmp_path / "r2.json"), env=env)
        assert second.code == 0, second.output
        assert [i["result"] for i in read_report(tmp_path / "r2.json")] == ["unchanged"] * 3
        # A pass that copies nothing loads no codec, recompression or progress-bar code, and none of
        # what this plan does not use: semver (its tags are a list), the OCI layout repository (no
        # oci: target), the dry run, signatures, the daemon and its metrics...
        imported = {line.split("|")[-1].strip() for line in second.stderr.splitlines() if "|" in line}
        assert "mirrord.copy.engine" in imported
        unwanted = {"zstandard", "rich", "mirrord.copy.recompress", "mirrord.copy.recode", "gzip"}
        unwanted |= {"semver", "mirrord.registry.layout.repository", "mirrord.sync.dryrun"}
        unwanted |= {"cryptography", "mirrord.trust.policy", "prometheus_client", "aiohttp.web"}
        assert not imported & unwanted, imported & unwanted
        # ...and logs one line for the unchanged images of the entry, not one per image.
        logs = [json.loads(line) for line in second.stderr.splitlines() if line.startswith("{")]
        assert [(r["msg"], r.get("count")) for r in logs if "unchanged" in r["msg"]] == [
            ("images unchanged", 3)
        ]
        assert src.count("GET", None) == 0  # no manifest, blob, tag list or referrers GET
        assert src.count("HEAD", "manifest") == 3
        assert len(src.requests) == 3
        assert dst.count("HEAD", "manifest") == 3
        assert dst.count("PUT", "manifest") == 0
    # Byte-identical at the target, as skopeo (not mirrord) reads it.
    for tag in ("1.0.0", "1.1.0", "2.0.0"):
        assert skopeo_inspect_raw(target, target.ref(f"{unique_repo}:{tag}")) == skopeo_inspect_raw(
            plain_registry, plain_registry.ref(f"{unique_repo}:{tag}")
        )


async def test_filters_select_tags_from_the_registry(
    plain_registry: RegistryServer, registry_factory: object, unique_repo: str, tmp_path: Path
) -> None:
    target = registry_factory("plain")  # type: ignore[operator]
    await seed(
        plain_registry.host, unique_repo, images("v1.0.0", "v1.2.0", "v2.0.0-rc.1", "latest", "1.1-perl")
    )
    plan = _plan(
        tmp_path / "plan.yaml",
        plain_registry.host,
        target.host,
        unique_repo,
        "{include: ['^v?1\\.', '^v2'], exclude: ['-perl$'], semver: '>=1.0.0 <3', latest: 2}",
    )
    result = await run_cli("sync", "-c", str(plan))
    assert result.code == 0, result.output
    # v2.0.0-rc.1 is a pre-release the range does not name; latest 2 of the rest by semver.
    assert await tags_at(target.host, unique_repo) == ["v1.0.0", "v1.2.0"]


async def test_dry_run_writes_nothing_and_report_lists_every_image(
    plain_registry: RegistryServer, registry_factory: object, unique_repo: str, tmp_path: Path
) -> None:
    target = registry_factory("plain")  # type: ignore[operator]
    await seed(plain_registry.host, unique_repo, images("a", "b"))
    plan = _plan(tmp_path / "plan.yaml", plain_registry.host, target.host, unique_repo, "[a, b]")
    dry = await run_cli("sync", "-c", str(plan), "--dry-run", "--report", str(tmp_path / "dry.json"))
    assert dry.code == 0, dry.output
    assert [i["result"] for i in read_report(tmp_path / "dry.json")] == ["would-copy"] * 2
    assert await tags_at(target.host, unique_repo) == []

    real = await run_cli("sync", "-c", str(plan), "--report", str(tmp_path / "real.json"))
    assert real.code == 0, real.output
    rows = read_report(tmp_path / "real.json")
    for row in rows:
        assert row["result"] == "copied"
        assert row["source_digest"].startswith("sha256:")
        assert list(row["target_digests"].values()) == [row["source_digest"]]
        assert row["bytes"] > 0
        assert row["entry"] == "e2e"


async def test_a_failing_image_does_not_stop_the_others(
    plain_registry: RegistryServer, registry_factory: object, unique_repo: str, tmp_path: Path
) -> None:
    target = registry_factory("plain")  # type: ignore[operator]
    await seed(plain_registry.host, unique_repo, images("good"))
    plan = _plan(tmp_path / "plan.yaml", plain_registry.host, target.host, unique_repo, "[good, missing]")
    result = await run_cli("sync", "-c", str(plan), "--report", str(tmp_path / "r.json"))
    assert result.code == 1, result.output
    rows = {r["source"].rsplit(":", 1)[1]: r for r in read_report(tmp_path / "r.json")}
    assert rows["good"]["result"] == "copied"
    assert rows["missing"]["result"] == "failed"
    assert rows["missing"]["error"]
    assert await tags_at(target.host, unique_repo) == ["good"]


async def test_prune_deletes_only_tags_inside_the_filter_capped(
    plain_registry: RegistryServer, registry_factory: object, unique_repo: str, tmp_path: Path
) -> None:
    target = registry_factory("plain")  # type: ignore[operator]
    await seed(plain_registry.host, unique_repo, images("1.0.0"))
    await seed(target.host, unique_repo, images("0.8.0", "0.9.0", "custom", seed_base=50))
    plan = _plan(
        tmp_path / "plan.yaml",
        plain_registry.host,
        target.host,
        unique_repo,
        "{semver: '>=0.1.0'}",
        extra="    prune: true\n    prune_max: 1\n",
    )
    dry = await run_cli("sync", "-c", str(plan), "--dry-run", "--report", str(tmp_path / "dry.json"))
    assert dry.code == 0, dry.output
    assert [r["result"] for r in read_report(tmp_path / "dry.json") if "prune" in r["result"]] == [
        "would-prune"
    ]
    assert await tags_at(target.host, unique_repo) == ["0.8.0", "0.9.0", "custom"]

    result = await run_cli("sync", "-c", str(plan))
    assert result.code == 0, result.output
    # One pruned (prune_max), 'custom' is outside the semver filter and is never touched.
    left = await tags_at(target.host, unique_repo)
    assert "1.0.0" in left
    assert "custom" in left
    assert len([t for t in left if t.startswith("0.")]) == 1


BAD_PLANS = {
    "yaml-syntax": ("version: 1\nsync:\n  - source: [unclosed\n", ":4: invalid YAML"),
    "unknown-key": (
        "version: 1\nsync:\n  - source: {src}/x\n    target: {dst}/x\n    colour: red\n",
        ":5: sync[0].colour",
    ),
    "bad-regex": (
        "version: 1\nsync:\n  - source: {src}/x\n    target: {dst}/x\n    tags:\n"
        "      include: ['(unclosed']\n",
        ":6: sync[0].tags.include",
    ),
    "bad-semver": (
        "version: 1\nsync:\n  - source: {src}/x\n    target: {dst}/x\n    tags:\n      semver: '>=1.x.y'\n",
        ":6: sync[0].tags.semver",
    ),
    "bad-reference": (
        "version: 1\nsync:\n  - source: {src}/Bad_Name\n    target: {dst}/x\n",
        ":3: sync[0].source",
    ),
    "missing-secret": (
        "version: 1\nregistries:\n  {src}:\n    tls: false\n    auth:\n      username: u\n"
        "      password_file: /nonexistent/secret\nsync:\n  - source: {src}/x\n"
        "    target: {dst}/x\n",
        ":7: registries[{src}].auth.password_file",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_PLANS))
async def test_bad_plans_exit_2_naming_line_and_key_and_push_nothing(
    case: str, plain_registry: RegistryServer, registry_factory: object, tmp_path: Path
) -> None:
    target = registry_factory("plain")  # type: ignore[operator]
    await seed(plain_registry.host, "x", images("latest"))
    body, expected = BAD_PLANS[case]
    fill = {"src": plain_registry.host, "dst": target.host}
    plan = tmp_path / "mirrord.yaml"
    plan.write_text(body.format(**fill))
    for command in (["check"], ["sync"]):
        result = await run_cli(*command, "-c", str(plan))
        assert result.code == 2, (case, command, result.output)
        assert f"mirrord.yaml{expected.format(**fill)}" in result.stderr, result.stderr
    assert await tags_at(target.host, "x") == []


async def test_check_prints_the_resolved_plan_without_secrets(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("hunter2-very-secret\n")
    plan = write_plan(
        tmp_path / "plan.yaml",
        f"""
        version: 1
        registries:
          registry.example.com:
            auth: {{username: alice, password_file: {secret}}}
        defaults:
          target_prefix: mirror.example.com/m
        sync:
          - source: nginx
            tags: [stable]
        """,
    )
    result = await run_cli("check", "-c", str(plan))
    assert result.code == 0, result.output
    assert "docker.io/library/nginx" in result.stdout
    assert "mirror.example.com/m/docker.io/library/nginx" in result.stdout
    assert "hunter2" not in result.output


async def test_copy_with_platform_filter_keeps_exactly_that_platform(
    plain_registry: RegistryServer, registry_factory: object, unique_repo: str
) -> None:
    target = registry_factory("plain")  # type: ignore[operator]
    await seed(plain_registry.host, unique_repo, images("multi"))
    result = await run_cli(
        "copy",
        plain_registry.ref(f"{unique_repo}:multi"),
        target.ref(f"{unique_repo}:arm"),
        "--platform",
        "linux/arm64",
    )
    assert result.code == 0, result.output
    index = json.loads(skopeo_inspect_raw(target, target.ref(f"{unique_repo}:arm")))
    platforms = {(m["platform"]["os"], m["platform"]["architecture"]) for m in index["manifests"]}
    assert platforms == {("linux", "arm64")}
    assert "rewritten" in result.stdout
    assert await digest_at(target.host, unique_repo, "arm") is not None


async def test_state_dir_lets_a_new_process_mount_instead_of_upload(
    plain_registry: RegistryServer, registry_factory: object, unique_repo: str, tmp_path: Path
) -> None:
    target = registry_factory("plain")  # type: ignore[operator]
    await seed(plain_registry.host, unique_repo, images("1.0"))
    state = tmp_path / "state"
    for n in (1, 2):
        plan = write_plan(
            tmp_path / f"plan{n}.yaml",
            f"""
version: 1
{registries_yaml([plain_registry.host, target.host])}
sync:
  - source: {plain_registry.host}/{unique_repo}
    target: {target.host}/copy{n}/{unique_repo}
    tags: ['1.0']
""",
        )
        result = await run_cli("-v", "sync", "-c", str(plan), "--state-dir", str(state))
        assert result.code == 0, result.output
        outcomes = [json.loads(line)["msg"] for line in result.stderr.splitlines() if '"blob ' in line]
        if n == 1:
            assert outcomes
            assert set(outcomes) == {"blob copied"}
        else:
            # The first process recorded where each blob lives; this one mounts every blob.
            assert set(outcomes) == {"blob mounted"}, outcomes
    assert (state / "locations.json").is_file()


async def test_short_names_resolve_through_search_registries_in_order(
    plain_registry: RegistryServer, registry_factory: object, tmp_path: Path
) -> None:
    second = registry_factory("plain")  # type: ignore[operator]
    target = registry_factory("plain")  # type: ignore[operator]
    await seed(plain_registry.host, "shortname/app", images("1.0"))
    await seed(second.host, "shortname/app", images("1.0", seed_base=40))
    plan = write_plan(
        tmp_path / "plan.yaml",
        f"""
version: 1
{registries_yaml([plain_registry.host, second.host, target.host])}
sync:
  - source: shortname/app:1.0
    target: {target.host}/resolved/app
    search_registries: ['{second.host}', '{plain_registry.host}']
""",
    )
    result = await run_cli("sync", "-c", str(plan), "--report", str(tmp_path / "r.json"))
    assert result.code == 0, result.output
    # Both registries hold it: the first in search order wins, with a warning naming the other.
    warning = next(json.loads(line) for line in result.stderr.splitlines() if "ambiguous short name" in line)
    assert warning["using"] == f"{second.host}/shortname/app"
    assert warning["also"] == [f"{plain_registry.host}/shortname/app"]
    assert await digest_at(target.host, "resolved/app", "1.0") == await digest_at(
        second.host, "shortname/app", "1.0"
    )
