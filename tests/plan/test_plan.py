"""The sync plan loader: the contract's example, defaults, target naming, every error kind, secrets."""

from __future__ import annotations

import pickle
import re
import textwrap
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from mirrord.oci import Digest, Platform
from mirrord.plan import (
    Entry,
    Plan,
    PlanError,
    ServerConfig,
    TargetConfig,
    check_secrets,
    load_plan,
    parse_plan,
    plan_to_dict,
)
from mirrord.plan.tags import SemverRange
from mirrord.registry.settings import CredentialSpec, RegistrySettings, TLSSettings

REPO = Path(__file__).resolve().parents[2]
DIGEST = "sha256:" + "01" * 32

CONTRACT_EXAMPLE = rf"""
version: 1

registries:                  # per-host settings
  docker.io:
    auth:
      username: alice
      password_file: /run/secrets/hub-token     # or password_env: HUB_TOKEN
    requests_per_second: 20
    max_connections: 16
  mirror.example.com:
    auth: {{docker_config: /etc/mirrord/docker-config.json}}
    tls: {{ca_file: /etc/mirrord/ca.pem}}
  127.0.0.1:5000:
    tls: false

defaults:
  interval: 6h
  platforms: all
  target_prefix: mirror.example.com/mirror
  search_registries: [docker.io]

sync:
  - name: nginx
    source: docker.io/library/nginx
    targets:
      - mirror.example.com/hub/library/nginx
      - oci:/srv/airgap/nginx
    tags:
      include: ['^1\.2[7-9]\.', '^stable$']
      exclude: ['-perl$']
      semver: '>=1.27.0 <2'
      latest: 5
    platforms: [linux/amd64, linux/arm64]
    interval: 30m
  - source: quay.io/prometheus/node-exporter:v1.8.2
    target: mirror.example.com/quay/prometheus/node-exporter
  - source: docker.io/library/alpine@{DIGEST}
    target: mirror.example.com/hub/library/alpine:3.20-pinned

server:
  listen: 0.0.0.0:9402
"""


def plan_of(text: str) -> Plan:
    return parse_plan(textwrap.dedent(text).lstrip("\n"), "mirrord.yaml")


def test_contract_example_loads() -> None:
    plan = parse_plan(CONTRACT_EXAMPLE, "mirrord.yaml")
    assert [e.name for e in plan.entries] == [
        "nginx",
        "quay.io/prometheus/node-exporter:v1.8.2",
        f"docker.io/library/alpine@{DIGEST}",
    ]
    nginx = plan.entry("nginx")
    assert nginx.source == "docker.io/library/nginx"
    assert nginx.targets == (
        TargetConfig(ref="mirror.example.com/hub/library/nginx"),
        TargetConfig(ref="oci:/srv/airgap/nginx", format="oci"),
    )
    assert nginx.tags is not None
    assert [p.pattern for p in nginx.tags.include] == [r"^1\.2[7-9]\.", "^stable$"]
    assert nginx.tags.semver == SemverRange.parse(">=1.27.0 <2")
    assert nginx.tags.latest == 5
    assert nginx.platforms == (Platform("linux", "amd64"), Platform("linux", "arm64"))
    assert nginx.interval == 1800
    assert nginx.search_registries == ("docker.io",)
    assert nginx.tags.select(["1.27.0", "1.27.0-perl", "1.26.9", "stable", "1.28.0-rc.1"]) == ["1.27.0"]

    exporter = plan.entries[1]
    assert (exporter.source, exporter.tag, exporter.tags, exporter.interval) == (
        "quay.io/prometheus/node-exporter",
        "v1.8.2",
        None,
        6 * 3600,
    )
    assert exporter.platforms is None
    alpine = plan.entries[2]
    assert alpine.digest == Digest.parse(DIGEST)
    assert alpine.tag is None
    assert alpine.targets == (TargetConfig(ref="mirror.example.com/hub/library/alpine", tag="3.20-pinned"),)

    hub = plan.registries["docker.io"]
    assert hub.auth == CredentialSpec(username="alice", password_file="/run/secrets/hub-token")
    assert (hub.requests_per_second, hub.max_connections, hub.chunk_size) == (20, 16, None)
    mirror = plan.registries["mirror.example.com"]
    assert mirror.tls == TLSSettings(ca_file="/etc/mirrord/ca.pem")
    assert mirror.auth.docker_config == "/etc/mirrord/docker-config.json"
    assert plan.registries["127.0.0.1:5000"].tls.enabled is False
    assert plan.server == ServerConfig("0.0.0.0", 9402, None)


