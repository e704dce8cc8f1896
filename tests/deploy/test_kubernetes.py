"""deploy/kubernetes: every document passes ``kubernetes-validate --strict`` (the oldest and newest
Kubernetes versions it ships schemas for that we support), kustomizations list every file, and the
manifests hold what the daemon's contract needs (probes, non-root read-only container, sharding).

kubernetes-validate ships schemas for built-in kinds only: for a CRD kind it prints a WARN ("Couldn't find
schema") and passes. So the ServiceMonitor is checked here against ``servicemonitor.schema.json``, a
strict subset of the prometheus-operator CRD schema, and the test fails on any other schema-less kind.
The ConfigMap that ``configMapGenerator`` makes is built here the way kustomize builds it and validated
too. Rendering with kustomize itself (``kubectl kustomize``) runs when kubectl is installed; neither
kubectl nor kustomize is packaged in Debian or PyPI, so without it that one test skips (even in CI) and
the file-level checks above still cover every document.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from mirrord.sync.shard import resolve_shard
from tests.deploy.tools import DEPLOY, run_tool, venv_tool

K8S = DEPLOY / "kubernetes"
KUSTOMIZATIONS = sorted(K8S.glob("*/kustomization.yaml"))
VERSIONS = ("1.27.0", "1.37.0")
CRD_KINDS = {"ServiceMonitor"}
SERVICEMONITOR_SCHEMA = Path(__file__).with_name("servicemonitor.schema.json")


def load_all(path: Path) -> list[dict[str, Any]]:
    """Every non-empty YAML document in ``path``."""
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def kustomization(directory: Path) -> dict[str, Any]:
    body: dict[str, Any] = yaml.safe_load((directory / "kustomization.yaml").read_text())
    return body


def resource_files(directory: Path) -> list[Path]:
    """The files a kustomization's ``resources:`` names, following directories to their own resources."""
    out: list[Path] = []
    for entry in kustomization(directory).get("resources", []):
        path = (directory / entry).resolve()
        out += resource_files(path) if path.is_dir() else [path]
    return out


def generated_configmaps(directory: Path) -> list[dict[str, Any]]:
    """The ConfigMaps ``configMapGenerator`` makes from ``files:`` (before kustomize's name hash)."""
    out = []
    for gen in kustomization(directory).get("configMapGenerator", []):
        data = {Path(f).name: (directory / f).read_text() for f in gen.get("files", [])}
        out.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": gen["name"]}, "data": data})
    return out


def all_documents() -> list[Path]:
    files = {p for d in KUSTOMIZATIONS for p in resource_files(d.parent)}
    return sorted(files)


def kubernetes_validate(paths: list[Path], version: str) -> None:
    """Run the tool; fail on any error, and on any schema-less kind other than the known CRDs."""
    ran = run_tool([venv_tool("kubernetes-validate"), "--strict", "-k", version, *map(str, paths)])
    assert ran.code == 0, ran.output
    for line in ran.output.splitlines():
        if line.startswith("INFO"):
            continue
        assert line.startswith("WARN"), ran.output
        assert any(f"kind {kind} " in line for kind in CRD_KINDS), line


def test_there_are_a_base_and_a_sharded_variant() -> None:
    assert [p.parent.name for p in KUSTOMIZATIONS] == ["base", "sharded"]


@pytest.mark.integration
@pytest.mark.parametrize("version", VERSIONS)
def test_every_document_passes_kubernetes_validate(version: str, tmp_path: Path) -> None:
    generated = tmp_path / "generated.yaml"
    generated.write_text(
        yaml.safe_dump_all([c for d in KUSTOMIZATIONS for c in generated_configmaps(d.parent)])
    )
    kubernetes_validate([*all_documents(), generated], version)


@pytest.mark.integration
def test_kubernetes_validate_rejects_a_broken_manifest(tmp_path: Path) -> None:
    # Shows the tool is really judging, strictly: an unknown field in the pod template fails.
    (deployment,) = load_all(K8S / "base" / "deployment.yaml")
    deployment["spec"]["template"]["spec"]["containers"][0]["securityContex"] = {}
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(deployment))
    ran = run_tool([venv_tool("kubernetes-validate"), "--strict", str(bad)])
    assert ran.code != 0
    assert "securityContex" in ran.output


def _servicemonitors() -> list[dict[str, Any]]:
    return [d for p in all_documents() for d in load_all(p) if d["kind"] == "ServiceMonitor"]


def test_servicemonitor_matches_the_crd_schema_subset() -> None:
    schema = json.loads(SERVICEMONITOR_SCHEMA.read_text())
    (monitor,) = _servicemonitors()
    jsonschema.validate(monitor, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**monitor, "spec": {**monitor["spec"], "endpoint": []}}, schema)


@pytest.mark.parametrize("directory", [p.parent for p in KUSTOMIZATIONS], ids=lambda p: p.name)
def test_kustomization_lists_every_file(directory: Path) -> None:
    body = kustomization(directory)
    listed = {(directory / r).resolve() for r in body.get("resources", [])}
    listed |= {(directory / f).resolve() for g in body.get("configMapGenerator", []) for f in g["files"]}
    for path in listed:
        assert path.exists(), path
        if path.is_dir():
            assert (path / "kustomization.yaml").is_file(), path
    present = {p.resolve() for p in directory.iterdir() if p.suffix in (".yaml", ".yml")}
    present.discard((directory / "kustomization.yaml").resolve())
    assert present - listed == set(), "files the kustomization does not list"


def _docs(directory: str) -> dict[str, dict[str, Any]]:
    return {
        d["kind"]: d for p in sorted((K8S / directory).glob("*.yaml")) for d in load_all(p) if "kind" in d
    }


