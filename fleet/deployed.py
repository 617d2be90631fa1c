"""Role names a stack has deployed: its `roleNames` output (project id -> role name), validated.

`pulumi up` reads them from the stack's own previous outputs; `plan --deployed FILE` from
`pulumi stack output --json` saved to a file. Names already deployed win over the naming rule, so
that no project's role is renamed because another project came, went or was skipped. The same outputs
say what each project's sub-claim resource holds (`subClaims`), which the plan trusts while it goes.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import FleetError
from .inventory import Project
from .jsonfile import read_json
from .spelling import spell
from .trust import HeldSubClaims

OUTPUT = "roleNames"
ROLES_OUTPUT = "roles"
POLICIES_OUTPUT = "policies"  # project id -> {"attached": [ARN, ...], "inline": {name: characters}}
SUB_CLAIMS_OUTPUT = "subClaims"  # project id -> {"components": set by the stack, "original": found before}
_ROLE_NAME_RE = re.compile(r"[A-Za-z0-9+=,.@_-]{1,64}")
_PROJECT_ID_RE = re.compile(r"[1-9][0-9]{0,18}")


def parse_deployed(value: Any, source: str) -> dict[int, str]:
    """The `roleNames` map (`{"<project id>": "<role name>"}`); None (never deployed) is empty."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise FleetError(f"{source}: {OUTPUT} is {type(value).__name__}; expected a map of project id to role name")
    names: dict[int, str] = {}
    for key, name in value.items():
        if not isinstance(key, str) or not _PROJECT_ID_RE.fullmatch(key):
            raise FleetError(f"{source}: {OUTPUT} key {spell(key)} is not a project id")
        if not isinstance(name, str) or not _ROLE_NAME_RE.fullmatch(name):
            raise FleetError(f"{source}: {OUTPUT}[{key}] is {spell(name)}; expected an IAM role name")
        names[int(key)] = name
    return names


@dataclass(frozen=True)
class DeployedPolicies:
    """What one role holds now: while an `up` changes it, the old and the new are attached together."""

    attached: frozenset[str] = frozenset()  # managed policy ARNs
    inline: Mapping[str, int] = field(default_factory=dict)  # inline policy name -> characters IAM counts


@dataclass(frozen=True)
class Deployed:
    """The role names a stack holds now, and each role's policies."""

    names: Mapping[int, str] = field(default_factory=dict)  # project id -> role name
    reserved: frozenset[str] = frozenset()  # names of roles whose project the listing does not show
    policies: Mapping[int, DeployedPolicies] = field(default_factory=dict)
    sub_claims: Mapping[int, HeldSubClaims] = field(default_factory=dict)  # see parse_sub_claims


def _count(value: Any) -> int | None:
    """A character count from a stack output (numbers cross Pulumi's RPC as floats), or None when it is not one."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0 or value != int(value):
        return None
    return int(value)


def parse_policies(value: Any, source: str) -> dict[int, DeployedPolicies]:
    """The `policies` output; None (a stack deployed before it existed) is empty."""
    if value is None:
        return {}
    wrong = f"{source}: {POLICIES_OUTPUT} is {spell(value)[:120]}; expected a map of project id to {{attached, inline}}"
    if not isinstance(value, Mapping):
        raise FleetError(wrong)
    out: dict[int, DeployedPolicies] = {}
    for key, item in value.items():
        attached = item.get("attached") if isinstance(item, Mapping) else None
        inline = item.get("inline") if isinstance(item, Mapping) else None
        if (not isinstance(key, str) or not _PROJECT_ID_RE.fullmatch(key) or not isinstance(attached, list)
                or not all(isinstance(a, str) for a in attached) or not isinstance(inline, Mapping)
                or not all(isinstance(n, str) and _count(c) is not None for n, c in inline.items())):
            raise FleetError(wrong)
        out[int(key)] = DeployedPolicies(frozenset(attached), {n: _count(c) or 0 for n, c in inline.items()})
    return out


def _claim_names(value: Any) -> tuple[str, ...] | None:
    return tuple(value) if isinstance(value, list) and value and all(isinstance(c, str) for c in value) else None


def parse_sub_claims(value: Any, source: str) -> dict[int, HeldSubClaims]:
    """The `subClaims` output: per project, the sub claim components the stack set and those it found before
    (given back when it stops setting them); None (a stack that never set any) is empty."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise FleetError(f"{source}: {SUB_CLAIMS_OUTPUT} is {type(value).__name__}, not a map of project id to "
                         "{components, original}; nothing was planned.")
    out: dict[int, HeldSubClaims] = {}
    for key, item in value.items():
        components = _claim_names(item.get("components")) if isinstance(item, Mapping) else None
        original = _claim_names(item.get("original")) if isinstance(item, Mapping) else None
        if not isinstance(key, str) or not _PROJECT_ID_RE.fullmatch(key) or components is None or original is None:
            raise FleetError(f"{source}: {SUB_CLAIMS_OUTPUT} entry {spell(key)} is not a project id with the components "
                             "the stack set and found before (components, original); nothing was planned.")
        out[int(key)] = HeldSubClaims(components, original)
    return out


