"""Metrics: the contract names and labels, event mapping, and a valid exposition."""

from __future__ import annotations

import os
import shutil
import subprocess
from typing import Any

import pytest
from prometheus_client import REGISTRY
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.parser import text_string_to_metric_families

from mirrord import __version__
from mirrord.core.events import (
    BlobDone,
    BytesTransferred,
    EventBus,
    HttpRequestDone,
    ImageDone,
    ImageFailed,
    ImageStarted,
    ManifestPushed,
    RateLimitObserved,
    RetryScheduled,
    TransferFinished,
    TransferStarted,
)
from mirrord.observe.metrics import CONTENT_TYPE, Metrics

DIGEST = "sha256:" + "ab" * 32

CONTRACT = {
    "mirrord_sync_runs": ("counter", {"entry", "result"}),
    "mirrord_images": ("counter", {"entry", "result"}),
    "mirrord_blobs": ("counter", {"entry", "outcome"}),
    "mirrord_transferred_bytes": ("counter", {"registry", "direction"}),
    "mirrord_http_requests": ("counter", {"registry", "method", "code"}),
    "mirrord_http_request_duration_seconds": ("histogram", {"registry", "method"}),
    "mirrord_retries": ("counter", {"registry", "reason"}),
    "mirrord_sync_duration_seconds": ("histogram", {"entry"}),
    "mirrord_last_success_timestamp_seconds": ("gauge", {"entry"}),
    "mirrord_inflight_transfers": ("gauge", set()),
    "mirrord_ratelimit_remaining": ("gauge", {"registry"}),
    "mirrord_build_info": ("gauge", {"version"}),
    "mirrord_config_reload_success": ("gauge", set()),
    "mirrord_config_reload_timestamp_seconds": ("gauge", set()),
}