def test_example_config_loads() -> None:
    plan = load_plan(REPO / "config" / "mirrord.yaml")
    assert plan.entries
    assert plan.path.endswith("mirrord.yaml")


def test_demo_config_loads() -> None:
    plan = load_plan(REPO / "config" / "demo.yaml")
    app = plan.entry("app")
    assert app.targets == (TargetConfig(ref="127.0.0.1:5902/mirror/127.0.0.1_5901/demo/app"),)
    assert plan.entry("app-arm64").targets[1] == TargetConfig(ref="oci:.demo/layout", format="oci")


def test_defaults_merge_and_entry_overrides() -> None:
    plan = plan_of(
        """
        version: 1
        defaults:
          interval: 1h30m
          platforms: [linux/amd64]
          targets: [mirror.example.com/common]
          artifacts: false
          format: oci
          prune: true
          prune_max: 3
          require_signatures: true
          recheck_artifacts: true
          tags: {semver: '^1'}
        sync:
          - source: example.com/a
          - source: example.com/b
            interval: 90
            platforms: all
            target: {ref: mirror.example.com/b, artifacts: true, compression: zstd}
            prune: false
            tags: [stable]
          - source: example.com/c:1.0.0
            target: mirror.example.com/c  # not the defaults' target, which entry a prunes (issue 14)
        """
    )
    a, b, c = plan.entries
    assert a.interval == 5400
    assert a.platforms == (Platform("linux", "amd64"),)
    assert a.targets == (TargetConfig("mirror.example.com/common", None, "oci", "keep", False),)
    assert (a.prune, a.prune_max, a.require_signatures, a.recheck_artifacts) == (True, 3, True, True)
    assert b.recheck_artifacts is True  # from the defaults
    assert a.tags is not None
    assert a.tags.semver == SemverRange.parse("^1")
    assert b.interval == 90
    assert b.platforms is None
    assert b.targets == (TargetConfig("mirror.example.com/b", None, "oci", "zstd", True),)
    assert b.prune is False
    assert b.tags is not None
    assert b.tags.exact == ("stable",)
    # A one-tag source ignores the defaults' tags and prune instead of failing.
    assert (c.tag, c.tags, c.prune) == ("1.0.0", None, False)


@pytest.mark.parametrize(
    ("source", "prefix", "target"),
    [
        (
            "127.0.0.1:5000/team/app",
            "mirror.example.com/mirror",
            "mirror.example.com/mirror/127.0.0.1_5000/team/app",
        ),
        ("Registry.Example.COM:443/x", "mirror.example.com", "mirror.example.com/registry.example.com_443/x"),
        ("nginx", "mirror.example.com/m", "mirror.example.com/m/docker.io/library/nginx"),
        ("quay.io/a/b:v1", "localhost:5000/m/", "localhost:5000/m/quay.io/a/b"),
        ("ghcr.io/o/r", "oci:/srv/airgap", "oci:/srv/airgap/ghcr.io/o/r"),
    ],
)
def test_target_prefix_naming(source: str, prefix: str, target: str) -> None:
    plan = plan_of(
        f"""
        version: 1
        defaults: {{target_prefix: '{prefix}'}}
        sync: [{{source: '{source}'}}]
        """
    )
    layout = target.startswith("oci:")
    assert plan.entries[0].targets == (TargetConfig(ref=target, format="oci" if layout else "keep"),)


def test_a_layout_target_defaults_to_oci_format_unless_told() -> None:
    # skopeo and podman find a tag in a layout only on an OCI manifest or index (product.md: default
    # `oci` for oci: layouts); an explicit format, on the target or in defaults, still wins.
    plan = plan_of(
        """
        version: 1
        sync:
          - name: a
            source: r.io/x/a
            targets: [oci:/srv/a, r2.io/x/a, {ref: 'oci:/srv/k', format: keep}]
          - name: b
            source: r.io/x/b
            target: oci:/srv/b
            format: docker
        """
    )
    assert [t.format for t in plan.entry("a").targets] == ["oci", "keep", "keep"]
    assert [t.format for t in plan.entry("b").targets] == ["docker"]


def test_short_names_and_search_registries() -> None:
    plan = plan_of(
        """
        version: 1
        defaults: {target_prefix: mirror.example.com/m, search_registries: [Quay.IO, docker.io]}
        sync: [{source: 'nginx:1.27'}, {source: docker.io/library/redis}]
        """
    )
    nginx, redis = plan.entries
    assert (nginx.name, nginx.source, nginx.source_is_short, nginx.tag) == (
        "nginx:1.27",
        "docker.io/library/nginx",
        True,
        "1.27",
    )
    assert nginx.search_registries == ("quay.io", "docker.io")
    assert redis.source_is_short is False


