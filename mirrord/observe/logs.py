"""Logging set-up: one JSON object per line (daemon, and one-shot commands off a terminal) or text.

Structured fields travel in ``extra={"fields": {...}}``; :func:`event_logger` turns engine events into
log records with ``entry``, ``image`` and ``digest`` fields. A last line of defence masks anything
that looks like a credential in every message (the code never logs secrets on purpose).
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections.abc import Callable
from typing import Any, Literal

from mirrord.core import events as ev

LogFormat = Literal["json", "text"]

_SECRET_PATTERNS = (
    re.compile(r"(?i)(authorization:\s*(?:basic|bearer)\s+)[^\s,;\"']+"),
    re.compile(r"(?i)((?:password|passwd|secret|token|access_token)[\"']?\s*[:=]\s*[\"']?)[^\s,;\"'&]+"),
    re.compile(r"(://[^/\s:@]+:)[^@\s/]+(@)"),
)


def redact(text: str) -> str:
    """Mask credential-looking substrings (Authorization values, password=..., user:pass@ in URLs)."""
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(lambda m: m.group(1) + "***" + (m.group(2) if m.lastindex == 2 else ""), text)
    return text


def iso_utc(ts: float) -> str:
    """Unix time as ISO 8601 UTC with milliseconds (``2026-12-02T06:30:00.250Z``): the ``ts`` of a
    JSON log line, and the times ``/status`` shows."""
    whole = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts))
    return f"{whole}.{int(ts * 1000) % 1000:03d}Z"


class JSONFormatter(logging.Formatter):
    """Format a record as one JSON object: ts, level, logger, msg, the record's fields, exc."""

    def format(self, record: logging.LogRecord) -> str:
        obj: dict[str, Any] = {
            "ts": iso_utc(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": redact(record.getMessage()),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            obj.update({k: v for k, v in fields.items() if k not in obj})
        if record.exc_info:
            obj["exc"] = redact(self.formatException(record.exc_info))
        return json.dumps(obj, default=str, separators=(",", ":"))


class TextFormatter(logging.Formatter):
    """Human lines: time level logger: message key=value ..."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict) and fields:
            line += " " + " ".join(f"{k}={v}" for k, v in fields.items())
        return redact(line)


def setup_logging(fmt: LogFormat, *, level: int = logging.INFO, stream: Any = None) -> None:
    """Route the root logger to ``stream`` (stderr) in ``fmt``; replaces earlier handlers."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JSONFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # aiohttp's access log is noisy and carries nothing our own request events do not.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


def default_format(stream: Any = None) -> LogFormat:
    """``text`` on a terminal, ``json`` otherwise."""
    stream = stream or sys.stderr
    return "text" if getattr(stream, "isatty", lambda: False)() else "json"


_EVENT_LOG = logging.getLogger("mirrord.events")


def event_logger(*, verbose: bool = False) -> Callable[[ev.Event], None]:
    """A subscriber that logs image-level events (and blob/manifest ones when ``verbose``). An
    unchanged image gets its own line only when ``verbose``: the sync runner logs one
    ``images unchanged`` line per entry with their count (thousands of identical lines per pass cost
    more CPU than the HEADs that found them unchanged)."""

    def log_event(event: ev.Event) -> None:
        # An unchanged image (most of a pass) is the common case: out before the match tries every
        # other case on it.
        if not verbose and type(event) is ev.ImageDone and event.outcome == "unchanged":
            return
        match event:
            case ev.ImageDone():  # an unchanged one only when verbose (returned above)
                _log(
                    logging.INFO,
                    f"image {event.outcome}",
                    event.entry,
                    event.source,
                    event.source_digest,
                    bytes=event.bytes,
                    targets=dict(event.target_digests),
                    digest_map=dict(event.digest_map) or None,
                )
            case ev.ImageFailed():
                _log(logging.ERROR, "image failed", event.entry, event.source, None, error=event.error)
            case ev.ImageRejected():
                _log(logging.ERROR, "image rejected", event.entry, event.source, None, reason=event.reason)
            case ev.ImageStarted() if verbose:
                _log(
                    logging.INFO,
                    "image started",
                    event.entry,
                    event.source,
                    None,
                    targets=list(event.targets),
                )
            case ev.BlobDone() if verbose:
                _log(
                    logging.INFO,
                    f"blob {event.outcome}",
                    event.entry,
                    f"{event.registry}/{event.repository}",
                    event.digest,
                    size=event.size,
                )
            case ev.ManifestPushed() if verbose:
                _log(
                    logging.INFO,
                    "manifest pushed",
                    event.entry,
                    f"{event.registry}/{event.repository}:{event.reference}",
                    event.digest,
                    media_type=event.media_type,
                )
            case ev.RetryScheduled():
                _EVENT_LOG.warning(
                    "retrying",
                    extra={
                        "fields": {
                            "registry": event.registry,
                            "reason": event.reason,
                            "delay": round(event.delay, 3),
                        }
                    },
                )
            case _:
                pass

    # Only these reach a line (the bus then builds no per-request event for this logger alone).
    kinds: set[type[ev.Event]] = {ev.ImageDone, ev.ImageFailed, ev.ImageRejected, ev.RetryScheduled}
    if verbose:
        kinds |= {ev.ImageStarted, ev.BlobDone, ev.ManifestPushed}
    return ev.Heard(log_event, frozenset(kinds))


def _log(level: int, msg: str, entry: str, image: str, digest: str | None, **more: Any) -> None:
    fields: dict[str, Any] = {"entry": entry, "image": image}
    if digest:
        fields["digest"] = digest
    fields.update({k: v for k, v in more.items() if v is not None})
    _EVENT_LOG.log(level, msg, extra={"fields": fields})
