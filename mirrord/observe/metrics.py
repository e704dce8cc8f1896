"""Prometheus metrics for mirrord, fed by engine events.

:class:`Metrics` owns its own :class:`~prometheus_client.CollectorRegistry` (never the process-global
one), so tests and several services in one process never share series. Metric names and labels are the
product contract (``product.md``, "Metrics"). Labels never carry a tag or a digest: ``entry`` is a sync
entry's name, ``registry`` a host (``registry.example.com:5000``, or ``oci`` for layout directories).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.metrics import MetricWrapperBase

from mirrord import __version__
from mirrord.core.events import (
    BlobDone,
    BytesTransferred,
    Event,
    EventBus,
    HttpRequestDone,
    ImageDone,
    ImageFailed,
    ImageRejected,
    RateLimitObserved,
    RetryScheduled,
    TransferFinished,
    TransferStarted,
)

#: The ``Content-Type`` of :meth:`Metrics.render`'s output. Spelled out, not the client's
#: ``CONTENT_TYPE_LATEST``: that moved to ``version=1.0.0`` (UTF-8 names), while ``generate_latest`` still
#: writes the 0.0.4 text format, which every Prometheus 2.x server knows by this exact header.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

RUN_RESULTS = ("success", "failure")
IMAGE_RESULTS = ("copied", "unchanged", "failed", "rejected")
BLOB_OUTCOMES = ("copied", "exists", "mounted", "deduplicated")
NOTIFICATION_RESULTS = ("accepted", "ignored", "invalid")

# Anything else is folded into "OTHER" so a misbehaving caller cannot explode the label set.
_HTTP_METHODS = frozenset({"GET", "HEAD", "PUT", "POST", "PATCH", "DELETE", "OPTIONS"})

# Registry calls range from a ~10 ms HEAD to a multi-minute blob upload.
_HTTP_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
# A pass over one entry: seconds for an unchanged tag, hours for a large first mirror.
_SYNC_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 21600.0)


def _host(registry: str) -> str:
    """The host part of a registry label, in case a caller passed ``host/repository``."""
    return registry.split("/", 1)[0]


def _discard(metric: MetricWrapperBase, *labels: str) -> None:
    """Remove the series ``labels`` of ``metric`` if it exists. prometheus-client before 0.22 (which
    ``pyproject.toml`` allows) raises KeyError for a series that was never created."""
    with contextlib.suppress(KeyError):
        metric.remove(*labels)


class Metrics:
    """Every mirrord metric, in a private registry; subscribe it to an :class:`EventBus`.

    Subscribed handlers are quick and never raise for a well-formed event.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._entries: set[str] = set()
        self._define_sync()
        self._define_transfer()
        self._define_http()
        self._define_config()
        build_info = Gauge(
            "mirrord_build_info", "mirrord build information (always 1)", ["version"], registry=self.registry
        )
        build_info.labels(version=__version__).set(1)

    # -- definitions --------------------------------------------------------------------------------

    def _define_sync(self) -> None:
        reg = self.registry
        self.sync_runs = Counter(
            "mirrord_sync_runs_total",
            "Passes over a sync entry, by result",
            ["entry", "result"],
            registry=reg,
        )
        self.images = Counter(
            "mirrord_images_total", "Source images handled, by result", ["entry", "result"], registry=reg
        )
        self.blobs = Counter(
            "mirrord_blobs_total",
            "Blobs made present at a target, by outcome",
            ["entry", "outcome"],
            registry=reg,
        )
        self.sync_duration = Histogram(
            "mirrord_sync_duration_seconds",
            "Duration of a pass over one entry",
            ["entry"],
            buckets=_SYNC_BUCKETS,
            registry=reg,
        )
        self.last_success = Gauge(
            "mirrord_last_success_timestamp_seconds",
            "Unix time the last successful pass of an entry ended",
            ["entry"],
            registry=reg,
        )
        self.repositories = Gauge(
            "mirrord_repositories",
            "Repositories a pattern entry covered in its last pass (catalog matches this shard owns)",
            ["entry"],
            registry=reg,
        )

    def _define_transfer(self) -> None:
        reg = self.registry
        self.transferred_bytes = Counter(
            "mirrord_transferred_bytes_total",
            "Blob bytes pulled from or pushed to a registry",
            ["registry", "direction"],
            registry=reg,
        )
        self.inflight = Gauge("mirrord_inflight_transfers", "Blob streams in progress", registry=reg)
        self.notifications = Counter(
            "mirrord_notifications_total",
            "Events received on POST /notify, by result (accepted: some entry syncs it)",
            ["result"],
            registry=reg,
        )
        for result in NOTIFICATION_RESULTS:
            self.notifications.labels(result=result)

    def _define_http(self) -> None:
        reg = self.registry
        self.http_requests = Counter(
            "mirrord_http_requests_total",
            "HTTP requests to registries (code 0: no response)",
            ["registry", "method", "code"],
            registry=reg,
        )
        self.http_duration = Histogram(
            "mirrord_http_request_duration_seconds",
            "Duration of HTTP requests to registries",
            ["registry", "method"],
            buckets=_HTTP_BUCKETS,
            registry=reg,
        )
        self.retries = Counter(
            "mirrord_retries_total", "Retries scheduled, by reason", ["registry", "reason"], registry=reg
        )
        self.ratelimit_remaining = Gauge(
            "mirrord_ratelimit_remaining",
            "Request quota a registry last reported as remaining",
            ["registry"],
            registry=reg,
        )

    def _define_config(self) -> None:
        self.config_reload_success = Gauge(
            "mirrord_config_reload_success",
            "1 when the last plan load or SIGHUP reload was accepted, 0 when it was rejected",
            registry=self.registry,
        )
        self.config_reload_timestamp = Gauge(
            "mirrord_config_reload_timestamp_seconds",
            "Unix time of the last plan load or SIGHUP reload, accepted or not",
            registry=self.registry,
        )

    # -- events -------------------------------------------------------------------------------------

    def subscribe(self, bus: EventBus) -> Callable[[], None]:
        """Count the events ``bus`` emits from now on; returns a function that unsubscribes."""
        return bus.subscribe(self.observe)

    def observe(self, event: Event) -> None:
        """Apply one event; events that carry no metric (``ImageStarted``, ``ManifestPushed``) are ignored."""
        match event:
            case BlobDone():
                self.blobs.labels(entry=event.entry, outcome=event.outcome).inc()
            case ImageDone():
                self.images.labels(entry=event.entry, result=event.outcome).inc()
            case ImageFailed():
                self.images.labels(entry=event.entry, result="failed").inc()
            case ImageRejected():
                self.images.labels(entry=event.entry, result="rejected").inc()
            case BytesTransferred() if event.count > 0:
                labels = {"registry": _host(event.registry), "direction": event.direction}
                self.transferred_bytes.labels(**labels).inc(event.count)
            case HttpRequestDone():
                self._observe_http(event)
            case RetryScheduled():
                self.retries.labels(registry=_host(event.registry), reason=event.reason).inc()
            case RateLimitObserved():
                self.ratelimit_remaining.labels(registry=_host(event.registry)).set(event.remaining)
            case TransferStarted():
                self.inflight.inc()
            case TransferFinished():
                self.inflight.dec()

    def _observe_http(self, event: HttpRequestDone) -> None:
        method = event.method.upper()
        if method not in _HTTP_METHODS:
            method = "OTHER"
        host = _host(event.registry)
        self.http_requests.labels(registry=host, method=method, code=str(event.code)).inc()
        self.http_duration.labels(registry=host, method=method).observe(max(0.0, event.seconds))

    # -- calls from the service ---------------------------------------------------------------------

    def sync_run_finished(self, entry: str, ok: bool, seconds: float, finished_at: float) -> None:
        """Record one pass over ``entry``: its result, its duration and, on success, when it ended.

        ``finished_at`` is Unix time (``time.time()``), as Prometheus timestamps are.
        """
        self.sync_runs.labels(entry=entry, result="success" if ok else "failure").inc()
        self.sync_duration.labels(entry=entry).observe(max(0.0, seconds))
        if ok:
            self.last_success.labels(entry=entry).set(finished_at)

    def config_reloaded(self, ok: bool, at: float) -> None:
        """Record a plan load or reload attempt at Unix time ``at`` and whether it was accepted."""
        self.config_reload_success.set(1 if ok else 0)
        self.config_reload_timestamp.set(at)

    def notifications_counted(self, *, accepted: int = 0, ignored: int = 0, invalid: int = 0) -> None:
        """Count POST /notify events: accepted (a sync was queued), ignored, invalid."""
        for result, count in (("accepted", accepted), ("ignored", ignored), ("invalid", invalid)):
            if count:
                self.notifications.labels(result=result).inc(count)

    def entry_repositories(self, entry: str, count: int) -> None:
        """Record how many repositories pattern ``entry`` covered in its last pass."""
        self.repositories.labels(entry=entry).set(count)

    def declare_entries(self, names: Iterable[str]) -> None:
        """Make the plan's entries the declared set: create their zero series, drop removed ones.

        Zero series let dashboards and ``rate()`` see an entry before its first event. Series of
        entries no longer in the plan are removed, so a reload does not leave stale ones behind.
        ``mirrord_last_success_timestamp_seconds`` appears only after a first success.
        """
        wanted = set(names)
        for gone in self._entries - wanted:
            self._remove_entry(gone)
        for name in wanted:
            self._declare_entry(name)
        self._entries = wanted

    def _declare_entry(self, name: str) -> None:
        for result in RUN_RESULTS:
            self.sync_runs.labels(entry=name, result=result)
        for result in IMAGE_RESULTS:
            self.images.labels(entry=name, result=result)
        for outcome in BLOB_OUTCOMES:
            self.blobs.labels(entry=name, outcome=outcome)
        self.sync_duration.labels(entry=name)

    def _remove_entry(self, name: str) -> None:
        for metric, values in (
            (self.sync_runs, RUN_RESULTS),
            (self.images, IMAGE_RESULTS),
            (self.blobs, BLOB_OUTCOMES),
        ):
            for value in values:
                _discard(metric, name, value)
        _discard(self.sync_duration, name)
        _discard(self.last_success, name)  # exists only after a first success
        _discard(self.repositories, name)  # a pattern entry's, after its first pass

    # -- exposition ---------------------------------------------------------------------------------

    def render(self) -> bytes:
        """Every series in the Prometheus text format (``CONTENT_TYPE``)."""
        return generate_latest(self.registry)