def test_registry_settings() -> None:
    plan = plan_of(
        """
        version: 1
        registries:
          localhost:5000: {}
          127.0.0.1:5001: {tls: true}
          Registry.Example.com:
            tls: {verify: false, client_cert: /c.pem, client_key: /k.pem}
            auth: {username: bob, password_env: REG_TOKEN}
            requests_per_second: 2.5
            max_connections: 4
            chunk_size: 5MiB
          index.docker.io:
            chunk_size: 1048576
        """
    )
    assert plan.entries == ()
    assert plan.registries["localhost:5000"].tls.enabled is False  # loopback default, as if unlisted
    assert plan.registries["127.0.0.1:5001"].tls.enabled is True
    reg = plan.registries["registry.example.com"]
    assert reg == RegistrySettings(
        host="registry.example.com",
        tls=TLSSettings(verify=False, client_cert="/c.pem", client_key="/k.pem"),
        auth=CredentialSpec(username="bob", password_env="REG_TOKEN"),
        requests_per_second=2.5,
        max_connections=4,
        chunk_size=5 * 2**20,
    )
    assert plan.registries["docker.io"].chunk_size == 2**20


@pytest.mark.parametrize(
    ("listen", "host", "port"),
    [("127.0.0.1:8080", "127.0.0.1", 8080), (":9000", "0.0.0.0", 9000), ("[::]:9402", "::", 9402)],
)
def test_server(listen: str, host: str, port: int) -> None:
    plan = plan_of(f"version: 1\nserver: {{listen: '{listen}', trigger_token_file: /run/token}}\n")
    assert plan.server == ServerConfig(host, port, "/run/token")
    assert plan.server.listen == listen.replace(":9000", "0.0.0.0:9000")


def test_a_tag_list_keeps_its_order_and_drops_repeats() -> None:
    plan = plan_of(
        """
        version: 1
        sync:
          - source: example.com/a
            tags: [b, a, "1.0", b, 1.0]
            target: mirror.example.com/a
        """
    )
    assert plan.entries[0].tags is not None
    assert plan.entries[0].tags.exact == ("b", "a", "1.0")


def test_yaml_merge_keys_and_raw_scalars() -> None:
    plan = plan_of(
        """
        version: 1
        sync:
          - source: example.com/a
            tags: [1.20, 1.10, yes, 010]
            target: mirror.example.com/a
        """
    )
    assert plan.entries[0].tags is not None
    assert plan.entries[0].tags.exact == ("1.20", "1.10", "yes", "010")
    merged = plan_of(
        """
        version: 1
        sync:
          - &base
            source: example.com/a
            target: mirror.example.com/a
            interval: 1d
          - <<: *base
            source: example.com/b
            target: mirror.example.com/b  # one target repository per entry (issue 14)
        """
    )
    assert merged.entries[1].interval == 86400
    assert merged.entries[1].source == "example.com/b"


def test_entry_lookup() -> None:
    plan = parse_plan(CONTRACT_EXAMPLE, "p.yaml")
    with pytest.raises(KeyError):
        plan.entry("nope")
    assert isinstance(plan.entry("nginx"), Entry)


# -- errors: the exact message, file, line and key ---------------------------------------------------

