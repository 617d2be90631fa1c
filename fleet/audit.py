"""Audit: which IAM roles of the stack's account trust its GitLab issuer, whom they admit, and what is wrong.

The judging is pure (`audit_roles`): each role's trust policy is evaluated as IAM would
(`iam_conditions`) against probe tokens of every project of the group (its default branch and
`main`, the refs the trust itself names, a branch and a tag nobody protects) and of a project outside
the group; the admissions and the document itself give the findings. `read_account` is the thin
shell that reads the account with boto3.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from .errors import FleetError
from .iam_conditions import ALLOW, Policy, Statement, Unsupported, parse_policy
from .inventory import Project
from .plan import MANAGED_BY, Plan, ProjectPlan, Skipped
from .trust import GITLAB_COM, condition_prefix

HIGH, MEDIUM, LOW = "high", "medium", "low"
SEVERITIES = (HIGH, MEDIUM, LOW)

# code -> (severity, what it means): the README's findings table
FINDINGS: dict[str, tuple[str, str]] = {
    "AUD_ONLY": (HIGH, "admits a project outside the group: any project on the instance can assume it"),
    "MULTIPLE_PROJECTS": (HIGH, "admits more than one project of the group"),
    "OTHER_PRINCIPALS": (MEDIUM, "also trusts principals other than the issuer's provider (high when it trusts everyone)"),
    "UNPROTECTED_REFS": (MEDIUM, "admits a branch or tag of any name, which every Developer can push"),
    "NO_AUD": (MEDIUM, "an Allow statement without a condition on the audience (aud)"),
    "DIFFERS_FROM_PLAN": (MEDIUM, "a role of this stack whose trust is not the plan's, or whose project the plan has no role for"),
    "UNEVALUATED": (MEDIUM, "the trust uses something the audit cannot evaluate: review it by hand"),
    "WILDCARD_IN_STRINGEQUALS": (LOW, "a StringEquals value with * or ?, compared literally: it never matches"),
    "SET_OPERATOR": (LOW, "ForAnyValue/ForAllValues on a single-valued key (ForAllValues also passes when the key is missing)"),
    "FOREIGN_PROVIDER": (LOW, "names the issuer's provider of another account, which admits no token here"),
}

ANY_BRANCH = "fleet-audit-probe"  # a branch name nobody protects
ANY_TAG = "fleet-audit-probe"
OUTSIDER_PATH = "fleet-audit-outsider/probe"
LABEL_ANY_BRANCH, LABEL_ANY_TAG = "any branch", "any tag"
MANAGED_TAG, STACK_TAG, PROJECT_TAG = "managed-by", "fleet-stack", "gitlab-project-id"
_PROVIDER_RE = re.compile(r"arn:aws[a-z-]*:iam::([0-9]{12}):oidc-provider/(.+)", re.ASCII)
_SUB_HEAD_RE = re.compile(r"project_(path|id):([^:*?$]+):ref_type:", re.ASCII)
_SUB_REF_RE = re.compile(r"project_(?:path|id):[^:]*:ref_type:(branch|tag):ref:([^:$]+)(?::.*)?", re.ASCII)


class AwsError(FleetError):
    """The account could not be read (credentials, permissions, another account)."""


@dataclass(frozen=True)
class Role:
    name: str
    path: str
    arn: str
    trust: Mapping[str, Any]
    tags: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Finding:
    code: str
    severity: str
    message: str

    def to_json(self) -> dict[str, str]:
        return {"code": self.code, "severity": self.severity, "message": self.message}


def finding(code: str, message: str, severity: str | None = None) -> Finding:
    return Finding(code, severity or FINDINGS[code][0], message)


@dataclass(frozen=True)
class Admitted:
    """A project of the group a role admits, and with which refs ("branch:main", "any branch", ...)."""

    id: int
    path: str
    refs: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "path": self.path, "refs": list(self.refs)}


@dataclass(frozen=True)
class RoleAudit:
    name: str
    arn: str
    managed: bool  # tagged managed-by=gitlab-aws-oidc-fleet and fleet-stack=<this stack>
    managed_by_stack: str | None  # the fleet-stack tag of a fleet role (this stack or another)
    project_id: int | None  # the gitlab-project-id tag, where set
    admits: tuple[Admitted, ...] | None  # None: not evaluated (UNEVALUATED)
    admits_outside_group: bool
    findings: tuple[Finding, ...]

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "arn": self.arn, "managed": self.managed, "managed_by_stack": self.managed_by_stack,
                "project_id": self.project_id,
                "admits": None if self.admits is None else [a.to_json() for a in self.admits],
                "admits_outside_group": self.admits_outside_group, "findings": [f.to_json() for f in self.findings]}


@dataclass(frozen=True)
class AuditReport:
    stack: str
    account_id: str
    issuer: str
    group: str
    providers: tuple[str, ...]  # provider ARNs the probes were evaluated with
    audiences: tuple[str, ...]  # the aud values the probes carried
    roles: tuple[RoleAudit, ...]
    roles_read: int  # every role of the account
    notes: tuple[str, ...] = ()

    @property
    def findings(self) -> list[tuple[RoleAudit, Finding]]:
        order = {s: i for i, s in enumerate(SEVERITIES)}
        found = [(r, f) for r in self.roles for f in r.findings]
        return sorted(found, key=lambda rf: (order[rf[1].severity], rf[0].name, rf[1].code))

    def counts(self) -> dict[str, int]:
        found = [f for r in self.roles for f in r.findings]
        return {"roles_read": self.roles_read, "roles": len(self.roles), "managed": sum(r.managed for r in self.roles),
                "findings": len(found), **{s: sum(f.severity == s for f in found) for s in SEVERITIES}}

    @property
    def clean(self) -> bool:
        return not any(r.findings for r in self.roles)

    def to_json(self) -> dict[str, Any]:
        return {"stack": self.stack, "account_id": self.account_id, "issuer": self.issuer, "group": self.group,
                "providers": list(self.providers), "audiences": list(self.audiences), "clean": self.clean,
                "counts": self.counts(), "roles": [r.to_json() for r in self.roles], "notes": list(self.notes)}


# --- probe tokens ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Probe:
    project_id: int
    label: str  # "branch:main", "any branch", "any tag"
    context: dict[str, str]


def _subs(project_id: int, path: str, ref_type: str, ref: str, protected: bool,
          components: tuple[str, ...] | None) -> list[str]:
    """The `sub` values a token of this project and ref can carry: GitLab's default, starting with project_id
    instead (a Maintainer's choice), each with and without the ref_protected component, and the listed components."""
    values = {"project_path": path, "project_id": str(project_id), "ref_type": ref_type, "ref": ref,
              "ref_protected": "true" if protected else "false"}
    shapes = [("project_path", "ref_type", "ref"), ("project_id", "ref_type", "ref"),
              ("project_path", "ref_type", "ref", "ref_protected"), ("project_id", "ref_type", "ref", "ref_protected")]
    if components and all(c in values for c in components) and components not in shapes:
        shapes.append(components)
    return [":".join(f"{c}:{values[c]}" for c in shape) for shape in shapes]


def _probes(project_id: int, path: str, namespace_id: int | None, refs: Iterable[tuple[str, str, str, bool]],
            prefix: str, audiences: Sequence[str], components: tuple[str, ...] | None) -> list[Probe]:
    probes = []
    for label, ref_type, ref, protected in refs:
        for sub in _subs(project_id, path, ref_type, ref, protected, components):
            for aud in audiences:
                context = {f"{prefix}:sub": sub, f"{prefix}:aud": aud}
                if prefix == GITLAB_COM:  # AWS offers GitLab's other claims for gitlab.com only
                    namespace = path.rpartition("/")[0]
                    context.update({f"{prefix}:{k}": v for k, v in {
                        "project_id": str(project_id), "project_path": path, "namespace_path": namespace,
                        "namespace_id": str(namespace_id if namespace_id is not None else 0), "ref_type": ref_type,
                        "ref": ref, "ref_protected": "true" if protected else "false"}.items()})
                probes.append(Probe(project_id, label, context))
    return probes


def _named_refs(policy: Policy, prefix: str) -> set[tuple[str, str]]:
    """The refs and ref globs the trust's sub values name (`...:ref_type:tag:ref:v*`), probed for every project."""
    key = f"{prefix}:sub".lower()
    refs = set()
    for s in policy.statements:
        for c in s.conditions:
            if c.key == key and c.operator.positive_string:
                for text in c.raw_values:
                    match = _SUB_REF_RE.fullmatch(text)
                    if match and match.group(2) != "*":  # a lone * is what the any-branch/any-tag probes test
                        refs.add((match.group(1), match.group(2)))
    return refs


def _project_refs(project: Project, named: set[tuple[str, str]]) -> list[tuple[str, str, str, bool]]:
    """(label, ref_type, ref, protected) for one project."""
    default = project.default_branch or "main"
    refs = [(f"branch:{default}", "branch", default, True)]
    if default != "main":
        refs.append(("branch:main", "branch", "main", True))
    # A glob is probed with a name it matches (`v*` -> `vx`), as a protected ref: what the rule was written for.
    refs += [(f"{t}:{r}", t, r.replace("*", "x").replace("?", "x"), True) for t, r in sorted(named)
             if (t, r) not in (("branch", default), ("branch", "main"))]
    refs += [(LABEL_ANY_BRANCH, "branch", ANY_BRANCH, False), (LABEL_ANY_TAG, "tag", ANY_TAG, False)]
    return refs


# --- judging one role -----------------------------------------------------------------------------

def _issuer_providers(statement: Statement, prefix: str) -> list[tuple[str, str]]:
    """(account, ARN) of each provider for this issuer the statement names."""
    out = []
    for principal in statement.principals:
        match = _PROVIDER_RE.fullmatch(principal)
        if match and match.group(2).lower() == prefix.lower():
            out.append((match.group(1), principal))
    return out


def names_issuer(trust: Any, prefix: str) -> bool:
    """Whether a trust document names a provider for this issuer (of any account)."""
    return f":oidc-provider/{prefix}".lower() in json.dumps(trust).lower()


def trusts_issuer(trust: Any, prefix: str) -> bool:
    """Whether a trust document may admit this issuer's tokens: it names its provider, or a "*" anywhere."""
    return names_issuer(trust, prefix) or '"*"' in json.dumps(trust)


def canonical(value: Any) -> Any:
    """A policy document compared as IAM reads it: key order, list order and one-item lists do not matter."""
    if isinstance(value, Mapping):
        return {k: canonical(v) for k, v in sorted(value.items())}
    if isinstance(value, list):
        items = [canonical(v) for v in value]
        if len(items) == 1:
            return items[0]
        return sorted(items, key=lambda v: json.dumps(v, sort_keys=True))
    return value


def _document_findings(policy: Policy, prefix: str, account_id: str) -> list[Finding]:
    """Findings read from the document alone."""
    findings: list[Finding] = []
    aud_key, prefix_lower = f"{prefix}:aud".lower(), f"{prefix}:".lower()
    others: list[str] = []
    foreign: list[str] = []
    no_aud: list[str] = []
    literal: list[str] = []
    set_ops: list[str] = []
    for index, s in enumerate(policy.statements):
        if s.effect != "Allow":
            continue
        mine = {arn for _, arn in _issuer_providers(s, prefix)}
        others += [p for p in s.principals if p != "*" and p not in mine and p not in others]
        others += [p for p in s.other_principals if p not in others]
        if "*" in s.principals and "*" not in others:
            others.append("*")
        foreign += [arn for acct, arn in _issuer_providers(s, prefix) if acct != account_id and arn not in foreign]
        if not (_issuer_providers(s, prefix) or "*" in s.principals):
            continue
        name = s.sid or f"#{index + 1}"
        if not any(c.key == aud_key and c.operator.positive_string and c.operator.set_op != "ForAllValues"
                   for c in s.conditions):
            no_aud.append(name)
        for c in s.conditions:
            if c.operator.set_op and c.key.startswith(prefix_lower):
                set_ops.append(f"{c.operator.name} on {c.key} (statement {name})")
            if (c.operator.base in ("StringEquals", "StringEqualsIgnoreCase") and c.key.startswith(prefix_lower)
                    and c.key != aud_key):
                literal += [f"{c.key} {json.dumps(v)}" for v in c.raw_values if "*" in v or "?" in v]
    if others:
        wild = "*" in others
        findings.append(finding("OTHER_PRINCIPALS", ("trusts every principal (\"*\")" if wild else "also trusts "
                                + ", ".join(others[:5]) + (f" and {len(others) - 5} more" if len(others) > 5 else ""))
                                + ": only the GitLab provider should be able to assume it", HIGH if wild else None))
    if foreign:
        findings.append(finding("FOREIGN_PROVIDER", f"names {', '.join(foreign)}: a provider of another account, which "
                                "admits no token of this account's provider"))
    if no_aud:
        findings.append(finding("NO_AUD", f"statement {', '.join(no_aud)} has no StringEquals on {prefix}:aud: pin it to "
                                "the audience the pipelines request"))
    if literal:
        findings.append(finding("WILDCARD_IN_STRINGEQUALS", f"StringEquals compares * and ? literally: {'; '.join(literal)} "
                                "never matches a GitLab token; StringLike was meant (and may admit more)"))
    if set_ops:
        findings.append(finding("SET_OPERATOR", f"{'; '.join(set_ops)}: the key holds one value, so use the plain "
                                "operator (ForAllValues also passes a token without the key)"))
    return findings


def _admissions(policy: Policy, probes: list[Probe], principals: Sequence[str]) -> dict[int, list[str]]:
    admitted: dict[int, list[str]] = {}
    for probe in probes:
        labels = admitted.get(probe.project_id, [])
        if probe.label in labels:
            continue
        if any(policy.decide(p, probe.context) == ALLOW for p in principals):
            admitted.setdefault(probe.project_id, []).append(probe.label)
    return admitted


_NARROWING = ("StringEquals", "StringLike")
_HEAD_RE = re.compile(r"project_(path|id):([^:*?]+):", re.ASCII)


@dataclass(frozen=True)
class ProjectIndex:
    """The group's projects and the plan, indexed once for every role."""

    projects: tuple[Project, ...]
    by_id: Mapping[int, Project]
    by_path: Mapping[str, list[int]]
    planned: Mapping[int, ProjectPlan]
    skipped: Mapping[int, Skipped]
    outsider_id: int  # an id no project of the listing has

    @classmethod
    def of(cls, projects: Sequence[Project], plan: Plan) -> ProjectIndex:
        by_path: dict[str, list[int]] = {}
        for p in projects:
            by_path.setdefault(p.path, []).append(p.id)
        return cls(tuple(projects), {p.id: p for p in projects}, by_path, {p.id: p for p in plan.projects},
                   {s.id: s for s in plan.skipped}, max([p.id for p in projects], default=0) + 1_000_003)


def candidates(policy: Policy, prefix: str, principals: Sequence[str], index: ProjectIndex) -> set[int] | None:
    """The projects whose probes can pass, read from the trust (None: any may), so that a large fleet is not
    probed role by project. Sound by construction: every Allow statement that can admit a web identity must pin
    one project: a StringEquals/StringLike on sub (no variables) whose every value starts with a literal
    `project_path:<path>:` or `project_id:<id>:` (probe paths and ids hold no `:`), or on gitlab.com a StringEquals
    on project_id/project_path. Probes' keys are always present, so IfExists and set operators change nothing here."""
    by_path = index.by_path
    sub = f"{prefix}:sub".lower()
    pinned_keys = {f"{prefix}:project_id": "id", f"{prefix}:project_path": "path"} if prefix == GITLAB_COM else {}
    out: set[int] = set()
    for s in policy.statements:
        if s.effect != "Allow" or not s.covers("sts:AssumeRoleWithWebIdentity") or not any(s.names(p) for p in principals):
            continue
        pinned: set[int] | None = None
        for c in s.conditions:
            if c.operator.base not in _NARROWING or any("${" in v for v in c.raw_values):
                continue
            found: set[int] = set()
            if c.key == sub:
                for value in c.raw_values:
                    head = _HEAD_RE.match(value)
                    if head is None:
                        break
                    kind, name = head.groups()
                    found.update(by_path.get(name, []) if kind == "path" else _ids(name, index))
                else:
                    pinned = found
                    break
            elif pinned_keys.get(c.key) and c.operator.base == "StringEquals":
                kind = pinned_keys[c.key]
                pinned = {pid for v in c.raw_values for pid in (by_path.get(v, []) if kind == "path" else _ids(v, index))}
                break
        if pinned is None:
            return None
        out |= pinned
    return out


def _ids(text: str, index: ProjectIndex) -> list[int]:
    return [int(text)] if text.isascii() and text.isdigit() and int(text) in index.by_id else []


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def audit_role(role: Role, *, stack: str, account_id: str, prefix: str, principals: Sequence[str], audiences: Sequence[str],
               index: ProjectIndex) -> RoleAudit:
    """One role judged: managed or not, the group's projects it admits, findings."""
    tags = role.tags
    fleet_stack = tags.get(STACK_TAG) if tags.get(MANAGED_TAG) == MANAGED_BY else None
    managed = fleet_stack == stack
    tagged_id = tags.get(PROJECT_TAG, "")
    project_id = int(tagged_id) if re.fullmatch(r"[1-9][0-9]{0,18}", tagged_id, re.ASCII) else None
    findings: list[Finding] = []
    if managed:
        planned = index.planned.get(project_id) if project_id else None
        if planned is None:
            skipped = index.skipped.get(project_id) if project_id else None
            why = (f"skipped ({skipped.reason})" if skipped else "not in the group's listing") if project_id else "no gitlab-project-id tag"
            findings.append(finding("DIFFERS_FROM_PLAN", f"the plan has no role for project {project_id or '?'} ({why}): "
                                    "pulumi up deletes this role"))
        elif canonical(role.trust) != canonical(planned.trust_policy):
            findings.append(finding("DIFFERS_FROM_PLAN", f"its trust policy is not the plan's for {planned.path} (edited "
                                    "outside the program?): pulumi up puts the plan's back; `fleet drift` shows the change"))
    try:
        policy = parse_policy(role.trust)
    except Unsupported as err:
        findings.append(finding("UNEVALUATED", f"the trust uses {err}, which the audit does not evaluate: review it by hand"))
        return RoleAudit(role.name, role.arn, managed, fleet_stack, project_id, None, False, tuple(findings))
    findings += _document_findings(policy, prefix, account_id)
    named = _named_refs(policy, prefix)
    narrowed = candidates(policy, prefix, principals, index)
    chosen = index.projects if narrowed is None else [index.by_id[pid] for pid in sorted(narrowed)]
    probes = [pr for p in chosen for pr in _probes(p.id, p.path, p.namespace_id, _project_refs(p, named), prefix,
                                                    audiences, p.sub_claim_components)]
    outsider_id = index.outsider_id
    outsider_refs = [("branch:main", "branch", "main", True), (LABEL_ANY_BRANCH, "branch", ANY_BRANCH, False)]
    outsider = _probes(outsider_id, OUTSIDER_PATH, outsider_id, outsider_refs, prefix, audiences, None)
    admitted = _admissions(policy, probes, principals)
    outside_labels = [label for labels in _admissions(policy, outsider, principals).values() for label in labels]
    outside = bool(outside_labels)
    admits = tuple(Admitted(pid, index.by_id[pid].path, tuple(labels)) for pid, labels in sorted(admitted.items()))
    if outside:
        no_sub = all(not any(c.key == f"{prefix}:sub".lower() for c in s.conditions) for s in policy.statements
                     if s.effect == "Allow")
        findings.append(finding("AUD_ONLY", f"admits any project on the instance ({OUTSIDER_PATH} passes)"
                                + (f": no condition on {prefix}:sub" if no_sub else "") + "; pin sub to one project"))
    if len(admits) > 1:
        names = ", ".join(a.path for a in admits[:3]) + (f" and {len(admits) - 3} more" if len(admits) > 3 else "")
        findings.append(finding("MULTIPLE_PROJECTS", f"admits {_plural(len(admits), 'project')} of the group: {names}; "
                                "give each project a role of its own"))
    labels = [label for a in admits for label in a.refs] + outside_labels
    loose = sorted({label for label in labels if label in (LABEL_ANY_BRANCH, LABEL_ANY_TAG)})
    if loose:
        kinds = " and ".join(loose)
        pin = (f"pin {prefix}:ref_protected to \"true\" or name the refs" if prefix == GITLAB_COM
               else "name the refs (self-managed: a ref_protected:true component in sub is the only pin)")
        findings.append(finding("UNPROTECTED_REFS", f"admits {kinds} (an unprotected {ANY_BRANCH} passes): anyone who "
                                f"can push one gets the role; {pin}"))
    order = {s: i for i, s in enumerate(SEVERITIES)}
    findings.sort(key=lambda f: (order[f.severity], f.code))
    return RoleAudit(role.name, role.arn, managed, fleet_stack, project_id, admits, outside, tuple(findings))


def audit_roles(roles: Iterable[Role], *, plan: Plan, projects: Sequence[Project], principals: Sequence[str],
                audiences: Sequence[str], roles_read: int, notes: Sequence[str] = ()) -> AuditReport:
    """Every role that trusts the plan's issuer, judged; roles that do not are left out (counted in roles_read)."""
    prefix = condition_prefix(plan.issuer)
    index = ProjectIndex.of(projects, plan)
    judged = []
    for role in sorted(roles, key=lambda r: r.name.lower()):
        if not trusts_issuer(role.trust, prefix):
            continue
        audit = audit_role(role, stack=plan.stack, account_id=plan.account_id, prefix=prefix, principals=principals,
                           audiences=audiences, index=index)
        # A role that trusts every principal but admits no token of this issuer is not the audit's business.
        if names_issuer(role.trust, prefix) or audit.admits or audit.admits_outside_group:
            judged.append(audit)
    return AuditReport(stack=plan.stack, account_id=plan.account_id, issuer=plan.issuer, group=plan.group,
                       providers=tuple(principals), audiences=tuple(audiences), roles=tuple(judged), roles_read=roles_read,
                       notes=tuple(notes))


# --- reading the account (boto3) -----------------------------------------------------------------

@dataclass(frozen=True)
class Account:
    account_id: str
    roles: tuple[Role, ...]  # candidates only (trusting the issuer), with their tags
    roles_read: int
    providers: tuple[tuple[str, tuple[str, ...]], ...]  # (ARN, client ids) of the providers for the issuer


def _document(value: Any) -> Any:
    """AssumeRolePolicyDocument: boto3 decodes it to a dict; the raw API answers URL-encoded JSON."""
    return json.loads(unquote(value)) if isinstance(value, str) else value


def read_account(iam: Any, sts: Any, *, issuer: str, expected_account: str) -> Account:
    """The caller's account: every role (tags read only for those trusting the issuer) and the issuer's providers."""
    from botocore.exceptions import BotoCoreError, ClientError  # type: ignore[import-untyped, unused-ignore]

    prefix = condition_prefix(issuer)
    step = "sts:GetCallerIdentity"
    try:
        account = str(sts.get_caller_identity()["Account"])
        if account != expected_account:
            raise AwsError(f"the AWS credentials are for account {account}, but the stack's fleet:accountId is "
                           f"{expected_account}: use credentials of {expected_account}.")
        step = "iam:ListRoles"
        listed = [r for page in iam.get_paginator("list_roles").paginate() for r in page["Roles"]]
        candidates = []
        step = "iam:ListRoleTags"
        for r in listed:
            trust = _document(r.get("AssumeRolePolicyDocument"))
            if not trusts_issuer(trust, prefix):
                continue
            tags = [t for page in iam.get_paginator("list_role_tags").paginate(RoleName=r["RoleName"]) for t in page["Tags"]]
            candidates.append(Role(name=r["RoleName"], path=r["Path"], arn=r["Arn"], trust=trust,
                                   tags={t["Key"]: t["Value"] for t in tags}))
        step = "iam:ListOpenIDConnectProviders"
        providers = []
        for p in iam.list_open_id_connect_providers()["OpenIDConnectProviderList"]:
            match = _PROVIDER_RE.fullmatch(p["Arn"])
            if not match or match.group(2).lower() != prefix.lower():
                continue
            step = "iam:GetOpenIDConnectProvider"
            details = iam.get_open_id_connect_provider(OpenIDConnectProviderArn=p["Arn"])
            providers.append((p["Arn"], tuple(details.get("ClientIDList", []))))
    except ClientError as err:
        code = err.response.get("Error", {}).get("Code", "")
        raise AwsError(f"AWS refused {step} ({code}: {err.response.get('Error', {}).get('Message', '')}); the audit needs "
                       "sts:GetCallerIdentity, iam:ListRoles, iam:ListRoleTags, iam:ListOpenIDConnectProviders and "
                       "iam:GetOpenIDConnectProvider.") from err
    except BotoCoreError as err:
        raise AwsError(f"could not call AWS for {step}: {err}. Set AWS credentials in the environment (as for "
                       "pulumi up).") from err
    return Account(account, tuple(candidates), len(listed), tuple(providers))


def connect(region: str) -> tuple[Any, Any]:
    """boto3 IAM and STS clients with the environment's credentials (as `pulumi up` uses them)."""
    import boto3  # type: ignore[import-untyped, unused-ignore]
    from botocore.exceptions import BotoCoreError  # type: ignore[import-untyped, unused-ignore]

    try:
        session = boto3.Session(region_name=region or "us-east-1")
        return session.client("iam"), session.client("sts")
    except BotoCoreError as err:
        raise AwsError(f"could not set up the AWS SDK: {err}. Set AWS credentials and a region in the environment.") from err


def run_audit(plan: Plan, projects: Sequence[Project], account: Account) -> AuditReport:
    """Judge the account's roles against the plan: probes carry each audience the issuer's provider accepts."""
    notes = []
    principals = [arn for arn, _ in account.providers] or [plan.provider_arn]
    audiences = sorted({aud for _, auds in account.providers for aud in auds})
    if not account.providers:
        notes.append(f"the account has no OIDC provider for {plan.issuer}: no role can be assumed with its tokens today; "
                     f"the roles were judged as if {plan.provider_arn} existed with audience {plan.audience}")
    if not audiences:
        audiences = [plan.audience]
    return audit_roles(account.roles, plan=plan, projects=projects, principals=principals, audiences=audiences,
                       roles_read=account.roles_read, notes=notes)
