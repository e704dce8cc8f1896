"""Checks made before any work, so a mistake costs a one-line error, not a pass and a traceback.

Each function returns quietly or raises :class:`~mirrord.cliutil.failures.UsageError` with a message
naming the option, the path or the name, and what would be valid.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

from mirrord.cliutil.failures import UsageError
from mirrord.oci.errors import InvalidReference
from mirrord.plan import Entry, Plan
from mirrord.registry.layout.reference import LAYOUT_SCHEME, parse_layout_reference
from mirrord.sync.hints import listing


def check_report_path(path: str | None) -> None:
    """``--report FILE`` can be written: its folder exists and is writable, and it is no folder."""
    if path is None:
        return
    file = Path(path)
    if file.is_dir():
        raise UsageError(f"--report {path}: is a folder; give a file name")
    folder = file.parent
    if not folder.exists():
        raise UsageError(f"--report {path}: the folder {folder} does not exist")
    if not folder.is_dir():
        raise UsageError(f"--report {path}: {folder} is not a folder")
    if not _writable(folder):
        raise UsageError(f"--report {path}: cannot write in {folder}")


def check_state_dir(path: str | None) -> None:
    """The state folder exists (created when missing) and is a writable folder."""
    if not path:
        return
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"--state-dir {path}: is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"--state-dir {path}: cannot create it: {exc.strerror or exc}") from None
    if not _writable(folder):
        raise UsageError(f"--state-dir {path}: cannot write in it")


def check_layout_source(ref: str) -> None:
    """``oci:PATH`` to read from is an OCI layout folder (it has an ``index.json``)."""
    if not ref.startswith(LAYOUT_SCHEME):
        return
    folder = _layout_path(ref)
    if not folder.exists():
        raise UsageError(f"{ref}: no such folder {folder}")
    if not folder.is_dir():
        raise UsageError(f"{ref}: {folder} is not a folder")
    if not (folder / "index.json").is_file():
        raise UsageError(f"{ref}: {folder} is not an OCI image layout (it has no index.json)")


def check_layout_target(ref: str) -> None:
    """``oci:PATH`` to write to is a folder, or can be created: its nearest existing parent is a
    writable folder."""
    if not ref.startswith(LAYOUT_SCHEME):
        return
    folder = _layout_path(ref)
    if folder.exists():
        if not folder.is_dir():
            raise UsageError(f"{ref}: {folder} is a file, not a folder")
        existing = folder
    else:
        existing = next((p for p in folder.parents if p.exists()), Path("."))
        if not existing.is_dir():
            raise UsageError(f"{ref}: cannot create {folder}: {existing} is a file")
    if not _writable(existing):
        raise UsageError(f"{ref}: cannot write in {existing}")


def _writable(folder: Path) -> bool:
    """True when a file can really be created in ``folder``.

    ``os.access`` alone answers from permission bits, and for root it says yes almost everywhere
    (``/proc``, a root-squashed NFS share, a folder an ACL or a security module denies); a probe
    file created and removed at once is what the real write will meet.
    """
    if not os.access(folder, os.W_OK | os.X_OK):
        return False
    try:
        handle, name = tempfile.mkstemp(prefix=".mirrord-probe-", dir=folder)
    except OSError:
        return False
    os.close(handle)
    with contextlib.suppress(OSError):  # created it, so writable; a leftover probe is harmless
        os.unlink(name)
    return True


def _layout_path(ref: str) -> Path:
    try:
        path, _ = parse_layout_reference(ref)
    except InvalidReference as exc:
        raise UsageError(str(exc)) from None
    return path


def check_plan_layouts(entries: Sequence[Entry]) -> None:
    """Every ``oci:`` target of ``entries`` can be written (see :func:`check_layout_target`)."""
    for entry in entries:
        for target in entry.targets:
            try:
                check_layout_target(target.ref)
            except UsageError as exc:
                raise UsageError(f"entry {entry.name!r}: {exc}") from None


def select_entries(plan: Plan, names: Sequence[str]) -> list[Entry]:
    """The entries called ``names`` in that order (every entry when none is named)."""
    if not names:
        return list(plan.entries)
    known = {e.name: e for e in plan.entries}
    unknown = [n for n in names if n not in known]
    if unknown:
        which = ", ".join(repr(n) for n in unknown)
        raise UsageError(
            f"--entry {which}: no such entry in {plan.path}; entries: {listing([repr(n) for n in known])}"
        )
    return [known[n] for n in names]


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT``, ``[IPV6]:PORT`` or ``:PORT`` (every address) -> (host, port)."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise UsageError(f"--listen {text!r}: give HOST:PORT with a port 0-65535 (e.g. 127.0.0.1:9402)")
    host = host.removeprefix("[").removesuffix("]")
    return host or "0.0.0.0", int(port_text)
