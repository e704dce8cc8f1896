"""One error root, and programming errors keep their traceback: the image still fails on its own
(a per-image message for the user), and the log holds the traceback of the bug, once."""

from __future__ import annotations

import logging

import pytest
from copykit import layer, push_image

from mirrord.copy import CopyEngine, CopyRequest, Limits, Target
from mirrord.core.errors import MirrordError
from mirrord.oci import InvalidReference, OCIError
from mirrord.registry.errors import NotFound
from mirrord.testing.memory import MemoryRegistry


def test_the_pure_models_errors_are_mirrord_errors_and_still_value_errors() -> None:
    assert issubclass(OCIError, MirrordError)
    assert issubclass(InvalidReference, ValueError)


def _tracebacks(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.exc_info is not None and r.levelno >= logging.ERROR]


async def test_a_bug_in_an_upload_fails_the_image_and_logs_its_traceback_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    source, target = MemoryRegistry("src.example"), MemoryRegistry("dst.example")
    src = source.repository("app")
    await push_image(src, [layer("a", 4000)], tag="1")
    bug = RuntimeError("a programming error")
    for n in range(1, 5):
        target.faults.fail_calls[("blob_put", n)] = bug  # type: ignore[assignment]
    targets = (
        Target(repository=target.repository("one"), tag="1"),
        Target(repository=target.repository("two"), tag="1"),
    )

    with caplog.at_level(logging.ERROR):
        result = await CopyEngine(limits=Limits(retry_backoff=0)).copy(
            CopyRequest(source=src, reference="1", targets=targets)
        )

    assert result.outcome == "failed"
    assert "RuntimeError: a programming error" in (result.error or "")
    logged = _tracebacks(caplog)
    assert len(logged) == 1, [r.getMessage() for r in logged]
    assert logged[0].exc_info is not None
    assert logged[0].exc_info[1] is bug
    assert "failed unexpectedly" in logged[0].getMessage()


async def test_an_expected_failure_logs_no_traceback(caplog: pytest.LogCaptureFixture) -> None:
    source, target = MemoryRegistry("src.example"), MemoryRegistry("dst.example")
    src = source.repository("app")
    await push_image(src, [layer("a", 4000)], tag="1")
    for n in range(1, 5):
        target.faults.fail_calls[("blob_put", n)] = NotFound("no such upload")

    with caplog.at_level(logging.DEBUG):
        result = await CopyEngine(limits=Limits(retry_backoff=0)).copy(
            CopyRequest(
                source=src, reference="1", targets=(Target(repository=target.repository("one"), tag="1"),)
            )
        )

    assert result.outcome == "failed"
    assert "NotFound" in (result.error or "")
    assert _tracebacks(caplog) == []
