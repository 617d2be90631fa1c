"""The plan: (stack config, project listing) -> what the program declares. Pure Python, no I/O."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from .config import FleetConfig
from .errors import PlanError
from .inventory import Inventory, Project
from .naming import assign_role_names, helper_role_name
from .trust import TRUST_POLICY_MAX_CHARS, policy_size, provider_arn, resolve_refs, trust_policy

MANAGED_BY = "gitlab-aws-oidc-fleet"
ACCOUNT_VARIABLE = "GITLAB_AWS_ACCOUNT_ID"
ROLE_VARIABLE = "ROLE_ARN"
TAG_VALUE_MAX = 256
DESCRIPTION_MAX = 1000  # IAM's limit for a role description


@dataclass(frozen=True)
class VariablePlan:
    key: str
    value: str
    environment_scope: str
    protected: bool
    description: str
    masked: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "value": self.value, "environment_scope": self.environment_scope,
                "protected": self.protected, "masked": self.masked, "description": self.description}


@dataclass(frozen=True)
class PolicyPlan:
    """A policy to attach to a role. The policy library (a later issue) fills these in."""

    name: str
    document: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "document": self.document}


@dataclass(frozen=True)
class ProjectPlan:
    id: int
    path: str
    role_name: str
    role_arn: str
    refs: tuple[str, ...]  # the refs its tokens may carry, e.g. "branch:main", "tag:v*"
    trust_policy: dict[str, Any]
    description: str
    tags: dict[str, str]
    variables: tuple[VariablePlan, ...]
    policies: tuple[PolicyPlan, ...] = ()

    @property
    def helper_compatible(self) -> bool:
        """True when gitlab-aws-credential-helper derives this role's name by itself."""
        return self.role_name == helper_role_name(self.path)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "path": self.path, "role_name": self.role_name, "role_arn": self.role_arn,
                "helper_compatible": self.helper_compatible, "refs": list(self.refs), "trust_policy": self.trust_policy,
                "description": self.description,
                "policies": [p.to_json() for p in self.policies], "tags": self.tags,
                "variables": [v.to_json() for v in self.variables]}


@dataclass(frozen=True)
class Skipped:
    id: int
    path: str
    reason: str  # a keyword scripts can match: archived, pending-deletion, shared-in, ...
    detail: str

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "path": self.path, "reason": self.reason, "detail": self.detail}


@dataclass(frozen=True)
class Plan:
    stack: str
    account_id: str
    issuer: str
    audience: str
    provider_arn: str
    create_provider: bool
    group: str
    role_path: str
    max_session_duration: int
    permissions_boundary: str | None
    projects: tuple[ProjectPlan, ...]
    skipped: tuple[Skipped, ...]
    warnings: tuple[str, ...] = field(default=())

    def counts(self) -> dict[str, int]:
        reasons: dict[str, int] = {}
        for s in self.skipped:
            reasons[s.reason] = reasons.get(s.reason, 0) + 1
        return {"projects": len(self.projects) + len(self.skipped), "roles": len(self.projects),
                "skipped": len(self.skipped), **{f"skipped_{k.replace('-', '_')}": v for k, v in sorted(reasons.items())}}

    def to_json(self) -> dict[str, Any]:
        return {
            "stack": self.stack, "account_id": self.account_id, "issuer": self.issuer,
            "audience": self.audience, "provider_arn": self.provider_arn,
            "create_provider": self.create_provider, "group": self.group,
            "projects": [p.to_json() for p in self.projects],
            "skipped": [s.to_json() for s in self.skipped],
            "counts": self.counts(), "warnings": list(self.warnings),
        }


def glob_regex(pattern: str) -> re.Pattern[str]:
    """A path glob: '*' and '?' stay within one path segment, '**' crosses segments. Case-insensitive."""
    out = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out), re.IGNORECASE)


def _is_under(path: str, group_path: str) -> bool:
    return path.casefold().startswith(group_path.casefold() + "/")


def select_projects(config: FleetConfig, inventory: Inventory) -> tuple[list[Project], list[Skipped], list[str]]:
    """Split the listing into projects to plan and projects skipped with a reason; plus warnings."""
    gl = config.gitlab
    group_path = inventory.group.full_path
    excludes = [(g, glob_regex(g)) for g in gl.exclude]
    used_excludes: set[str] = set()
    selected: list[Project] = []
    skipped: list[Skipped] = []

    def skip(p: Project, reason: str, detail: str) -> None:
        skipped.append(Skipped(p.id, p.path, reason, detail))

    for p in sorted(inventory.projects, key=lambda p: p.id):
        namespace = p.path.rsplit("/", 1)[0]
        if not _is_under(p.path, group_path):
            # GitLab lists a project from outside the group only when it is shared into it.
            if not gl.include_shared:
                skip(p, "shared-in", f"shared into {group_path} from {namespace} (fleet:gitlab.includeShared is false)")
                continue
            if not any(g == group_path.casefold() or _is_under(g, group_path) for g in p.shared_with):
                skip(p, "outside-group", f"{namespace} is not inside group {group_path}, and its shared_with_groups does not name it")
                continue
        elif not gl.include_subgroups and namespace.casefold() != group_path.casefold():
            skip(p, "subgroup", f"in subgroup {namespace} (fleet:gitlab.includeSubgroups is false)")
            continue
        if p.pending_deletion:
            skip(p, "pending-deletion", "marked for deletion")
            continue
        if p.archived and not gl.include_archived:
            skip(p, "archived", "archived (fleet:gitlab.includeArchived is false)")
            continue
        matched = next((g for g, rx in excludes if rx.fullmatch(p.path)), None)
        if matched is not None:
            used_excludes.add(matched)
            skip(p, "excluded", f"matches fleet:gitlab.exclude {matched!r}")
            continue
        selected.append(p)
    warnings = [f"fleet:gitlab.exclude {g!r} matches no project of {group_path}" for g in gl.exclude if g not in used_excludes]
    return selected, skipped, warnings


