"""How errors reach the terminal: one line for an operator's mistake, a labelled traceback for a bug.

An operator error (a bad path, a busy port, an unknown entry, an invalid plan) is a
:class:`UsageError`: the command prints ``mirrord: <message>`` and exits 2. Anything else escaping a
command is a bug in mirrord: :func:`report_internal_error` says so in one line, then prints the
traceback for the bug report, and the command exits 1.
"""

from __future__ import annotations

import sys
import traceback
from typing import TextIO

from mirrord.core.errors import MirrordError
from mirrord.observe.logs import redact

EXIT_INVALID = 2
EXIT_INTERNAL = 1


class UsageError(MirrordError):
    """The operator asked for something that cannot work; ``str(e)`` is the whole one-line message."""


def report_usage_error(exc: BaseException, stream: TextIO | None = None) -> int:
    """Print ``mirrord: <exc>`` on one line; the exit status for usage errors (2)."""
    message = " ".join(str(exc).split()) or type(exc).__name__
    print(f"mirrord: {message}", file=stream or sys.stderr)
    return EXIT_INVALID


def report_internal_error(exc: BaseException, stream: TextIO | None = None) -> int:
    """Say that ``exc`` is a bug, then print its traceback; the exit status (1)."""
    out = stream or sys.stderr
    summary = " ".join(f"{type(exc).__name__}: {exc}".split())
    print(redact(f"mirrord: internal error, please report: {summary}"), file=out)
    # The same masking as the logs: a bug report is pasted into public trackers.
    print(redact("".join(traceback.format_exception(exc))), end="", file=out)
    return EXIT_INTERNAL
