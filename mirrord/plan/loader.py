"""Reading a plan file: compose the YAML, check the version, then each section in order."""

from __future__ import annotations

from pathlib import Path

from mirrord.plan.entries import parse_defaults, parse_entries
from mirrord.plan.model import Plan, PlanError
from mirrord.plan.nodes import Value, compose
from mirrord.plan.overlap import check_overlaps
from mirrord.plan.registries import parse_registries, parse_server

ROOT_KEYS = ("version", "registries", "defaults", "sync", "server", "policy")
SUPPORTED_VERSION = 1


def load_plan(path: str | Path) -> Plan:
    """Read and validate the plan file at ``path``; PlanError (naming the file) when it cannot."""
    name = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise PlanError(name, None, "", f"not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise PlanError(name, None, "", f"cannot read the plan: {exc.strerror or exc}") from None
    return parse_plan(text, name)


def parse_plan(text: str, path: str = "<plan>") -> Plan:
    """Validate the plan ``text`` whole; ``path`` names it in errors. Raises PlanError at the first fault."""
    root = compose(text, path)
    if root is None:
        raise PlanError(path, None, "", "the plan is empty (it needs at least 'version: 1')")
    items = root.mapping()
    _check_version(root, items.get("version"))
    root.mapping(ROOT_KEYS)
    origins: dict[str, int] = {}
    registries = parse_registries(items["registries"], origins) if "registries" in items else {}
    defaults = parse_defaults(items.get("defaults"))
    entries = parse_entries(items.get("sync"), defaults)
    check_overlaps(entries, items.get("sync"))
    server = parse_server(items.get("server"), origins)
    policy = None
    if "policy" in items:
        policy = items["policy"].string()
        origins["policy"] = items["policy"].line
    return Plan(
        path=path,
        registries=registries,
        entries=tuple(entries),
        server=server,
        policy=policy,
        origins=origins,
    )


def _check_version(root: Value, version: Value | None) -> None:
    # Checked before unknown keys: a newer plan's new keys should read as a version problem.
    if version is None:
        raise PlanError(
            root.path, root.line, "version", f"missing: a plan starts with 'version: {SUPPORTED_VERSION}'"
        )
    number = version.integer()
    if number != SUPPORTED_VERSION:
        raise version.error(
            f"unsupported plan version {number} (this mirrord reads version {SUPPORTED_VERSION})"
        )