def _check_group(config: FleetConfig, inventory: Inventory) -> None:
    configured = config.gitlab.group
    group = inventory.group
    if configured.isdigit():
        if group.id is not None and group.id != int(configured):
            raise PlanError(f"the listing is of group {group.full_path} (id {group.id}), but fleet:gitlab.group is {configured}")
    elif configured.casefold() != group.full_path.casefold():
        raise PlanError(f"the listing is of group {group.full_path}, but fleet:gitlab.group is {configured}")


def clip(value: str, limit: int) -> str:
    """Cut a display value (tag, description) to an IAM limit, marking the cut."""
    return value if len(value) <= limit else value[: limit - 3] + "..."


def build_plan(config: FleetConfig, inventory: Inventory, stack: str) -> Plan:
    _check_group(config, inventory)
    candidates, skipped, warnings = select_projects(config, inventory)
    selected = []
    for p in candidates:
        refs = resolve_refs(config.refs, p.default_branch)
        if refs:
            selected.append((p, refs))
        else:
            skipped.append(Skipped(p.id, p.path, "no-refs", "no default branch (empty repository) and fleet:trust.refs allows only {default_branch}"))
    names = assign_role_names((p.id, p.path) for p, _ in selected)
    provider = config.oidc.provider_arn or provider_arn(config.account_id, config.issuer)
    role_path = config.role.path
    scope = config.variables.environment_scope
    protected = config.variables.protected
    managed = f"Managed by {MANAGED_BY} (stack {stack}); edits are overwritten."
    projects: list[ProjectPlan] = []
    too_large: list[str] = []
    for p, refs in selected:
        policy = trust_policy(issuer=config.issuer, provider=provider, audience=config.oidc.audience,
                              project_id=p.id, project_path=p.path, refs=refs)
        size = policy_size(policy)
        if size > TRUST_POLICY_MAX_CHARS:
            too_large.append(f"{p.path} ({size} characters)")
        role_name = names[p.id]
        role_arn = f"arn:aws:iam::{config.account_id}:role{role_path}{role_name}"
        projects.append(ProjectPlan(
            id=p.id, path=p.path, role_name=role_name, role_arn=role_arn,
            refs=tuple(f"{r.ref_type}:{r.ref}" for r in refs), trust_policy=policy,
            description=clip(f"GitLab CI of {p.path} (project {p.id}); managed by {MANAGED_BY} stack {stack}", DESCRIPTION_MAX),
            tags={"gitlab-project-id": str(p.id), "gitlab-project-path": clip(p.path, TAG_VALUE_MAX),
                  "fleet-stack": stack, "managed-by": MANAGED_BY},
            variables=(
                VariablePlan(ACCOUNT_VARIABLE, config.account_id, scope, protected, managed),
                VariablePlan(ROLE_VARIABLE, role_arn, scope, protected, managed),
            ),
        ))
    if too_large:
        raise PlanError(f"trust policies over IAM's {TRUST_POLICY_MAX_CHARS}-character limit; allow fewer refs in "
                        f"fleet:trust.refs (use a glob) for: {', '.join(too_large)}")
    suffixed = [p for p in projects if not p.helper_compatible]
    if suffixed:
        warnings.append(f"{len(suffixed)} role name(s) carry an id suffix because another project's path gives the same "
                        f"name; their pipelines must use ROLE_ARN or give the credential helper --role-name: "
                        f"{', '.join(p.path + ' -> ' + p.role_name for p in suffixed)}")
    if role_path != "/":
        warnings.append(f"fleet:role.path is {role_path!r}: gitlab-aws-credential-helper assumes roles at path '/', so pipelines must use ROLE_ARN")
    skipped.sort(key=lambda s: s.id)
    return Plan(
        stack=stack, account_id=config.account_id, issuer=config.issuer, audience=config.oidc.audience,
        provider_arn=provider, create_provider=config.oidc.provider_arn is None, group=inventory.group.full_path,
        role_path=role_path, max_session_duration=config.role.max_session_duration,
        permissions_boundary=config.role.permissions_boundary,
        projects=tuple(projects), skipped=tuple(skipped), warnings=tuple(warnings),
    )
