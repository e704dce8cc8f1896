"""The resolved plan as plain data (``mirrord check``), and the offline check of secrets and files."""

from __future__ import annotations

import os
from typing import Any

from mirrord.plan.model import Entry, Plan, PlanError, ServerConfig, SignConfig, TargetConfig
from mirrord.plan.nodes import format_duration
from mirrord.plan.registries import registry_key
from mirrord.plan.tags import TagFilter
from mirrord.registry.settings import RegistrySettings

MASK = "***"


def plan_to_dict(plan: Plan) -> dict[str, Any]:
    """The plan resolved: defaults merged into entries, names normalised, secrets masked (``***``).

    File paths and environment variable names are kept (they are not secrets). The result is valid
    plan YAML again: parsing it yields an equal plan, except that an inline password reads ``***``.
    """
    out: dict[str, Any] = {"version": 1}
    if plan.policy is not None:
        out["policy"] = plan.policy
    if plan.registries:
        out["registries"] = {host: _registry(s) for host, s in plan.registries.items()}
    out["sync"] = [_entry(e) for e in plan.entries]
    out["server"] = _server(plan.server)
    return out


def _registry(settings: RegistrySettings) -> dict[str, Any]:
    out: dict[str, Any] = {}
    tls = settings.tls
    paths = {"ca_file": tls.ca_file, "client_cert": tls.client_cert, "client_key": tls.client_key}
    options = {k: v for k, v in paths.items() if v is not None}
    if not tls.enabled or (tls.verify and not options):
        out["tls"] = tls.enabled
    else:
        out["tls"] = {"verify": tls.verify, **options}
    auth = settings.auth
    masked = MASK if auth.password is not None else None
    fields = {
        "username": auth.username,
        "password": masked,
        "password_file": auth.password_file,
        "password_env": auth.password_env,
        "docker_config": auth.docker_config,
    }
    if any(v is not None for v in fields.values()):
        out["auth"] = {k: v for k, v in fields.items() if v is not None}
    if settings.requests_per_second is not None:
        out["requests_per_second"] = settings.requests_per_second
    out["max_connections"] = settings.max_connections
    if settings.chunk_size is not None:
        out["chunk_size"] = settings.chunk_size
    if settings.stall_timeout is not None:
        out["stall_timeout"] = settings.stall_timeout
    return out


def _entry(entry: Entry) -> dict[str, Any]:
    out: dict[str, Any] = {"name": entry.name, "source": _source(entry)}
    out["targets"] = [_target(t) for t in entry.targets]
    if entry.tags is not None:
        out["tags"] = _tags(entry.tags)
    out["platforms"] = "all" if entry.platforms is None else [str(p) for p in entry.platforms]
    out["interval"] = format_duration(entry.interval)
    if entry.tag is None and entry.digest is None:
        out["prune"] = entry.prune
        out["prune_max"] = entry.prune_max
    out["search_registries"] = list(entry.search_registries)
    out["require_signatures"] = entry.require_signatures
    out["recheck_artifacts"] = entry.recheck_artifacts
    if entry.repositories is not None:
        out["repositories"] = {
            "include": [p.pattern for p in entry.repositories.include],
            "exclude": [p.pattern for p in entry.repositories.exclude],
        }
    return out


def _source(entry: Entry) -> str:
    name = entry.source
    if entry.source_is_short and entry.search_registries:
        # Kept short: the sync pass looks it up in search_registries, the host is not decided yet.
        name = entry.short_name
    if entry.tag is not None:
        name += f":{entry.tag}"
    if entry.digest is not None:
        name += f"@{entry.digest}"
    return name


def _target(target: TargetConfig) -> dict[str, Any]:
    ref = target.ref if target.tag is None else f"{target.ref}:{target.tag}"
    out: dict[str, Any] = {
        "ref": ref,
        "format": target.format,
        "compression": target.compression,
        "artifacts": target.artifacts,
    }
    if target.artifact_types is not None:
        out["artifact_types"] = list(target.artifact_types)
    if target.sign is not None:
        # Paths and a variable's name only: the passphrase and the key never appear.
        sign = {"key_file": target.sign.key_file, "passphrase_file": target.sign.passphrase_file,
                "passphrase_env": target.sign.passphrase_env}  # fmt: skip
        out["sign"] = {k: v for k, v in sign.items() if v is not None}
    return out


def _tags(tags: TagFilter) -> list[str] | dict[str, Any]:
    if tags.exact is not None:
        return list(tags.exact)
    out: dict[str, Any] = {}
    if tags.include:
        out["include"] = [p.pattern for p in tags.include]
    if tags.exclude:
        out["exclude"] = [p.pattern for p in tags.exclude]
    if tags.semver is not None:
        out["semver"] = str(tags.semver)
    if tags.latest is not None:
        out["latest"] = tags.latest
    return out


def _server(server: ServerConfig) -> dict[str, Any]:
    out: dict[str, Any] = {"listen": server.listen}
    if server.trigger_token_file is not None:
        out["trigger_token_file"] = server.trigger_token_file
    return out


def check_secrets(plan: Plan) -> None:
    """Check, offline, that every secret and file the plan names is there.

    ``password_file``, ``docker_config``, TLS ``ca_file``/``client_cert``/``client_key`` and
    ``server.trigger_token_file`` must be readable files; ``password_env`` must be set and non-empty.
    Raises PlanError naming the plan line and key; never reads or shows a secret's content.
    """
    for host, settings in plan.registries.items():
        auth, tls = settings.auth, settings.tls
        files = {
            "auth.password_file": auth.password_file,
            "auth.docker_config": auth.docker_config,
            "tls.ca_file": tls.ca_file,
            "tls.client_cert": tls.client_cert,
            "tls.client_key": tls.client_key,
        }
        for sub, file in files.items():
            if file is not None:
                _check_file(plan, registry_key(host, sub), file)
        if auth.password_env is not None:
            _check_env(plan, registry_key(host, "auth.password_env"), auth.password_env)
    if plan.server.trigger_token_file is not None:
        _check_file(plan, "server.trigger_token_file", plan.server.trigger_token_file)
    if plan.policy is not None:
        _check_file(plan, "policy", plan.policy)
    for entry in plan.entries:
        for target in entry.targets:
            if target.sign is not None:
                _check_sign(plan, target.sign)


def _check_sign(plan: Plan, sign: SignConfig) -> None:
    files = {"key_file": sign.key_file, "passphrase_file": sign.passphrase_file}
    for name, path in files.items():
        if path is not None:
            _check_file(plan, f"{sign.key}.{name}", path, sign.line)
    if sign.passphrase_env is not None and sign.passphrase_env not in os.environ:
        key = f"{sign.key}.passphrase_env"
        raise PlanError(plan.path, sign.line, key, f"environment variable {sign.passphrase_env} is not set")


def _check_file(plan: Plan, key: str, path: str, line: int | None = None) -> None:
    line = plan.origins.get(key, line)
    if os.path.isdir(path):
        raise PlanError(plan.path, line, key, f"{path!r} is a directory, not a file")
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise PlanError(plan.path, line, key, f"cannot read {path!r}: {exc.strerror or exc}") from None


def _check_env(plan: Plan, key: str, name: str) -> None:
    if not os.environ.get(name):
        state = "is empty" if name in os.environ else "is not set"
        raise PlanError(plan.path, plan.origins.get(key), key, f"environment variable {name} {state}")
