"""Checks made before any work: each failure is one UsageError line naming the path or name."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from mirrord.cliutil.checks import (
    check_layout_source,
    check_layout_target,
    check_report_path,
    check_state_dir,
    parse_listen,
    select_entries,
)
from mirrord.cliutil.failures import UsageError, report_internal_error, report_usage_error
from mirrord.plan import parse_plan
from mirrord.sync.hints import listing

PLAN = """
version: 1
sync:
  - {name: web, source: quay.io/a/web, target: 127.0.0.1:5000/web}
  - {name: db, source: quay.io/a/db, target: 127.0.0.1:5000/db}
"""


def test_report_path_checks(tmp_path: Path) -> None:
    check_report_path(str(tmp_path / "r.json"))
    check_report_path(None)
    with pytest.raises(UsageError, match=r"--report .*: the folder .*missing does not exist"):
        check_report_path(str(tmp_path / "missing" / "r.json"))
    with pytest.raises(UsageError, match="is a folder"):
        check_report_path(str(tmp_path))
    (tmp_path / "file").write_text("")
    with pytest.raises(UsageError, match="is not a folder"):
        check_report_path(str(tmp_path / "file" / "r.json"))


def test_state_dir_checks(tmp_path: Path) -> None:
    check_state_dir(str(tmp_path / "new" / "state"))
    assert (tmp_path / "new" / "state").is_dir()
    (tmp_path / "file").write_text("")
    with pytest.raises(UsageError, match="is a file, not a folder"):
        check_state_dir(str(tmp_path / "file"))
    with pytest.raises(UsageError, match="cannot create it"):
        check_state_dir(str(tmp_path / "file" / "below"))


def test_layout_checks(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no such folder"):
        check_layout_source(f"oci:{tmp_path}/nope:1")
    with pytest.raises(UsageError, match="is not an OCI image layout"):
        check_layout_source(f"oci:{tmp_path}:1")
    (tmp_path / "index.json").write_text("{}")
    check_layout_source(f"oci:{tmp_path}:1")
    check_layout_source("quay.io/a/b:1")  # registry references are not paths
    check_layout_target(f"oci:{tmp_path}/new/deeper:1")
    (tmp_path / "file").write_text("")
    with pytest.raises(UsageError, match="is a file, not a folder"):
        check_layout_target(f"oci:{tmp_path}/file")
    with pytest.raises(UsageError, match=r"cannot create .* is a file"):
        check_layout_target(f"oci:{tmp_path}/file/below:1")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes everywhere")
def test_unwritable_paths_are_refused(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    with pytest.raises(UsageError, match="cannot write in"):
        check_report_path(str(locked / "r.json"))
    with pytest.raises(UsageError, match="cannot write in"):
        check_layout_target(f"oci:{locked}/x")


def test_a_folder_nobody_can_write_in_is_refused_even_for_root(tmp_path: Path) -> None:
    # Runs as root too (CI does): permission bits let root write almost anywhere, but no one can
    # create a file in /proc; the check must find that out rather than trust os.access.
    proc = Path("/proc")
    assert proc.is_dir()
    with pytest.raises(UsageError, match=r"cannot write in /proc$"):
        check_report_path(str(proc / "r.json"))
    with pytest.raises(UsageError, match=r"cannot write in /proc$"):
        check_layout_target("oci:/proc/mirrord-layout:1")
    check_report_path(str(tmp_path / "r.json"))  # and a writable folder passes, leaving nothing
    check_layout_target(f"oci:{tmp_path}/new/layout:1")
    assert list(tmp_path.iterdir()) == []


def test_unknown_entries_list_the_valid_ones() -> None:
    plan = parse_plan(PLAN, "plan.yaml")
    assert [e.name for e in select_entries(plan, [])] == ["web", "db"]
    assert [e.name for e in select_entries(plan, ["db"])] == ["db"]
    with pytest.raises(UsageError) as info:
        select_entries(plan, ["db", "nope"])
    assert str(info.value) == "--entry 'nope': no such entry in plan.yaml; entries: 'web', 'db'"


def test_listing_is_bounded() -> None:
    assert listing([]) == "none"
    assert listing(["a", "b"]) == "a, b"
    assert listing([str(i) for i in range(25)], shown=3) == "0, 1, 2, and 22 more"


@pytest.mark.parametrize(
    ("text", "expected"),
    [("127.0.0.1:9402", ("127.0.0.1", 9402)), (":80", ("0.0.0.0", 80)), ("[::1]:0", ("::1", 0))],
)
def test_listen_addresses(text: str, expected: tuple[str, int]) -> None:
    assert parse_listen(text) == expected


@pytest.mark.parametrize("text", ["abc", "127.0.0.1", "127.0.0.1:http", "127.0.0.1:70000", ""])
def test_bad_listen_addresses(text: str) -> None:
    with pytest.raises(UsageError, match="give HOST:PORT"):
        parse_listen(text)


def test_usage_error_is_one_line_exit_2() -> None:
    out = io.StringIO()
    assert report_usage_error(UsageError("a\nb"), out) == 2
    assert out.getvalue() == "mirrord: a b\n"


def test_internal_error_says_so_then_shows_the_masked_traceback() -> None:
    out = io.StringIO()
    with pytest.raises(RuntimeError) as info:
        raise RuntimeError("boom password=hunter2")
    assert report_internal_error(info.value, out) == 1
    lines = out.getvalue().splitlines()
    assert lines[0] == "mirrord: internal error, please report: RuntimeError: boom password=***"
    assert lines[1] == "Traceback (most recent call last):"
    assert "hunter2" not in out.getvalue()
