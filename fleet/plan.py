"""The plan's types and their JSON: what the program declares for one stack. Built by `planner.build_plan`."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .config import ShardConfig
from .naming import helper_role_name

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
    """A policy library entry on one role: inline (its own rendered document), or an attached managed policy."""

    name: str  # the library entry
    attachment: str  # "inline" | "managed" (the stack's shared policy) | "aws-managed"
    reason: str  # "default" | "rule N" | "topic aws:<entry>"
    arn: str | None = None  # managed, aws-managed
    document: dict[str, Any] | None = None  # inline
    size: int = 0  # inline: the characters IAM counts (not in the JSON)

    def to_json(self) -> dict[str, Any]:
        body = {"arn": self.arn} if self.document is None else {"document": self.document}
        return {"name": self.name, "attachment": self.attachment, **body, "reason": self.reason}


@dataclass(frozen=True)
class ManagedPolicyPlan:
    """A library entry without per-project placeholders: one customer managed policy of the stack."""

    name: str  # the library entry
    policy_name: str  # its IAM name
    path: str
    arn: str
    document: dict[str, Any]
    description: str
    attached_to: int  # how many roles

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "arn": self.arn, "document": self.document, "attached_to": self.attached_to}


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
    # Its `sub` (ci_id_token_sub_claim_components) once the run is done, the phase (trust.APPLIED, SWITCHING,
    # CUSTOM), and whether the stack sets the components (a sub-claim resource).
    sub_components: tuple[str, ...] = ("project_path", "ref_type", "ref")
    sub_phase: str = "applied"
    manage_sub_claim: bool = False

    def policies_output(self) -> dict[str, Any]:
        """What the role holds after `up`, for the stack's `policies` output (the next run's quota check)."""
        return {"attached": [p.arn for p in self.policies if p.document is None],
                "inline": {p.name: p.size for p in self.policies if p.document is not None}}

    @property
    def helper_compatible(self) -> bool:
        """True when gitlab-aws-credential-helper derives this role's name by itself."""
        return self.role_name == helper_role_name(self.path)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "path": self.path, "role_name": self.role_name, "role_arn": self.role_arn,
                "helper_compatible": self.helper_compatible, "refs": list(self.refs), "trust_policy": self.trust_policy,
                "description": self.description,
                "policies": [p.to_json() for p in self.policies], "tags": self.tags,
                "variables": [v.to_json() for v in self.variables],
                "subject": {"components": list(self.sub_components), "phase": self.sub_phase,
                            "managed": self.manage_sub_claim}}


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
    managed_policies: tuple[ManagedPolicyPlan, ...] = ()
    shard: ShardConfig | None = None  # fleet:shard; None: the stack plans the whole group
    other_shards: int = 0  # listed projects of the group's other shards: neither planned nor listed as skipped

    @property
    def shard_text(self) -> str:
        """'shard 1 of 4' (numbered from 0), or '' for an unsharded stack."""
        return f"shard {self.shard.index} of {self.shard.count}" if self.shard else ""

    @property
    def no_roles_warning(self) -> str | None:
        """Said loudly when the plan gives no project a role: the group and why each project was skipped."""
        if self.projects:
            return None
        where = f"group {self.group}" + (f" ({self.shard_text})" if self.shard else "")
        return f"no roles planned for {where}: " + (
            f"all {len(self.skipped)} listed projects are skipped ({self.skip_summary()})" if self.skipped
            else f"GitLab lists no projects{' of this shard' if self.shard else ''} in it")

    def skip_summary(self) -> str:
        """'2 archived, 1 excluded': how many projects were skipped for each reason."""
        return ", ".join(f"{n} {reason}" for reason, n in skip_reasons(self.skipped).items())

    @property
    def all_warnings(self) -> tuple[str, ...]:
        loud = self.no_roles_warning
        return ((loud,) if loud else ()) + self.warnings

    def counts(self) -> dict[str, int]:
        reasons = skip_reasons(self.skipped)
        shards = {"other_shards": self.other_shards} if self.shard else {}
        return {"projects": len(self.projects) + len(self.skipped) + self.other_shards, "roles": len(self.projects),
                "skipped": len(self.skipped), **shards,
                **{f"skipped_{k.replace('-', '_')}": v for k, v in sorted(reasons.items())}}

    def to_json(self) -> dict[str, Any]:
        return {
            "stack": self.stack, "account_id": self.account_id, "issuer": self.issuer,
            "audience": self.audience, "provider_arn": self.provider_arn,
            "create_provider": self.create_provider, "group": self.group,
            "shard": self.shard.to_json() if self.shard else None,
            "projects": [p.to_json() for p in self.projects],
            "managed_policies": [m.to_json() for m in self.managed_policies],
            "skipped": [s.to_json() for s in self.skipped],
            "counts": self.counts(), "warnings": list(self.all_warnings),
        }


def skip_reasons(skipped: Iterable[Skipped]) -> dict[str, int]:
    """How many projects were skipped for each reason, by reason."""
    reasons: dict[str, int] = {}
    for s in skipped:
        reasons[s.reason] = reasons.get(s.reason, 0) + 1
    return dict(sorted(reasons.items()))