def samples(metrics: Metrics) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of the exposition, keyed by (sample name, labels)."""
    out = {}
    for family in text_string_to_metric_families(metrics.render().decode()):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(metrics: Metrics, name: str, **labels: str) -> float | None:
    return samples(metrics).get((name, frozenset(labels.items())))


def feed_everything(metrics: Metrics) -> None:
    """One of every event, as a pass over entry 'nginx' would emit them."""
    for event in (
        ImageStarted("nginx", "docker.io/library/nginx:1.27", ("mirror.example.com/hub/nginx",)),
        TransferStarted(DIGEST, 10),
        BytesTransferred("registry-1.docker.io", "pulled", 10),
        BytesTransferred("mirror.example.com", "pushed", 10),
        TransferFinished(DIGEST, True),
        BlobDone("nginx", "mirror.example.com", "hub/nginx", DIGEST, 10, "copied"),
        BlobDone("nginx", "mirror.example.com", "hub/nginx", DIGEST, 10, "mounted"),
        ManifestPushed("nginx", "mirror.example.com", "hub/nginx", "1.27", DIGEST, "application/x"),
        ImageDone("nginx", "docker.io/library/nginx:1.27", DIGEST, {"m": DIGEST}, "copied", 10),
        ImageDone("nginx", "docker.io/library/nginx:1.26", DIGEST, {"m": DIGEST}, "unchanged", 0),
        ImageFailed("nginx", "docker.io/library/nginx:1.25", "boom"),
        HttpRequestDone("registry-1.docker.io", "get", 200, 0.02),
        HttpRequestDone("registry-1.docker.io", "HEAD", 0, 0.5),
        RetryScheduled("registry-1.docker.io", "429", 1.0),
        RateLimitObserved("registry-1.docker.io", 97.0),
    ):
        metrics.observe(event)


def test_contract_names_types_and_labels() -> None:
    metrics = Metrics()
    metrics.declare_entries(["nginx"])
    feed_everything(metrics)
    metrics.sync_run_finished("nginx", True, 12.0, 1_700_000_000.0)
    families = {f.name: f for f in text_string_to_metric_families(metrics.render().decode())}
    for name, (kind, labels) in CONTRACT.items():
        assert name in families, name
        family = families[name]
        assert family.type == kind, name
        assert family.samples, name
        for s in family.samples:
            assert set(s.labels) - {"le"} == labels, (name, s.labels)


def test_config_reloads_are_recorded() -> None:
    metrics = Metrics()
    metrics.config_reloaded(True, 1_700_000_000.0)
    assert value(metrics, "mirrord_config_reload_success") == 1.0
    metrics.config_reloaded(False, 1_700_000_060.0)
    assert value(metrics, "mirrord_config_reload_success") == 0.0
    assert value(metrics, "mirrord_config_reload_timestamp_seconds") == 1_700_000_060.0


def test_build_info_is_one_with_the_version() -> None:
    assert value(Metrics(), "mirrord_build_info", version=__version__) == 1.0


def test_events_map_onto_series() -> None:
    metrics = Metrics()
    bus = EventBus()
    metrics.subscribe(bus)
    # Through the bus, as the service wires it.
    bus.emit(BlobDone("nginx", "mirror.example.com", "hub/nginx", DIGEST, 10, "deduplicated"))
    assert value(metrics, "mirrord_blobs_total", entry="nginx", outcome="deduplicated") == 1.0
    feed_everything(metrics)

    def v(name: str, **labels: str) -> float | None:
        return value(metrics, name, **labels)

    assert v("mirrord_blobs_total", entry="nginx", outcome="copied") == 1.0
    assert v("mirrord_blobs_total", entry="nginx", outcome="mounted") == 1.0
    assert v("mirrord_images_total", entry="nginx", result="copied") == 1.0
    assert v("mirrord_images_total", entry="nginx", result="unchanged") == 1.0
    assert v("mirrord_images_total", entry="nginx", result="failed") == 1.0
    assert v("mirrord_transferred_bytes_total", registry="registry-1.docker.io", direction="pulled") == 10
    assert v("mirrord_transferred_bytes_total", registry="mirror.example.com", direction="pushed") == 10
    assert v("mirrord_http_requests_total", registry="registry-1.docker.io", method="GET", code="200") == 1
    assert v("mirrord_http_requests_total", registry="registry-1.docker.io", method="HEAD", code="0") == 1
    assert (
        v("mirrord_http_request_duration_seconds_count", registry="registry-1.docker.io", method="GET") == 1
    )
    assert v("mirrord_retries_total", registry="registry-1.docker.io", reason="429") == 1.0
    assert v("mirrord_ratelimit_remaining", registry="registry-1.docker.io") == 97.0
    assert v("mirrord_inflight_transfers") == 0.0


def test_inflight_gauge_follows_transfers() -> None:
    metrics = Metrics()
    metrics.observe(TransferStarted(DIGEST, 1))
    metrics.observe(TransferStarted("sha256:" + "cd" * 32, 1))
    assert value(metrics, "mirrord_inflight_transfers") == 2.0
    metrics.observe(TransferFinished(DIGEST, False))
    assert value(metrics, "mirrord_inflight_transfers") == 1.0


def test_labels_never_carry_tags_or_digests() -> None:
    metrics = Metrics()
    feed_everything(metrics)
    # A caller passing host/repository still yields a host label.
    metrics.observe(HttpRequestDone("mirror.example.com/hub/nginx", "BREW", 200, 0.1))
    label_values = {v for _, labels in samples(metrics) for _, v in labels}
    # No digest, no tag (1.2x), no repository path: only entries, hosts and small enums.
    assert not [v for v in label_values if DIGEST in v or "1.2" in v or "/" in v]
    assert DIGEST not in metrics.render().decode()
    assert value(
        metrics, "mirrord_http_requests_total", registry="mirror.example.com", method="OTHER", code="200"
    )


def test_sync_run_finished() -> None:
    metrics = Metrics()
    metrics.sync_run_finished("nginx", True, 12.0, 1_700_000_000.0)
    metrics.sync_run_finished("nginx", False, 3.0, 1_700_000_100.0)
    assert value(metrics, "mirrord_sync_runs_total", entry="nginx", result="success") == 1.0
    assert value(metrics, "mirrord_sync_runs_total", entry="nginx", result="failure") == 1.0
    assert value(metrics, "mirrord_sync_duration_seconds_count", entry="nginx") == 2.0
    assert value(metrics, "mirrord_sync_duration_seconds_sum", entry="nginx") == 15.0
    # A failure does not move the last success.
    assert value(metrics, "mirrord_last_success_timestamp_seconds", entry="nginx") == 1_700_000_000.0


def test_declare_entries_creates_zero_series_and_drops_removed_ones() -> None:
    metrics = Metrics()
    metrics.declare_entries(["a", "b"])
    for result in ("success", "failure"):
        assert value(metrics, "mirrord_sync_runs_total", entry="a", result=result) == 0.0
    for result in ("copied", "unchanged", "failed"):
        assert value(metrics, "mirrord_images_total", entry="b", result=result) == 0.0
    for outcome in ("copied", "exists", "mounted", "deduplicated"):
        assert value(metrics, "mirrord_blobs_total", entry="a", outcome=outcome) == 0.0
    assert value(metrics, "mirrord_sync_duration_seconds_count", entry="a") == 0.0
    # Never succeeded: no timestamp rather than a misleading 0.
    assert value(metrics, "mirrord_last_success_timestamp_seconds", entry="a") is None

    metrics.sync_run_finished("b", True, 1.0, 1_700_000_000.0)
    metrics.declare_entries(["a"])  # a reload removed "b"
    assert not [key for key in samples(metrics) if ("entry", "b") in key[1]]
    assert value(metrics, "mirrord_sync_runs_total", entry="a", result="success") == 0.0


def test_each_instance_has_its_own_registry() -> None:
    one, two = Metrics(), Metrics()
    one.sync_run_finished("x", True, 1.0, 1.0)
    assert value(two, "mirrord_sync_runs_total", entry="x", result="success") is None
    assert REGISTRY.get_sample_value("mirrord_build_info", {"version": __version__}) is None


def test_content_type_is_the_text_format() -> None:
    assert CONTENT_TYPE.startswith("text/plain; version=0.0.4")


@pytest.mark.integration
def test_promtool_accepts_the_exposition() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        if os.environ.get("CI"):
            pytest.fail("promtool is not installed (Debian package prometheus); required when CI is set")
        pytest.skip("promtool is not installed (Debian package prometheus)")
    metrics = Metrics()
    metrics.declare_entries(["nginx", "alpine"])
    feed_everything(metrics)
    metrics.sync_run_finished("nginx", True, 12.0, 1_700_000_000.0)
    result = subprocess.run(
        [promtool, "check", "metrics"], input=metrics.render(), capture_output=True, timeout=30, check=False
    )
    assert result.returncode == 0, (result.stdout + result.stderr).decode()
    # promtool reports lint problems on stdout/stderr even for a passing run on some versions.
    assert not (result.stdout + result.stderr).strip(), (result.stdout + result.stderr).decode()


def _remove_as_before_0_22(self: MetricWrapperBase, *labelvalues: Any) -> None:
    """``remove`` as prometheus-client < 0.22 wrote it: KeyError for a series never created."""
    with self._lock:
        del self._metrics[tuple(str(v) for v in labelvalues)]


def test_dropping_an_entry_that_never_succeeded_works_with_older_clients(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(MetricWrapperBase, "remove", _remove_as_before_0_22)
    metrics = Metrics()
    metrics.declare_entries(["a", "b"])
    metrics.sync_run_finished("a", False, 1.0, 1_700_000_000.0)  # no success: no timestamp series
    metrics.declare_entries(["c"])  # a reload dropped both
    assert not [key for key in samples(metrics) if {("entry", "a"), ("entry", "b")} & set(key[1])]
    assert value(metrics, "mirrord_sync_runs_total", entry="c", result="success") == 0.0