ERROR_CASES = [
    pytest.param(
        "version: 1\nsync:\n  - source: [a\n",
        "mirrord.yaml:4: invalid YAML: expected ',' or ']', but got '<stream end>' "
        "(while parsing a flow sequence at line 3)",
        id="yaml syntax",
    ),
    pytest.param(
        "version: 1\nsync: []\n\tserver: {}\n",
        "mirrord.yaml:3: invalid YAML: found character '\\t' that cannot start any token "
        "(while scanning for the next token)",
        id="yaml tab",
    ),
    pytest.param(
        "version: 1\n---\nversion: 1\n",
        "mirrord.yaml:2: invalid YAML: but found another document "
        "(expected a single document in the stream at line 1)",
        id="two documents",
    ),
    pytest.param(
        "version: 1\nsync: *nope\n", "mirrord.yaml:2: invalid YAML: found undefined alias 'nope'", id="alias"
    ),
    pytest.param("", "mirrord.yaml: the plan is empty (it needs at least 'version: 1')", id="empty"),
    pytest.param("- 1\n", "mirrord.yaml:1: expected a mapping, got a list", id="root not a mapping"),
    pytest.param(
        "sync: []\n", "mirrord.yaml:1: version: missing: a plan starts with 'version: 1'", id="no version"
    ),
    pytest.param(
        "version: 2\nfuture_key: 1\n",
        "mirrord.yaml:1: version: unsupported plan version 2 (this mirrord reads version 1)",
        id="version 2",
    ),
    pytest.param(
        "version: '1'\n", "mirrord.yaml:1: version: expected an integer, got a string", id="version str"
    ),
    pytest.param(
        "version: 1\nversion: 1\n",
        "mirrord.yaml:2: version: duplicate key (first at line 1)",
        id="duplicate key",
    ),
    pytest.param(
        "version: 1\nsyncs: []\n",
        "mirrord.yaml:2: syncs: unknown key (expected one of: version, registries, defaults, sync, server, "
        "policy)",
        id="unknown top key",
    ),
    pytest.param(
        "version: 1\nsync:\n  - source: a.io/b\n    target: c.io/d\n    tags:\n      includes: [x]\n",
        "mirrord.yaml:6: sync[0].tags.includes: unknown key (expected one of: include, exclude, semver, "
        "latest)",
        id="unknown tags key",
    ),
    pytest.param(
        "version: 1\nregistries:\n  docker.io:\n    auth: {user: x}\n",
        "mirrord.yaml:4: registries[docker.io].auth.user: unknown key "
        "(expected one of: username, password_file, password_env, password, docker_config)",
        id="unknown auth key",
    ),
    pytest.param(
        "version: 1\nsync:\n  - source: a.io/b\n    targets:\n      - {ref: c.io/d, formt: oci}\n",
        "mirrord.yaml:5: sync[0].targets[0].formt: unknown key (expected one of: ref, format, compression, "
        "artifacts, artifact_types, sign)",
        id="unknown target key",
    ),
    pytest.param(
        "version: 1\nserver: {port: 1}\n",
        "mirrord.yaml:2: server.port: unknown key (expected one of: listen, trigger_token_file)",
        id="unknown server key",
    ),
    pytest.param(
        "version: 1\nsync:\n  - source: a.io/b\n    target: c.io/d\n    tags: {include: ['(unclosed']}\n",
        "mirrord.yaml:5: sync[0].tags.include[0]: '(unclosed' is not a regular expression "
        "(missing ), unterminated subpattern)",
        id="bad regex",
    ),
    pytest.param(
        "version: 1\nsync:\n  - source: a.io/b\n    target: c.io/d\n    tags: {semver: '^1 <x'}\n",
        "mirrord.yaml:5: sync[0].tags.semver: '^1 <x' is not a version range (a wildcard after '<' is "
        "ambiguous)",
        id="bad semver",
    ),
    pytest.param(
        "version: 1\nsync:\n  - source: a.io/B\n    target: c.io/d\n",
        "mirrord.yaml:3: sync[0].source: invalid reference 'a.io/B': repository component 'B' must be "
        "lowercase",
        id="bad source reference",
    ),
    pytest.param(
        "version: 1\nsync:\n  - source: a.io/b\n    targets: [c.io/d, 'c.io/e:bad tag']\n",
        "mirrord.yaml:4: sync[0].targets[1]: invalid reference 'c.io/e:bad tag': "
        "tag 'bad tag' must match [A-Za-z0-9_][A-Za-z0-9_.-]*",
        id="bad target reference",
    ),
    pytest.param(
        f"version: 1\nsync:\n  - source: a.io/b:1\n    target: c.io/d@{DIGEST}\n",
        f"mirrord.yaml:4: sync[0].target: 'c.io/d@{DIGEST}': a target cannot name a digest "
        "(the digest comes from the source)",
        id="target digest",
    ),
    pytest.param(
        "version: 1\nsync:\n  - source: a.io/b\n    target: c.io/d\n    platforms: [linux/amd64, linux]\n",
        "mirrord.yaml:5: sync[0].platforms[1]: platform 'linux' is not of the form os/arch[/variant]",
        id="bad platform",
    ),
    pytest.param(
        "version: 1\ndefaults:\n  interval: 6 hours\n",
        "mirrord.yaml:3: defaults.interval: '6 hours' is not a duration ('30s', '30m', '6h', '1d', '1h30m' "
        "or seconds)",
        id="bad duration",
    ),
    pytest.param(
        "version: 1\nsync:\n  - source: a.io/b\n    target: c.io/d\n    interval: 0s\n",
        "mirrord.yaml:5: sync[0].interval: must be longer than 0s",
        id="zero duration",
    ),
    pytest.param(
        "version: 1\nsync:\n  - source: a.io/b\n    target: c.io/d\n  - name: x\n    source: a.io/c\n"
        "    target: c.io/e\n  - name: a.io/b\n    source: a.io/d\n    target: c.io/f\n",
        "mirrord.yaml:8: sync[2].name: entry name 'a.io/b' is already used at line 3 (give each a name:)",
        id="duplicate entry name",
    ),
    pytest.param(
        "version: 1\nsync:\n  - source: a.io/b\n    target: c.io/d\n  - source: a.io/b\n    target: c.io/e\n",
        "mirrord.yaml:5: sync[1].source: entry name 'a.io/b' is already used at line 3 (give each a name:)",
        id="duplicate default name",
    ),
    pytest.param(
        "version: 1\nsync:\n  - source: a.io/b\n",
        "mirrord.yaml:3: sync[0]: an entry needs target:, targets: or defaults.target_prefix",
        id="no target",
    ),
    pytest.param(
        "version: 1\nsync:\n  - target: a.io/b\n",
        "mirrord.yaml:3: sync[0]: an entry needs source:",
        id="no source",
    ),
    pytest.param(
        "version: 1\ndefaults: {target_prefix: m.io/x}\nsync:\n  - source: oci:/srv/x\n",
        "mirrord.yaml:4: sync[0].source: an oci: source has no registry host for target_prefix: give target:",
        id="oci source with prefix",
    ),
    pytest.param(
        "version: 1\ndefaults: {target_prefix: mirror}\n",
        "mirrord.yaml:2: defaults.target_prefix: 'mirror' is not a registry host (HOST[:PORT], with a '.' "
        "or a port)",
        id="prefix without host",
    ),
    pytest.param(
        "version: 1\nsync:\n  - source: a.io/b:1\n    target: c.io/d\n    tags: [x]\n",
        "mirrord.yaml:5: sync[0].tags: the source names one tag or digest, so tags: does not apply (drop "
        "one of them)",
        id="tags with pinned source",
    ),
    pytest.param(
        "version: 1\nsync:\n  - source: a.io/b\n    target: c.io/d:fixed\n",
        "mirrord.yaml:4: sync[0].target: a target tag needs a source that names one tag or digest "
        "(every selected tag would land on it)",
        id="target tag with many tags",
    ),
    pytest.param(
        "version: 1\nsync:\n  - source: a.io/b\n    targets: [a.io/b]\n",
        "mirrord.yaml:4: sync[0].targets[0]: the target is the source",
        id="target is source",
    ),
    pytest.param(
        "version: 1\nsync:\n  - source: a.io/b\n    target: c.io/d\n    targets: [c.io/e]\n",
        "mirrord.yaml:5: sync[0].targets: give target: or targets:, not both",
        id="target and targets",
    ),
    pytest.param(
        "version: 1\nsync:\n  - source: a.io/b\n    target: {ref: c.io/d, compression: brotli}\n",
        "mirrord.yaml:4: sync[0].target.compression: 'brotli' is not one of: keep, zstd, gzip",
        id="bad compression",
    ),
    pytest.param(
        "version: 1\nsync:\n  - source: a.io/b\n    target: c.io/d\n    prune: 'yes'\n",
        "mirrord.yaml:5: sync[0].prune: expected true or false, got a string",
        id="bool type",
    ),
    pytest.param(
        "version: 1\nsync:\n  - source: a.io/b\n    target: c.io/d\n    tags: {latest: 0}\n",
        "mirrord.yaml:5: sync[0].tags.latest: must be at least 1, got 0",
        id="latest zero",
    ),
    pytest.param(
        "version: 1\nsync:\n  - source: a.io/b\n    target: c.io/d\n    tags: []\n",
        "mirrord.yaml:5: sync[0].tags: an empty list selects nothing (leave tags: out to mirror every tag)",
        id="empty tags",
    ),
    # A list of good tags is checked as plain strings; a bad item still gets its own key and line.
    pytest.param(
        "version: 1\nsync:\n  - source: a.io/b\n    target: c.io/d\n    tags:\n      - a\n      - b\n"
        "      - -bad\n",
        "mirrord.yaml:8: sync[0].tags[2]: invalid tag '-bad': must match [A-Za-z0-9_][A-Za-z0-9_.-]*",
        id="bad tag in a list",
    ),
    pytest.param(
        "version: 1\nsync:\n  - source: a.io/b\n    target: c.io/d\n    tags: [a, '']\n",
        "mirrord.yaml:5: sync[0].tags[1]: must not be empty",
        id="empty tag in a list",
    ),
    pytest.param(
        "version: 1\nsync:\n  - source: a.io/b\n    target: c.io/d\n    tags: [a, ~]\n",
        "mirrord.yaml:5: sync[0].tags[1]: expected a string, got null",
        id="null tag in a list",
    ),
    pytest.param(
        "version: 1\nsync:\n  - source: a.io/b\n    target: c.io/d\n    tags: [a, [b]]\n",
        "mirrord.yaml:5: sync[0].tags[1]: expected a string, got a list",
        id="list in a tag list",
    ),
    pytest.param(
        "version: 1\nregistries:\n  docker.io: {max_connections: many}\n",
        "mirrord.yaml:3: registries[docker.io].max_connections: expected an integer, got a string",
        id="int type",
    ),
    pytest.param(
        "version: 1\nregistries:\n  docker.io: {tls: [a]}\n",
        "mirrord.yaml:3: registries[docker.io].tls: expected false, true or a mapping of "
        "ca_file, client_cert, client_key, verify, got a list",
        id="tls type",
    ),
    pytest.param(
        "version: 1\nregistries:\n  docker.io: {}\n  Docker.IO: {}\n",
        "mirrord.yaml:4: registries[Docker.IO]: the registry 'docker.io' again (first at line 3)",
        id="duplicate registry",
    ),
    pytest.param(
        "version: 1\nregistries:\n  myregistry: {}\n",
        "mirrord.yaml:3: registries[myregistry]: 'myregistry' is not a registry host (HOST[:PORT], with a "
        "'.' or a port)",
        id="bad host",
    ),
    pytest.param(
        "version: 1\nregistries:\n  a.io:\n    auth: {username: u, password_file: /f, password_env: E}\n",
        "mirrord.yaml:4: registries[a.io].auth.password_env: give one password source, not password_file "
        "and password_env",
        id="two password sources",
    ),
    pytest.param(
        "version: 1\nregistries:\n  a.io:\n    auth:\n      username: u\n",
        "mirrord.yaml:5: registries[a.io].auth: username needs password_file, password_env or password",
        id="username alone",
    ),
    pytest.param(
        "version: 1\nregistries:\n  a.io: {tls: {client_cert: /c}}\n",
        "mirrord.yaml:3: registries[a.io].tls: client_cert and client_key go together: client_key is missing",
        id="client cert alone",
    ),
    pytest.param(
        "version: 1\nserver: {listen: 'host:99999'}\n",
        "mirrord.yaml:2: server.listen: port 99999 is out of range (0-65535)",
        id="bad port",
    ),
    pytest.param(
        "version: 1\nregistries:\n  a.io: {chunk_size: 5 parsecs}\n",
        "mirrord.yaml:3: registries[a.io].chunk_size: '5 parsecs' is not a size in bytes (an integer, or "
        "like '5MiB')",
        id="bad size",
    ),
    pytest.param(
        "version: 1\nsync:\n  - source: a.io/b\n    target: c.io/d\n    platforms: []\n",
        "mirrord.yaml:5: sync[0].platforms: an empty list selects nothing (write 'all' or name platforms)",
        id="empty platforms",
    ),
    pytest.param(
        "version: 1\nsync:\n  ? [a]\n  : b\n",
        "mirrord.yaml:3: sync: expected a list, got a mapping",
        id="sync not a list",
    ),
    pytest.param(
        "version: 1\nregistries:\n  ? [a]\n  : b\n",
        "mirrord.yaml:3: registries: keys must be strings",
        id="non-scalar key",
    ),
]


