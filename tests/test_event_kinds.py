"""Subscribers that name the events they handle: the bus delivers only those, and emitters can ask
whether anyone hears a kind before building it (the transport's per-request event)."""

from __future__ import annotations

from mirrord.core import events as ev
from mirrord.observe.logs import event_logger
from mirrord.registry.http.session import RepositoryAddress


def test_the_log_subscriber_hears_only_what_it_logs() -> None:
    bus = ev.EventBus()
    bus.subscribe(event_logger())
    assert bus.wants(ev.ImageDone)
    assert bus.wants(ev.ImageFailed)
    assert bus.wants(ev.RetryScheduled)
    assert not bus.wants(ev.HttpRequestDone)
    assert not bus.wants(ev.ImageStarted)  # logged only with -v
    verbose = ev.EventBus()
    verbose.subscribe(event_logger(verbose=True))
    assert verbose.wants(ev.ImageStarted)
    assert verbose.wants(ev.BlobDone)
    assert not verbose.wants(ev.HttpRequestDone)


def test_a_subscriber_with_kinds_gets_only_those_and_others_get_everything() -> None:
    bus = ev.EventBus()
    picky: list[ev.Event] = []
    everything: list[ev.Event] = []
    bus.subscribe(picky.append, kinds=[ev.ImageFailed])
    done = ev.HttpRequestDone("r", "HEAD", 200, 0.1)
    failed = ev.ImageFailed("e", "s", "boom")
    bus.emit(done)
    assert not bus.wants(ev.HttpRequestDone)
    unsubscribe = bus.subscribe(everything.append)
    assert bus.wants(ev.HttpRequestDone)
    bus.emit(done)
    bus.emit(failed)
    assert picky == [failed]
    assert everything == [done, failed]
    unsubscribe()
    assert not bus.wants(ev.HttpRequestDone)


def test_paths_quote_only_what_needs_it() -> None:
    address = RepositoryAddress("r.example", "lib/app")
    assert address.path("manifests", "1.2.3_rc-1") == "/v2/lib/app/manifests/1.2.3_rc-1"
    digest = "sha256:" + "a" * 64
    assert address.path("blobs", digest) == f"/v2/lib/app/blobs/{digest}"
    assert address.path("manifests", "a b/c?d") == "/v2/lib/app/manifests/a%20b%2Fc%3Fd"
    assert address.path("tags", "") == "/v2/lib/app/tags/"