def deployed_names(outputs: Mapping[str, Any], projects: Iterable[Project], source: str,
                   owner_of: Callable[[str], int | None] | None = None) -> Deployed:
    """What a stack holds, from its outputs: role names (see `_names`), each role's policies and each project's
    sub-claim resource."""
    return dataclasses.replace(_names(outputs, projects, source, owner_of),
                               policies=parse_policies(outputs.get(POLICIES_OUTPUT), source),
                               sub_claims=parse_sub_claims(outputs.get(SUB_CLAIMS_OUTPUT), source))


def _names(outputs: Mapping[str, Any], projects: Iterable[Project], source: str,
           owner_of: Callable[[str], int | None] | None) -> Deployed:
    """From a stack's outputs: `roleNames`, or for a stack deployed before that output existed, its `roles`
    output (project path -> role ARN). There a role's project is `owner_of(name)` (pulumi up reads the
    role's gitlab-project-id tag); without it, the id a suffixed name ends with, else the project now at
    that path. A name whose project the listing does not show stays reserved: its role exists until this
    run deletes it."""
    if outputs.get(OUTPUT) is not None:
        return Deployed(parse_deployed(outputs[OUTPUT], source))
    roles = outputs.get(ROLES_OUTPUT)
    if roles is None:
        return Deployed()
    if not isinstance(roles, Mapping):
        raise FleetError(f"{source}: {ROLES_OUTPUT} is {type(roles).__name__}; expected a map of project path to role ARN")
    listed = {p.id for p in projects}
    by_path = {p.path.casefold(): p.id for p in projects}
    names: dict[int, str] = {}
    reserved = set()
    for path, arn in roles.items():
        name = arn.rsplit("/", 1)[-1] if isinstance(arn, str) else None
        if not isinstance(path, str) or name is None or not _ROLE_NAME_RE.fullmatch(name):
            raise FleetError(f"{source}: {ROLES_OUTPUT}[{spell(path)}] is {spell(arn)}; expected a role ARN")
        if owner_of is not None:
            owner = owner_of(name)
        else:
            _, underscore, suffix = name.rpartition("_")  # naming.suffixed_role_name ends in _<project id>
            owner = int(suffix) if underscore and _PROJECT_ID_RE.fullmatch(suffix) else by_path.get(path.casefold())
        if owner in listed and owner not in names:
            names[owner] = name
        else:
            reserved.add(name)
    return Deployed(names, frozenset(reserved))


def load_deployed(path: str, projects: Iterable[Project]) -> Deployed:
    """What a stack holds (see `deployed_names`), from a file holding its outputs (`pulumi stack output --json > FILE`)."""
    outputs = read_json(path, "stack outputs")
    if not isinstance(outputs, Mapping):
        raise FleetError(f"{path}: expected the stack's outputs as a JSON object (pulumi stack output --json)")
    if outputs.get(OUTPUT) is None and outputs.get(ROLES_OUTPUT) is None:
        raise FleetError(f"{path} has neither a {OUTPUT} nor a {ROLES_OUTPUT} output: give the outputs of a "
                         "deployed stack, or leave --deployed out for a stack that holds no roles yet")
    return deployed_names(outputs, projects, path)


def deployed_output(names: Mapping[int, str]) -> dict[str, str]:
    """The `roleNames` output for these names."""
    return {str(project_id): name for project_id, name in sorted(names.items())}