@pytest.mark.parametrize(("text", "message"), ERROR_CASES)
def test_errors_name_file_line_and_key(text: str, message: str) -> None:
    with pytest.raises(PlanError) as info:
        parse_plan(text, "mirrord.yaml")
    assert str(info.value) == message


def test_contract_error_example() -> None:
    """The product contract's own example: line 14, sync[2].tags.semver, '>=1.x'."""
    text = textwrap.dedent(
        """\
        version: 1
        defaults:
          target_prefix: mirror.example.com/m
        sync:
          - source: a.io/one
          - source: a.io/two
            tags: [stable]
          - name: three
            source: a.io/three
            platforms: all
            interval: 1h
            tags:
              include: ['^1\\.']
              semver: '>=1.x'
        """
    )
    with pytest.raises(PlanError) as info:
        parse_plan(text, "mirrord.yaml")
    err = info.value
    assert (err.path, err.line, err.key) == ("mirrord.yaml", 14, "sync[2].tags.semver")
    assert str(err).startswith("mirrord.yaml:14: sync[2].tags.semver: '>=1.x' is not a version range")
    assert err.message == "'>=1.x' is not a version range (a wildcard after '>=' is ambiguous: write '>=1')"


def test_plan_error_pickles() -> None:
    err = PlanError("p.yaml", 3, "sync[0]", "bad")
    copy = pickle.loads(pickle.dumps(err))
    assert (copy.path, copy.line, copy.key, copy.message, str(copy)) == (
        "p.yaml",
        3,
        "sync[0]",
        "bad",
        str(err),
    )
    assert str(PlanError("p.yaml", None, "k", "m")) == "p.yaml: k: m"


