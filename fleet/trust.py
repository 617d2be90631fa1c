"""Trust policies: which GitLab id_tokens may assume a project's role.

A token passes only with this provider, the exact audience and a `sub` naming this project's
exact path (case kept) and an allowed ref. Exact refs use StringEquals; only refs with a glob (or
a literal `${`, escaped as `${$}{`) use StringLike, in a statement of their own (operators inside
one Condition block are ANDed). Ref globs follow StringLike: `*` also crosses `/`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from .config import RefRule

ASSUME_ACTION = "sts:AssumeRoleWithWebIdentity"
GITLAB_COM = "gitlab.com"
TRUST_POLICY_MAX_CHARS = 2048  # IAM's default quota for a role trust policy


def condition_prefix(issuer: str) -> str:
    """The condition-key prefix and provider ARN suffix: the issuer without https://, path kept."""
    return issuer.removeprefix("https://").rstrip("/")


def provider_arn(account_id: str, issuer: str) -> str:
    return f"arn:aws:iam::{account_id}:oidc-provider/{condition_prefix(issuer)}"


def has_glob(pattern: str) -> bool:
    return "*" in pattern or "?" in pattern


def escape_value(value: str) -> str:
    """Keep '${...}' literal in a condition value: IAM would read it as a policy variable."""
    return value.replace("$", "${$}") if "${" in value else value


@dataclass(frozen=True)
class ProjectRef:
    """One ref a project's tokens may carry: ref_type branch|tag, a name or (glob=True) a pattern."""

    ref_type: str
    ref: str
    glob: bool = False


def resolve_refs(rules: tuple[RefRule, ...], default_branch: str | None) -> list[ProjectRef]:
    """The stack's ref rules for one project; `{default_branch}` becomes its default branch, if any."""
    out: list[ProjectRef] = []
    for rule in rules:
        if rule.is_default_branch:
            if default_branch is None:
                continue
            ref = ProjectRef("branch", default_branch)  # a name from GitLab: always matched exactly
        else:
            ref = ProjectRef(rule.ref_type, rule.pattern, has_glob(rule.pattern))
        if ref not in out:
            out.append(ref)
    return out


def sub_claim(project_path: str, ref: ProjectRef) -> str:
    """GitLab's default `sub`: project_path:<path>:ref_type:<type>:ref:<ref>."""
    return f"project_path:{project_path}:ref_type:{ref.ref_type}:ref:{ref.ref}"


def trust_policy(*, issuer: str, provider: str, audience: str, project_id: int, project_path: str,
                 refs: list[ProjectRef]) -> dict[str, Any]:
    """The role's trust policy. `refs` must not be empty."""
    if not refs:
        raise ValueError(f"project {project_path} has no allowed refs")
    prefix = condition_prefix(issuer)
    pinned: dict[str, Any] = {f"{prefix}:aud": audience}
    if prefix == GITLAB_COM:  # AWS offers this key for gitlab.com only; it survives path reuse
        pinned[f"{prefix}:project_id"] = str(project_id)
    subs = [(escape_value(sub_claim(project_path, r)), r.glob) for r in refs]
    # A value holding `${$}` goes under StringLike too: IAM documents its special characters for
    # StringLike, so the project's own tokens match however StringEquals treats them. Such a value
    # has no `*` or `?` (git refs cannot hold them), so StringLike still matches it exactly.
    exact = [sub for sub, glob in subs if not glob and "${" not in sub]
    globbed = [sub for sub, glob in subs if glob or "${" in sub]
    statements = []
    if exact:
        statements.append(_statement("ExactRefs", provider, {"StringEquals": {**pinned, f"{prefix}:sub": exact}}))
    if globbed:
        statements.append(_statement("RefPatterns", provider, {"StringEquals": dict(pinned), "StringLike": {f"{prefix}:sub": globbed}}))
    return {"Version": "2012-10-17", "Statement": statements}


def _statement(sid: str, provider: str, condition: dict[str, Any]) -> dict[str, Any]:
    return {"Sid": f"GitLab{sid}", "Effect": "Allow", "Principal": {"Federated": provider},
            "Action": ASSUME_ACTION, "Condition": condition}


def policy_size(policy: dict[str, Any]) -> int:
    """Characters IAM counts for a policy (no insignificant whitespace)."""
    return len(json.dumps(policy, separators=(",", ":")))
