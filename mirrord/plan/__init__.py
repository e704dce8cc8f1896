"""The sync plan: YAML (version 1) -> frozen, validated objects.

A plan that does not validate is rejected whole; every :class:`PlanError` names the file, the line and
the key (``mirrord.yaml:14: sync[2].tags.semver: '>=1.x' is not a version range (...)``). The format is
described in the product contract and, key by key, in ``config/mirrord.yaml``;
``mirrord/plan_schema.json`` is the same shape as a JSON Schema for editors.

Modules: ``model`` (the objects), ``nodes`` (YAML nodes with lines), ``registries`` (``registries:``
and ``server:``), ``fields`` and ``entries`` (``defaults:`` and ``sync:``), ``loader``, ``output``
(``plan_to_dict``, ``check_secrets``), ``overlap`` (checks across entries, ``plan_warnings``).
"""

from mirrord.plan.loader import load_plan, parse_plan
from mirrord.plan.model import Entry, Plan, PlanError, ServerConfig, SignConfig, TargetConfig
from mirrord.plan.output import check_secrets, plan_to_dict
from mirrord.plan.overlap import plan_warnings

__all__ = [
    "Entry",
    "Plan",
    "PlanError",
    "ServerConfig",
    "SignConfig",
    "TargetConfig",
    "check_secrets",
    "load_plan",
    "parse_plan",
    "plan_to_dict",
    "plan_warnings",
]