def test_load_plan_errors(tmp_path: Path) -> None:
    with pytest.raises(
        PlanError, match=r"^.*missing\.yaml: cannot read the plan: No such file or directory$"
    ):
        load_plan(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(b"version: 1\n\xff\n")
    with pytest.raises(PlanError, match="not UTF-8"):
        load_plan(bad)


# -- secrets -----------------------------------------------------------------------------------------

SECRET_PLAN = """
version: 1
registries:
  a.io:
    auth: {username: u, password: hunter2-secret}
  b.io:
    auth:
      username: u
      password_file: PASSWORD_FILE
  c.io:
    auth: {username: u, password_env: MIRRORD_TEST_TOKEN}
sync:
  - source: a.io/x
    target: b.io/x
server:
  trigger_token_file: TOKEN_FILE
"""


def _secret_plan(tmp_path: Path, *, password_file: str = "pw", token_file: str = "token") -> Plan:
    text = SECRET_PLAN.replace("PASSWORD_FILE", str(tmp_path / password_file))
    text = text.replace("TOKEN_FILE", str(tmp_path / token_file))
    return parse_plan(text, "mirrord.yaml")


def test_secrets_never_in_output_or_repr(tmp_path: Path) -> None:
    plan = _secret_plan(tmp_path)
    dumped = yaml.safe_dump(plan_to_dict(plan))
    for text in (dumped, repr(plan), str(plan), repr(plan.registries)):
        assert "hunter2" not in text
    resolved = plan_to_dict(plan)["registries"]
    assert resolved["a.io"]["auth"] == {"username": "u", "password": "***"}
    assert resolved["b.io"]["auth"]["password_file"] == str(tmp_path / "pw")  # paths are kept
    assert resolved["c.io"]["auth"]["password_env"] == "MIRRORD_TEST_TOKEN"
    assert plan.registries["a.io"].auth.password == "hunter2-secret"  # still usable by the client


def test_secrets_never_in_errors() -> None:
    text = "version: 1\nregistries:\n  a.io:\n    auth: {username: u, password: hunter2, bogus: 1}\n"
    with pytest.raises(PlanError) as info:
        parse_plan(text, "p.yaml")
    assert "hunter2" not in str(info.value)
    with pytest.raises(PlanError) as info:
        parse_plan("version: 1\nregistries:\n  a.io:\n    auth: {password: 'hunter2\n", "p.yaml")
    assert "hunter2" not in str(info.value)


def test_check_secrets_passes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "pw").write_text("secret")
    (tmp_path / "token").write_text("t")
    monkeypatch.setenv("MIRRORD_TEST_TOKEN", "value")
    check_secrets(_secret_plan(tmp_path))