def _pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = workload["spec"]["template"]["spec"]
    return spec


def test_the_sharded_variant_replaces_the_deployment() -> None:
    (patch,) = kustomization(K8S / "sharded")["patches"]
    deleted = yaml.safe_load(patch["patch"])
    assert deleted["$patch"] == "delete"
    base = _docs("base")
    assert (deleted["kind"], deleted["metadata"]["name"]) == (
        "Deployment",
        base["Deployment"]["metadata"]["name"],
    )
    assert patch["target"]["kind"] == "Deployment"


def test_the_statefulset_runs_the_same_pod_as_the_deployment() -> None:
    # The two workloads are written out in full (so each validates alone); keep them from drifting.
    deployment, statefulset = _docs("base")["Deployment"], _docs("sharded")["StatefulSet"]
    dep, sts = json.loads(json.dumps(_pod_spec(deployment))), json.loads(json.dumps(_pod_spec(statefulset)))
    sts_env = sts["containers"][0].pop("env")
    dep_env = dep["containers"][0].pop("env")
    assert [e for e in sts_env if e["name"] != "MIRRORD_SHARD"] == dep_env
    dep["volumes"] = [v for v in dep["volumes"] if v["name"] != "state"]
    assert sts == dep
    assert statefulset["spec"]["selector"] == deployment["spec"]["selector"]
    assert statefulset["spec"]["template"]["metadata"] == deployment["spec"]["template"]["metadata"]
    claims = [c["metadata"]["name"] for c in statefulset["spec"]["volumeClaimTemplates"]]
    assert claims == ["state"]


def test_the_shard_count_is_the_replica_count() -> None:
    statefulset = _docs("sharded")["StatefulSet"]
    replicas = statefulset["spec"]["replicas"]
    (env,) = [e for e in _pod_spec(statefulset)["containers"][0]["env"] if e["name"] == "MIRRORD_SHARD"]
    assert env["value"] == f"auto/{replicas}"
    name = statefulset["metadata"]["name"]
    shards = [resolve_shard(env["value"], f"{name}-{k}") for k in range(replicas)]
    assert shards == [(k + 1, replicas) for k in range(replicas)]


@pytest.mark.parametrize("kind", ["Deployment", "StatefulSet"])
def test_pods_are_locked_down_and_probed(kind: str) -> None:
    workload = _docs("base" if kind == "Deployment" else "sharded")[kind]
    pod = _pod_spec(workload)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    (container,) = pod["containers"]
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert {"requests", "limits"} <= set(container["resources"])
    # A read-only root needs writable /tmp and state mounts.
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert {"/tmp", "/var/lib/mirrord", "/etc/mirrord"} <= mounts
    assert container["args"][:2] == ["-c", "/etc/mirrord/mirrord.yaml"]
    assert pod["terminationGracePeriodSeconds"] > float(
        container["args"][container["args"].index("--grace") + 1]
    )
    if kind == "Deployment":
        assert workload["spec"]["replicas"] == 1


def test_selectors_reach_the_pods() -> None:
    docs = _docs("base")
    pod_labels = docs["Deployment"]["spec"]["template"]["metadata"]["labels"]
    selectors = [
        docs["Service"]["spec"]["selector"],
        docs["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"],
        docs["NetworkPolicy"]["spec"]["podSelector"]["matchLabels"],
    ]
    for selector in selectors:
        assert selector.items() <= pod_labels.items()
    assert (
        docs["ServiceMonitor"]["spec"]["selector"]["matchLabels"].items()
        <= docs["Service"]["metadata"]["labels"].items()
    )


def test_the_secret_holds_example_values_only() -> None:
    secret = _docs("base")["Secret"]
    assert "data" not in secret
    assert secret["stringData"]
    for key, value in secret["stringData"].items():
        assert value.startswith("example-"), key


@pytest.mark.integration
def test_the_cluster_plan_passes_mirrord_check() -> None:
    plan = K8S / "base" / "mirrord.yaml"
    env = dict(os.environ, **{k: "example" for k in _docs("base")["Secret"]["stringData"]})
    ran = subprocess.run(
        [sys.executable, "-m", "mirrord", "check", "-c", str(plan)], capture_output=True, env=env, check=False
    )
    assert ran.returncode == 0, ran.stderr.decode()


@pytest.mark.integration
@pytest.mark.parametrize("directory", [p.parent for p in KUSTOMIZATIONS], ids=lambda p: p.name)
def test_kustomize_renders_valid_documents(directory: Path, tmp_path: Path) -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl (kustomize) is not installed and not packaged in Debian or PyPI")
    ran = run_tool([kubectl, "kustomize", str(directory)])
    assert ran.code == 0, ran.output
    rendered = tmp_path / "rendered.yaml"
    rendered.write_text(ran.output)
    docs = load_all(rendered)
    kinds = sorted(d["kind"] for d in docs)
    workload = "Deployment" if directory.name == "base" else "StatefulSet"
    expected = ["ConfigMap", "NetworkPolicy", "PodDisruptionBudget", "Secret", "Service", "ServiceAccount"]
    assert kinds == sorted([*expected, "ServiceMonitor", workload])
    (configmap,) = [d for d in docs if d["kind"] == "ConfigMap"]
    (pod,) = [_pod_spec(d) for d in docs if d["kind"] == workload]
    assert [v["configMap"]["name"] for v in pod["volumes"] if "configMap" in v] == [
        configmap["metadata"]["name"]
    ]
    for version in VERSIONS:
        kubernetes_validate([rendered], version)
