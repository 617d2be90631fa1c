"""Trust policies: which GitLab id_tokens may assume a project's role.

A token passes only with this provider, the exact audience and a `sub` naming this project (its
exact path, case kept, or its id) and an allowed ref. Exact refs use StringEquals; only refs with a
glob (or a literal `${`, escaped as `${$}{`) use StringLike, in a statement of their own (operators
inside one Condition block are ANDed). Ref globs follow StringLike: `*` also crosses `/`.

A project's `sub` is made of its `ci_id_token_sub_claim_components`, each as `name:value`, joined
with `:`. `plan_subject` decides, per project, which component lists ("forms") its role trusts in
this run: both the listed and the wanted form while the stack switches one, then the wanted one.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
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


Components = tuple[str, ...]
DEFAULT_COMPONENTS: Components = ("project_path", "ref_type", "ref")  # GitLab's default `sub`
FIRST_COMPONENTS = ("project_path", "project_id")  # what GitLab allows first; either names the project alone
REF_PROTECTED = "ref_protected"
_AFTER_FIRST = ("ref_type", "ref", REF_PROTECTED)

# Phases of a project's `sub` in one run (shown by `plan` and the preview):
APPLIED = "applied"  # its tokens carry the stack's form; only that form is trusted
SWITCHING = "switching"  # the stack changes its form in this run: the listed and the new form are both trusted
CUSTOM = "custom"  # set on the project by hand (the stack does not manage it) to a form trusted as it is


def wanted_components(subject: str, ref_protected: bool) -> Components:
    """The components a stack gives its projects: `sub` starting with project_path or project_id, then
    ref_type and ref, and ref_protected when pipelines must run on protected refs (self-managed)."""
    first = "project_id" if subject == "id" else "project_path"
    return (first, "ref_type", "ref", *((REF_PROTECTED,) if ref_protected else ()))


def components_problem(components: Sequence[str]) -> str | None:
    """Why a `sub` made of `components` cannot be trusted safely as this project's, or None.

    Safe: project_path or project_id first (either names the project alone; neither value can hold `:`), then
    ref_type and ref (without them another ref type or any ref would pass), and optionally ref_protected, once
    each, in any order. Other components (environment, deployment tier, job or fork claims) are refused.
    """
    listed = ", ".join(components) or "none"
    if not components or components[0] not in FIRST_COMPONENTS:
        return f"its sub starts with {components[0] if components else 'nothing'}, not project_path or project_id ({listed})"
    rest = components[1:]
    unknown = [c for c in rest if c not in _AFTER_FIRST]
    if unknown:
        return f"its sub holds {', '.join(unknown)}, which this program does not trust ({listed})"
    if len(set(rest)) != len(rest) or not {"ref_type", "ref"} <= set(rest):
        return f"its sub must hold ref_type and ref once each ({listed})"
    return None


def sub_claims(components: Sequence[str], project_id: int, project_path: str, ref: ProjectRef,
               protected_only: bool) -> list[str]:
    """The `sub` values a project's tokens for `ref` carry with `components` (safe ones: see components_problem);
    with ref_protected, "true" only when `protected_only`, else both values."""
    values = {"project_path": [project_path], "project_id": [str(project_id)], "ref_type": [ref.ref_type],
              "ref": [ref.ref], REF_PROTECTED: ["true"] if protected_only else ["true", "false"]}
    subs = [""]
    for name in components:
        subs = [f"{sub}{':' if sub else ''}{name}:{value}" for sub in subs for value in values[name]]
    return subs


def sub_claim(project_path: str, ref: ProjectRef) -> str:
    """GitLab's default `sub`: project_path:<path>:ref_type:<type>:ref:<ref>."""
    return f"project_path:{project_path}:ref_type:{ref.ref_type}:ref:{ref.ref}"


@dataclass(frozen=True)
class SubjectPlan:
    """What one project's `sub` is made of in this run, and what its role trusts."""

    components: Components  # what its tokens carry once the run is done
    phase: str  # APPLIED, SWITCHING or CUSTOM
    trusted: tuple[Components, ...]  # the forms its role trusts in this run
    managed: bool  # the stack sets the project's components (a sub-claim resource)


@dataclass(frozen=True)
class HeldSubClaims:
    """One project's entry in a stack's `subClaims` output: what its sub-claim resource holds."""

    components: Components  # what the stack set
    original: Components  # what it found before, given back when the resource goes