def test_check_secrets_missing_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "token").write_text("t")
    monkeypatch.setenv("MIRRORD_TEST_TOKEN", "value")
    with pytest.raises(PlanError) as info:
        check_secrets(_secret_plan(tmp_path))
    assert str(info.value) == (
        f"mirrord.yaml:9: registries[b.io].auth.password_file: cannot read {str(tmp_path / 'pw')!r}: "
        "No such file or directory"
    )


def test_check_secrets_unset_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "pw").write_text("secret")
    monkeypatch.delenv("MIRRORD_TEST_TOKEN", raising=False)
    with pytest.raises(PlanError) as info:
        check_secrets(_secret_plan(tmp_path))
    assert str(info.value) == (
        "mirrord.yaml:11: registries[c.io].auth.password_env: environment variable MIRRORD_TEST_TOKEN is "
        "not set"
    )
    monkeypatch.setenv("MIRRORD_TEST_TOKEN", "")
    with pytest.raises(PlanError, match="MIRRORD_TEST_TOKEN is empty"):
        check_secrets(_secret_plan(tmp_path))


def test_check_secrets_token_file_is_a_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "pw").write_text("secret")
    (tmp_path / "token").mkdir()
    monkeypatch.setenv("MIRRORD_TEST_TOKEN", "value")
    with pytest.raises(PlanError) as info:
        check_secrets(_secret_plan(tmp_path))
    assert str(info.value) == (
        f"mirrord.yaml:16: server.trigger_token_file: {str(tmp_path / 'token')!r} is a directory, not a file"
    )


