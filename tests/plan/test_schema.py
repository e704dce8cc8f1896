"""The plan's JSON Schema (for editors) agrees with the loader and the example config."""

from __future__ import annotations

import json
import re
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest
import yaml

from mirrord.plan import entries, fields, loader, registries

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "config" / "mirrord.yaml"


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    text = resources.files("mirrord").joinpath("plan_schema.json").read_text(encoding="utf-8")
    loaded: dict[str, Any] = json.loads(text)
    return loaded


@pytest.fixture(scope="module")
def validator(schema: dict[str, Any]) -> jsonschema.Draft7Validator:
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def _errors(validator: jsonschema.Draft7Validator, document: Any) -> list[str]:
    return [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(document)]


@pytest.mark.parametrize("name", ["mirrord.yaml", "demo.yaml"])
def test_example_configs_validate(validator: jsonschema.Draft7Validator, name: str) -> None:
    document = yaml.safe_load((REPO / "config" / name).read_text())
    assert _errors(validator, document) == []


@pytest.mark.parametrize(
    ("path", "key"),
    [
        ((), "syncs"),
        (("registries", "docker.io"), "rate"),
        (("registries", "docker.io", "auth"), "token"),
        (("registries", "mirror.example.com", "tls"), "insecure"),
        (("defaults",), "source"),
        (("sync", 0), "target_prefix"),
        (("sync", 0, "tags"), "includes"),
        (("sync", 0, "targets", 2), "formt"),
        (("server",), "port"),
    ],
)
def test_unknown_keys_are_rejected(
    validator: jsonschema.Draft7Validator, path: tuple[Any, ...], key: str
) -> None:
    document = yaml.safe_load(EXAMPLE.read_text())
    node = document
    for part in path:
        node = node[part]
    node[key] = 1
    assert _errors(validator, document), f"{key} under {path} was accepted"


@pytest.mark.parametrize(
    "document",
    [
        {"version": 2},
        {"sync": []},
        {"version": 1, "defaults": {"interval": "6 hours"}},
        {"version": 1, "sync": [{"source": "a.io/b", "target": "c.io/d", "targets": ["c.io/e"]}]},
        {"version": 1, "sync": [{"target": "c.io/d"}]},
        {"version": 1, "sync": [{"source": "a.io/b", "target": {"ref": "c.io/d", "compression": "brotli"}}]},
        {"version": 1, "registries": {"a.io": {"auth": {"username": "u"}}}},
        {"version": 1, "registries": {"a.io": {"tls": {"client_cert": "/c"}}}},
        {"version": 1, "sync": [{"source": "a.io/b", "target": "c.io/d", "tags": {"latest": 0}}]},
    ],
)
def test_invalid_documents_are_rejected(
    validator: jsonschema.Draft7Validator, document: dict[str, Any]
) -> None:
    assert _errors(validator, document)


def _props(schema: dict[str, Any], *path: str) -> set[str]:
    node = schema
    for part in path:
        node = node[part]
    return set(node["properties"])


def test_schema_keys_match_the_loader(schema: dict[str, Any]) -> None:
    defs = ("definitions",)
    assert _props(schema) == set(loader.ROOT_KEYS)
    assert _props(schema, *defs, "registry") == set(registries.REGISTRY_KEYS)
    assert _props(schema, *defs, "registry", "properties", "auth") == set(registries.AUTH_KEYS)
    tls_object = schema["definitions"]["registry"]["properties"]["tls"]["oneOf"][1]
    assert set(tls_object["properties"]) == set(registries.TLS_KEYS)
    assert _props(schema, "properties", "server") == set(registries.SERVER_KEYS)
    assert _props(schema, *defs, "entry") == set(entries.ENTRY_KEYS)
    assert _props(schema, "properties", "defaults") == set(entries.DEFAULTS_KEYS)
    assert set(schema["definitions"]["target"]["oneOf"][1]["properties"]) == set(fields.TARGET_KEYS)
    assert set(schema["definitions"]["tags"]["oneOf"][2]["properties"]) == set(fields.TAGS_KEYS)
    assert schema["definitions"]["format"]["enum"] == list(fields.FORMATS)
    assert schema["definitions"]["compression"]["enum"] == list(fields.COMPRESSIONS)


def test_example_config_mentions_every_key() -> None:
    text = EXAMPLE.read_text()
    every = {
        *loader.ROOT_KEYS,
        *registries.REGISTRY_KEYS,
        *registries.AUTH_KEYS,
        *registries.TLS_KEYS,
        *registries.SERVER_KEYS,
        *entries.ENTRY_KEYS,
        *entries.DEFAULTS_KEYS,
        *fields.TARGET_KEYS,
        *fields.TAGS_KEYS,
    }
    missing = sorted(k for k in every if not re.search(rf"(^|[\s{{,#-]){re.escape(k)}:", text, re.M))
    assert missing == []