def plan_subject(listed: Components | None, wanted: Components, *, managed: bool,
                 restoring: HeldSubClaims | None = None) -> SubjectPlan | str:
    """The project's subject plan, or why it cannot get a role (a hand-made form this program cannot trust).

    `listed`: its components in the listing (None: not shown, then what the stack set, if it did, else GitLab's
    default is assumed: a hand-made form fails closed). `managed`: the stack sets them to `wanted`; the caller
    refuses a project whose components are not listed then. `restoring`: what the stack's sub-claim resource
    holds for the project; when the stack no longer manages it, the resource is deleted in this run, which
    gives `original` back.
    """
    if managed:
        assert listed is not None, "a managed project's components must be listed"
        if listed == wanted:
            return SubjectPlan(wanted, APPLIED, (wanted,), True)
        wrong = components_problem(listed)
        if wrong:
            return f"{wrong}; set it back to {', '.join(wanted)} (or GitLab's default) to have it managed"
        return SubjectPlan(wanted, SWITCHING, (listed, wanted), True)
    current = listed
    if current is None:  # not shown: what the stack set, if it did, else GitLab's default
        current = restoring.components if restoring is not None else DEFAULT_COMPONENTS
    wrong = components_problem(current)
    if wrong:
        return f"{wrong}; set it back to GitLab's default ({', '.join(DEFAULT_COMPONENTS)})"
    back = restoring.original if restoring is not None else None
    if back is not None and back != current and components_problem(back) is None:
        return SubjectPlan(back, SWITCHING, (current, back), False)
    return SubjectPlan(current, APPLIED if current == DEFAULT_COMPONENTS else CUSTOM, (current,), False)


def trust_policy(*, issuer: str, provider: str, audience: str, project_id: int, project_path: str,
                 refs: list[ProjectRef], forms: Sequence[Components] = (DEFAULT_COMPONENTS,),
                 protected_only: bool = False) -> dict[str, Any]:
    """The role's trust policy: the project's tokens for `refs` with a `sub` of any of `forms` (each safe, see
    components_problem). `protected_only`: only tokens of protected refs (gitlab.com: its ref_protected key; a
    form with ref_protected: its "true" value). `refs` must not be empty."""
    if not refs:
        raise ValueError(f"project {project_path} has no allowed refs")
    for form in forms:
        wrong = components_problem(form)
        if wrong:
            raise ValueError(f"project {project_path}: {wrong}")
    prefix = condition_prefix(issuer)
    pinned: dict[str, Any] = {f"{prefix}:aud": audience}
    if prefix == GITLAB_COM:  # AWS offers these keys for gitlab.com only; project_id survives path reuse
        pinned[f"{prefix}:project_id"] = str(project_id)
        if protected_only:
            pinned[f"{prefix}:ref_protected"] = "true"
    subs: list[tuple[str, bool]] = []
    for form in forms:
        for r in refs:
            subs += [(escape_value(sub), r.glob) for sub in sub_claims(form, project_id, project_path, r, protected_only)
                     if (escape_value(sub), r.glob) not in subs]
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


def canonical_policy(document: Any) -> Any:
    """A policy document as IAM compares it: parsed when given as JSON text, key order, list order and one-item
    lists do not matter; neither does the case of Action values and condition key names, and a Condition value
    counts as its string form (true is "true", 10 is "10"). Text that is not JSON is returned as it is."""
    if isinstance(document, str):
        try:
            document = json.loads(document)
        except ValueError:
            return document
    return _canonical(document)


def _canonical(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _canonical(_condition(v) if k == "Condition" else _lowered(v) if k in ("Action", "NotAction") else v)
                for k, v in sorted(value.items())}
    if isinstance(value, list):
        items = [_canonical(v) for v in value]
        return items[0] if len(items) == 1 else sorted(items, key=lambda v: json.dumps(v, sort_keys=True))
    return value


def _lowered(value: Any) -> Any:
    if isinstance(value, str):
        return value.lower()
    return [_lowered(v) for v in value] if isinstance(value, list) else value


def _condition(block: Any) -> Any:
    """A Condition block with its key names lowercased (unless two would become one) and its values as text."""
    if not isinstance(block, dict):
        return block
    out: dict[str, Any] = {}
    for operator, keys in block.items():
        if isinstance(keys, dict) and len({str(k).lower() for k in keys}) == len(keys):
            keys = {str(k).lower(): v for k, v in keys.items()}
        out[operator] = _as_text(keys)
    return out


def _as_text(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, dict):
        return {k: _as_text(v) for k, v in value.items()}
    return [_as_text(v) for v in value] if isinstance(value, list) else value