def test_check_secrets_unreadable_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A path through a regular file fails for every user, root included (unlike a chmod 0 file).
    (tmp_path / "plain").write_text("x")
    (tmp_path / "token").write_text("t")
    monkeypatch.setenv("MIRRORD_TEST_TOKEN", "value")
    with pytest.raises(PlanError, match=r"password_file: cannot read .*: Not a directory$"):
        check_secrets(_secret_plan(tmp_path, password_file="plain/pw"))


def test_check_secrets_without_origins() -> None:
    plan = Plan(
        path="built.yaml",
        registries={
            "a.io": RegistrySettings("a.io", auth=CredentialSpec(username="u", password_file="/nope/pw"))
        },
    )
    with pytest.raises(PlanError) as info:
        check_secrets(plan)
    assert str(info.value).startswith(
        "built.yaml: registries[a.io].auth.password_file: cannot read '/nope/pw'"
    )


# -- check output ------------------------------------------------------------------------------------


def test_plan_to_dict_round_trips() -> None:
    plan = parse_plan(CONTRACT_EXAMPLE, "mirrord.yaml")
    resolved = plan_to_dict(plan)
    assert resolved["sync"][1] == {
        "name": "quay.io/prometheus/node-exporter:v1.8.2",
        "source": "quay.io/prometheus/node-exporter:v1.8.2",
        "targets": [
            {
                "ref": "mirror.example.com/quay/prometheus/node-exporter",
                "format": "keep",
                "compression": "keep",
                "artifacts": True,
            }
        ],
        "platforms": "all",
        "interval": "6h",
        "search_registries": ["docker.io"],
        "require_signatures": False,
        "recheck_artifacts": False,
    }
    assert "defaults" not in resolved
    again = parse_plan(yaml.safe_dump(resolved, sort_keys=False), "mirrord.yaml")
    assert again == plan


def test_plan_to_dict_keeps_short_names_that_are_searched() -> None:
    plan = plan_of(
        """
        version: 1
        defaults: {target_prefix: m.io/x, search_registries: [quay.io]}
        sync: [{source: 'nginx:1'}, {source: 'team/app', search_registries: []}]
        """
    )
    sources = [e["source"] for e in plan_to_dict(plan)["sync"]]
    assert sources == ["nginx:1", "docker.io/team/app"]
    again = parse_plan(yaml.safe_dump(plan_to_dict(plan)), "mirrord.yaml")
    # Without search registries a short name is just Docker's normalisation: printed normalised.
    assert again.entries == (plan.entries[0], replace(plan.entries[1], source_is_short=False))


def test_inline_password_logs_a_warning_without_it(caplog: pytest.LogCaptureFixture) -> None:
    parse_plan("version: 1\nregistries:\n  a.io:\n    auth: {username: u, password: hunter2}\n", "p.yaml")
    assert any("inline password" in r.getMessage() for r in caplog.records)
    assert not any("hunter2" in r.getMessage() for r in caplog.records)


def test_plan_is_frozen() -> None:
    plan = parse_plan(CONTRACT_EXAMPLE, "mirrord.yaml")
    with pytest.raises(AttributeError):
        plan.entries = ()  # type: ignore[misc]
    with pytest.raises(TypeError):
        plan.registries["x"] = RegistrySettings("x")  # type: ignore[index]
    assert re.fullmatch(r"Plan\(path='mirrord.yaml', .*\)", repr(plan), re.S)


def test_example_config_round_trips() -> None:
    plan = load_plan(REPO / "config" / "mirrord.yaml")
    assert parse_plan(yaml.safe_dump(plan_to_dict(plan)), plan.path) == plan


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30),
        ("30m", 1800),
        ("6h", 21600),
        ("1d", 86400),
        ("1h30m", 5400),
        ("1d2h3m4s", 93784),
        ("500ms", 0.5),
        ("1.5h", 5400),
        ("90", 90),
        ("2.5", 2.5),
    ],
)
def test_durations(text: str, seconds: float) -> None:
    plan = plan_of(f"version: 1\nsync: [{{source: a.io/b, target: c.io/d, interval: {text}}}]\n")
    assert plan.entries[0].interval == seconds
    printed = plan_to_dict(plan)["sync"][0]["interval"]
    again = plan_of(f"version: 1\nsync: [{{source: a.io/b, target: c.io/d, interval: '{printed}'}}]\n")
    assert again.entries[0].interval == seconds


@pytest.mark.parametrize("text", ["6 h", "h", "1h 30m", "-5", "30x", "1:30", "1h30", "'  '"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(PlanError, match=r"^mirrord\.yaml:1: sync\[0\]\.interval: .* is not a duration"):
        plan_of(f"sync: [{{source: a.io/b, target: c.io/d, interval: {text}}}]\nversion: 1\n")
