"""The per-registry ``stall_timeout`` plan key: parsed as a duration, shown by check, used as the
read timeout of that registry's requests only."""

from __future__ import annotations

import pytest

from mirrord.plan.loader import parse_plan
from mirrord.plan.model import PlanError
from mirrord.plan.output import plan_to_dict
from mirrord.registry.http.transport import DEFAULT_READ_TIMEOUT, Transport
from mirrord.registry.settings import RegistrySettings

PLAN = """\
version: 1
registries:
  slow.example.com:
    stall_timeout: 1500ms
  other.example.com: {}
sync:
  - source: slow.example.com/a
    target: other.example.com/a
"""


def test_stall_timeout_is_a_registry_duration() -> None:
    plan = parse_plan(PLAN, "p.yaml")
    assert plan.registries["slow.example.com"].stall_timeout == 1.5
    assert plan.registries["other.example.com"].stall_timeout is None
    assert plan_to_dict(plan)["registries"]["slow.example.com"]["stall_timeout"] == 1.5


@pytest.mark.parametrize("value", ["0s", "soon", "[1]"])
def test_bad_stall_timeout_names_the_key(value: str) -> None:
    with pytest.raises(PlanError, match=r"p\.yaml:4: registries\[slow\.example\.com\]\.stall_timeout"):
        parse_plan(PLAN.replace("1500ms", value), "p.yaml")


def test_stall_timeout_becomes_that_registrys_read_timeout() -> None:
    transport = Transport(read_timeout=DEFAULT_READ_TIMEOUT)
    assert transport.timeout_for(RegistrySettings(host="a.io")).sock_read == DEFAULT_READ_TIMEOUT
    stalled = transport.timeout_for(RegistrySettings(host="b.io", stall_timeout=1.5))
    assert stalled.sock_read == 1.5
    assert stalled.sock_connect == transport.timeout.sock_connect
    assert transport.timeout_for(RegistrySettings(host="c.io", stall_timeout=1.5)) is stalled  # cached
