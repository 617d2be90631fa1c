"""Audit: which IAM roles of the stack's account trust its GitLab issuer, whom they admit, and what is wrong.

The judging is pure (`audit_roles`): each role's trust policy is evaluated as IAM would
(`iam_conditions`) against probe tokens of every project of the group (its default branch and
`main`, the refs the trust itself names, a branch and a tag nobody protects) and of a project outside
the group; a condition on a key the probes do not carry is taken to hold in an Allow and to fail in a
Deny. The admissions and the document itself give the findings: the document also says where a trust
can reach beyond the probes (a pattern in the project part of `sub`, a project the group does not hold).
`read_account` is the thin shell that reads the account with boto3.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from .errors import FleetError
from .iam_conditions import (
    ALLOW,
    WEB_IDENTITY_ACTION,
    Condition,
    Policy,
    Statement,
    Unsupported,
    parse_policy,
    parse_statement,
)
from .inventory import Project
from .plan import MANAGED_BY, Plan, ProjectPlan, Skipped
from .trust import GITLAB_COM, canonical_policy, condition_prefix

HIGH, MEDIUM, LOW = "high", "medium", "low"
SEVERITIES = (HIGH, MEDIUM, LOW)

# code -> (severity, what it means): the README's findings table
FINDINGS: dict[str, tuple[str, str]] = {
    "AUD_ONLY": (HIGH, "admits a project outside the group: any project on the instance can assume it"),
    "PROJECT_PATTERN": (HIGH, "an Allow statement whose project is a pattern, a whole namespace, or unconditioned, that "
                        "can name projects outside the group (medium when it stays in the group's namespace: projects "
                        "created later)"),
    "MULTIPLE_PROJECTS": (HIGH, "admits more than one project of the group"),
    "OTHER_PRINCIPALS": (MEDIUM, "also trusts principals other than the issuer's provider (high when it trusts everyone)"),
    "UNPROTECTED_REFS": (MEDIUM, "admits a branch or tag of any name, which every Developer can push"),
    "NO_AUD": (MEDIUM, "an Allow statement that does not pin the audience (aud) to a value"),
    "UNMODELLED_KEY": (MEDIUM, "a condition on a key the probe tokens do not carry, taken to hold in an Allow and to fail "
                       "in a Deny (high when a variable in a claim's value names it: the caller may choose it)"),
    "DIFFERS_FROM_PLAN": (MEDIUM, "a role of this stack whose trust is not the plan's, or whose project the plan has no role for"),
    "UNEVALUATED": (MEDIUM, "the trust uses something the audit cannot evaluate: review it by hand"),
    "WILDCARD_IN_STRINGEQUALS": (LOW, "a StringEquals value with * or ?, compared literally: it never matches"),
    "SET_OPERATOR": (LOW, "ForAnyValue/ForAllValues on a single-valued key (ForAllValues also passes when the key is missing)"),
    "FOREIGN_PROVIDER": (LOW, "names the issuer's provider of another account, which admits no token here"),
    "PROJECT_NOT_IN_GROUP": (LOW, "names a project or namespace the group's listing does not hold (medium for a path on "
                             "gitlab.com, where anyone may claim a free path)"),
    "PROVIDER_SPELLING": (LOW, "names the issuer's provider spelled otherwise (case, a trailing /): judged as if IAM "
                          "matched it"),
}

ANY_BRANCH = "fleet-audit-probe"  # a branch name nobody protects
ANY_TAG = "fleet-audit-probe"
OUTSIDER_PATH = "fleet-audit-outsider/probe"
LABEL_ANY_BRANCH, LABEL_ANY_TAG = "any branch", "any tag"
UNPROTECTED = " (unprotected)"  # the suffix of a named ref's label when probed as a ref nobody protects
MANAGED_TAG, STACK_TAG, PROJECT_TAG = "managed-by", "fleet-stack", "gitlab-project-id"
_PROVIDER_RE = re.compile(r"arn:aws[a-z-]*:iam::([0-9]{12}):oidc-provider/(.+)", re.ASCII)
_REF_RE = re.compile(r"(?:^|:)ref_type:([^:]+):ref:([^:$]+)(?=:|$)", re.ASCII)
# The gitlab.com claims AWS offers that the probes carry (besides sub and aud).
COM_CLAIMS = ("project_id", "project_path", "namespace_path", "namespace_id", "ref_type", "ref", "ref_protected")


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
    unknown: frozenset[str] = frozenset()  # keys whose value this token's project is not known to have


def modelled_keys(prefix: str) -> frozenset[str]:
    """The condition keys (lowercased) every probe token carries: sub and aud, and gitlab.com's claims."""
    claims = ("sub", "aud", *(COM_CLAIMS if prefix == GITLAB_COM else ()))
    return frozenset(f"{prefix}:{c}".lower() for c in claims)


def _subs(project_id: int, path: str, ref_type: str, ref: str, protected: bool,
          components: tuple[str, ...] | None, listed_only: bool = False) -> list[str]:
    """The `sub` values a token of this project and ref can carry: GitLab's default, starting with project_id
    instead (a Maintainer's choice), each with and without the ref_protected component, and the listed components
    (only those with `listed_only`)."""
    values = {"project_path": path, "project_id": str(project_id), "ref_type": ref_type, "ref": ref,
              "ref_protected": "true" if protected else "false"}
    shapes = [("project_path", "ref_type", "ref"), ("project_id", "ref_type", "ref"),
              ("project_path", "ref_type", "ref", "ref_protected"), ("project_id", "ref_type", "ref", "ref_protected")]
    listed = components if components and all(c in values for c in components) else None
    if listed_only:
        shapes = [listed] if listed else []
    elif listed and listed not in shapes:
        shapes.append(listed)
    return [":".join(f"{c}:{values[c]}" for c in shape) for shape in shapes]


@dataclass(frozen=True)
class ProbeRef:
    label: str  # "branch:main", "tag:v*", "tag:v* (unprotected)", "any branch", ...
    ref_type: str
    ref: str
    protected: bool
    listed_only: bool = False  # sub only in the project's listed components (where they hold ref_protected)


def _probes(project_id: int, path: str, namespace_id: int | None, refs: Iterable[ProbeRef],
            prefix: str, audiences: Sequence[str], components: tuple[str, ...] | None) -> list[Probe]:
    probes = []
    for r in refs:
        for sub in _subs(project_id, path, r.ref_type, r.ref, r.protected, components, r.listed_only):
            for aud in audiences:
                context = {f"{prefix}:sub": sub, f"{prefix}:aud": aud}
                if prefix == GITLAB_COM:  # AWS offers GitLab's other claims for gitlab.com only
                    claims = {"project_id": str(project_id), "project_path": path, "namespace_path": path.rpartition("/")[0],
                              "namespace_id": str(namespace_id if namespace_id is not None else 0), "ref_type": r.ref_type,
                              "ref": r.ref, "ref_protected": "true" if r.protected else "false"}
                    context.update({f"{prefix}:{k}": claims[k] for k in COM_CLAIMS})
                # A listing without the namespace's id (saved by an older version): any value may be the project's.
                unknown = frozenset({f"{prefix}:namespace_id"}) if prefix == GITLAB_COM and namespace_id is None else frozenset()
                probes.append(Probe(project_id, r.label, context, unknown))
    return probes


def _like(pattern: str, text: str) -> bool:
    """Whether `text` matches `pattern` under StringLike, as the evaluator reads it (`*`, `?`, `${*}`, ...)."""
    statement = parse_statement({"Effect": "Allow", "Principal": "*", "Action": "*",
                                 "Condition": {"StringLike": {"k": pattern}}}, True, 0)
    return statement.condition_holds({"k": text})


@dataclass(frozen=True)
class NamedRef:
    ref_type: str  # "branch" | "tag"
    ref: str  # as the trust writes it: a name or a glob
    any_type: bool  # named under a ref_type pattern matching both types (`ref_type:*:ref:main`): a branch and a tag

    @property
    def label(self) -> str:
        return f"{self.ref_type}:{self.ref}"

    @property
    def loose(self) -> bool:
        """A name anyone who can push may create, unless protected: a glob, or a ref type left open."""
        return self.any_type or "*" in self.ref or "?" in self.ref


def _named_refs(policy: Policy, prefix: str) -> set[NamedRef]:
    """The refs and ref globs the trust's sub values name (`...:ref_type:tag:ref:v*`, anywhere in a value),
    probed for every project and the outsider. A pattern for ref_type names each type it matches."""
    key = f"{prefix}:sub".lower()
    refs: set[NamedRef] = set()
    for s in policy.statements:
        for c in s.conditions:
            if c.key != key or not c.operator.positive_string:
                continue
            for text in c.raw_values:
                for match in _REF_RE.finditer(text):
                    kind, ref = match.groups()
                    if ref == "*":  # a lone * is what the any-branch/any-tag probes test
                        continue
                    types = [t for t in ("branch", "tag") if _like(kind, t)]
                    refs.update(NamedRef(t, ref, len(types) == 2) for t in types)
    return refs


def _pinnable(prefix: str, components: tuple[str, ...] | None) -> bool:
    """Whether a trust can tell this project's protected refs from the others: gitlab.com's ref_protected claim, or a
    ref_protected component in the project's listed sub."""
    return prefix == GITLAB_COM or bool(components and "ref_protected" in components)


def _named_probe_refs(named: Iterable[NamedRef], skip: Sequence[str], pinnable: bool, prefix: str) -> list[ProbeRef]:
    """A glob is probed with a name it matches (`v*` -> `vx`), as a protected ref: what the rule was written for;
    a loose one also unprotected where the trust could have required protection (self-managed: in the sub the
    project's tokens carry, the only place ref_protected shows)."""
    refs = []
    for n in sorted(named, key=lambda n: (n.ref_type, n.ref)):
        name = n.ref.replace("*", "x").replace("?", "x")
        if n.label not in skip:
            refs.append(ProbeRef(n.label, n.ref_type, name, True))
        if n.loose and pinnable:
            refs.append(ProbeRef(n.label + UNPROTECTED, n.ref_type, name, False, listed_only=prefix != GITLAB_COM))
    return refs


_ANY_REFS = (ProbeRef(LABEL_ANY_BRANCH, "branch", ANY_BRANCH, False), ProbeRef(LABEL_ANY_TAG, "tag", ANY_TAG, False))


def _project_refs(project: Project, named: set[NamedRef], prefix: str) -> list[ProbeRef]:
    default = project.default_branch or "main"
    refs = [ProbeRef(f"branch:{default}", "branch", default, True)]
    if default != "main":
        refs.append(ProbeRef("branch:main", "branch", "main", True))
    refs += _named_probe_refs(named, [r.label for r in refs], _pinnable(prefix, project.sub_claim_components), prefix)
    return [*refs, *_ANY_REFS]


def _outsider_refs(named: set[NamedRef], prefix: str) -> list[ProbeRef]:
    refs = [ProbeRef("branch:main", "branch", "main", True)]
    refs += _named_probe_refs(named, ["branch:main"], prefix == GITLAB_COM, prefix)
    return [*refs, *_ANY_REFS]


# --- judging one role -----------------------------------------------------------------------------

def issuer_provider(arn: str, prefix: str) -> str | None:
    """The account of a provider ARN for this issuer (its name the issuer's, ignoring case and a trailing `/`), else None."""
    match = _PROVIDER_RE.fullmatch(arn)
    return match.group(1) if match and match.group(2).rstrip("/").lower() == prefix.lower() else None


def _issuer_providers(statement: Statement, prefix: str) -> list[tuple[str, str]]:
    """(account, ARN) of each provider for this issuer the statement names."""
    return [(account, p) for p in statement.principals if (account := issuer_provider(p, prefix)) is not None]


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def names_issuer(trust: Any, prefix: str) -> bool:
    """Whether a trust document names a provider for this issuer (of any account): a value that is its ARN."""
    return any(issuer_provider(text, prefix) is not None for text in _strings(trust))


def trusts_issuer(trust: Any, prefix: str) -> bool:
    """Whether a trust document may admit this issuer's tokens: it names its provider, a "*" anywhere, or NotPrincipal."""
    text = json.dumps(trust)
    return names_issuer(trust, prefix) or '"*"' in text or '"NotPrincipal"' in text


def _may_admit_anyone(trust: Any) -> bool:
    """Whether an Allow statement lets every principal (`"*"`, `{"AWS": "*"}`) assume it with a web identity, or the
    trust cannot be read to say it does not."""
    try:
        policy = parse_policy(trust)
    except Unsupported:
        return True
    return any(s.effect == "Allow" and "*" in s.principals and s.covers(WEB_IDENTITY_ACTION) for s in policy.statements)


def _pins(c: Condition) -> bool:
    """Whether a condition holds only for the values it lists: a positive string operator without ForAllValues (which
    passes a missing key), variables, or StringLike's wildcards."""
    op = c.operator
    return (op.positive_string and op.set_op != "ForAllValues" and not c.variable_keys and bool(c.raw_values)
            and (op.base != "StringLike" or not any("*" in v or "?" in v for v in c.raw_values)))


def _document_findings(policy: Policy, prefix: str, account_id: str) -> list[Finding]:
    """Findings read from the document alone."""
    findings: list[Finding] = []
    aud_key, prefix_lower = f"{prefix}:aud".lower(), f"{prefix}:".lower()
    others: list[str] = []
    foreign: list[str] = []
    no_aud: list[str] = []
    literal: list[str] = []
    set_ops: list[str] = []
    spelled: list[str] = []
    for index, s in enumerate(policy.statements):
        if s.effect != "Allow":
            continue
        mine = {arn for _, arn in _issuer_providers(s, prefix)}
        spelled += [arn for acct, arn in _issuer_providers(s, prefix)
                    if acct == account_id and not arn.endswith(f":oidc-provider/{prefix}") and arn not in spelled]
        others += [p for p in s.principals if p != "*" and p not in mine and p not in others]
        others += [p for p in s.other_principals if p not in others]
        if "*" in s.principals and "*" not in others:
            others.append("*")
        foreign += [arn for acct, arn in _issuer_providers(s, prefix) if acct != account_id and arn not in foreign]
        if not (_issuer_providers(s, prefix) or "*" in s.principals):
            continue
        name = s.sid or f"#{index + 1}"
        if not any(c.key == aud_key and _pins(c) for c in s.conditions):
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
        findings.append(finding("NO_AUD", f"statement {', '.join(no_aud)} does not pin {prefix}:aud to a value (StringEquals, "
                                "or StringLike without * or ?): pin it to the audience the pipelines request"))
    if spelled:
        findings.append(finding("PROVIDER_SPELLING", f"names {', '.join(spelled)}, not the provider's ARN as IAM writes it "
                                f"(…:oidc-provider/{prefix}): judged as if IAM matched it; write the provider's ARN"))
    if literal:
        findings.append(finding("WILDCARD_IN_STRINGEQUALS", f"StringEquals compares * and ? literally: {'; '.join(literal)} "
                                "never matches a GitLab token; StringLike was meant (and may admit more)"))
    if set_ops:
        findings.append(finding("SET_OPERATOR", f"{'; '.join(set_ops)}: the key holds one value, so use the plain "
                                "operator (ForAllValues also passes a token without the key)"))
    return findings


def _admissions(policy: Policy, probes: list[Probe], principals: Sequence[str],
                unknown: frozenset[str]) -> dict[int, list[str]]:
    admitted: dict[int, list[str]] = {}
    for probe in probes:
        labels = admitted.get(probe.project_id, [])
        if probe.label in labels:
            continue
        if any(policy.decide(p, probe.context, unknown=unknown | probe.unknown) == ALLOW for p in principals):
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
    group: str  # the group's full path
    namespaces: Mapping[str, str]  # a namespace id (as text) the listing gives -> that namespace's full path

    @classmethod
    def of(cls, projects: Sequence[Project], plan: Plan) -> ProjectIndex:
        by_path: dict[str, list[int]] = {}
        for p in projects:
            by_path.setdefault(p.path, []).append(p.id)
        namespaces = {str(p.namespace_id): p.path.rpartition("/")[0] for p in projects if p.namespace_id is not None}
        return cls(tuple(projects), {p.id: p for p in projects}, by_path, {p.id: p for p in plan.projects},
                   {s.id: s for s in plan.skipped}, max([p.id for p in projects], default=0) + 1_000_003, plan.group,
                   namespaces)


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


# --- what the document says beyond the probes ------------------------------------------------------

def _web_statements(policy: Policy, principals: Sequence[str]) -> list[tuple[str, Statement]]:
    """(name, statement) of each statement that applies to this issuer's web identities."""
    return [(s.sid or f"#{i + 1}", s) for i, s in enumerate(policy.statements)
            if s.covers(WEB_IDENTITY_ACTION) and any(s.names(p) for p in principals)]


def unknown_keys(policy: Policy, prefix: str) -> frozenset[str]:
    """The keys (lowercased) the policy's conditions read that the probe tokens do not carry."""
    return frozenset(k for s in policy.statements for c in s.conditions for k in c.keys) - modelled_keys(prefix)


def _unmodelled(statements: Sequence[tuple[str, Statement]], prefix: str) -> Finding | None:
    modelled = modelled_keys(prefix)
    keys: list[str] = []
    chosen: list[str] = []
    for _, s in statements:
        for c in s.conditions:
            keys += [k for k in sorted(c.keys - modelled) if k not in keys]
            if c.key in modelled:
                chosen += [f"{c.key} names ${{{k}}}" for k in sorted(c.variable_keys - modelled) if k not in chosen]
    if not keys:
        return None
    said = "judged as holding in an Allow and failing in a Deny; review by hand"
    if chosen:
        return finding("UNMODELLED_KEY", f"{'; '.join(chosen)}: a value the audit's tokens do not carry (the caller may "
                       f"choose it, and with it what the claim must be); {said}", HIGH)
    return finding("UNMODELLED_KEY", f"conditions read {', '.join(keys)}, which the audit's tokens do not carry; {said}")


_SCOPE_OPERATORS = ("StringEquals", "StringEqualsIgnoreCase", "StringLike")
_LITERAL_HEAD_RE = re.compile(r"project_(path|id):([^:*?$]+):", re.ASCII)
OPEN, GROUP, ONE = 0, 1, 2  # how far a statement's project reaches: anywhere, the group's namespace, named literally
_NAMESPACE_CLAIMS = ("namespace_path", "namespace_id")


def _literal(value: str, base: str) -> bool:
    return base != "StringLike" or not ("*" in value or "?" in value)


def _under(value: str, lead: str, group: str) -> bool:
    """Whether every text a StringLike `value` matches starts with `lead` + the group's path + `/` (GitLab paths are
    unique ignoring case, so a case variant names the same namespace)."""
    head = re.split(r"[*?]", value, maxsplit=1)[0]
    return head.casefold().startswith(f"{lead}{group}/".casefold())


def _scope_claims(prefix: str) -> dict[str, str]:
    claims = {f"{prefix}:sub".lower(): "sub"}
    if prefix == GITLAB_COM:
        claims.update({f"{prefix}:{c}".lower(): c for c in ("project_id", "project_path", "namespace_path", "namespace_id")})
    return claims


def _in_group(path: str, group: str) -> bool:
    """Whether a namespace path is the group's or one under it (ignoring case, as GitLab's paths are unique)."""
    return path.casefold() == group.casefold() or path.casefold().startswith(f"{group}/".casefold())


def _scope(statement: Statement, prefix: str, index: ProjectIndex) -> int:
    """How far the projects a statement admits reach, read from its positive conditions on sub (and on gitlab.com its
    project and namespace claims); conditions are ANDed, so the narrowest counts. A namespace named literally holds
    every project of it, those created later too: the group's reach when it is the group, one under it, or the id of
    such a namespace in the listing; anywhere otherwise."""
    claims = _scope_claims(prefix)
    group = index.group
    best = OPEN
    for c in statement.conditions:
        claim = claims.get(c.key)
        if claim is None or c.operator.base not in _SCOPE_OPERATORS or c.variable_keys:
            continue
        reach = []
        for value in c.raw_values:
            if claim in _NAMESPACE_CLAIMS and _literal(value, c.operator.base):
                path = value if claim == "namespace_path" else index.namespaces.get(value)
                reach.append(GROUP if path is not None and _in_group(path, group) else OPEN)
            elif _literal(value, c.operator.base) or (claim == "sub" and _LITERAL_HEAD_RE.match(value)):
                reach.append(ONE)
            elif (claim == "sub" and _under(value, "project_path:", group)) or (
                    claim in ("project_path", "namespace_path") and _under(value, "", group)):
                reach.append(GROUP)
            else:
                reach.append(OPEN)
        best = max(best, min(reach, default=ONE))
    return best


def _project_pattern(policy: Policy, statements: Sequence[tuple[str, Statement]], prefix: str, index: ProjectIndex,
                     principals: Sequence[str], audiences: Sequence[str], unknown: frozenset[str],
                     multiple: bool) -> Finding | None:
    """Allow statements whose project is not named literally (a pattern, a whole namespace, or nothing), which a token
    passes when its project and ref claims are taken to match whatever the statement asks (its aud and the Deny
    statements on aud still count): high when it can name projects outside the group's namespace, medium when it
    stays inside (projects created later; left out when MULTIPLE_PROJECTS already says so)."""
    group = index.group
    namespace_keys = {f"{prefix}:{c}".lower() for c in _NAMESPACE_CLAIMS} if prefix == GITLAB_COM else set()
    relaxed = unknown | (modelled_keys(prefix) - {f"{prefix}:aud".lower()})
    denies = tuple(s for s in policy.statements if s.effect == "Deny")
    sub = f"{prefix}:sub".lower()
    found: dict[int, list[str]] = {OPEN: [], GROUP: []}
    for name, s in statements:
        reach = _scope(s, prefix, index) if s.effect == "Allow" else ONE
        if reach == ONE or (reach == GROUP and multiple):
            continue
        alone = Policy((s, *denies))
        if any(alone.decide(p, {f"{prefix}:aud": aud}, unknown=relaxed) == ALLOW for p in principals for aud in audiences):
            values = [v for c in s.conditions if c.key == sub and c.operator.positive_string for v in c.raw_values]
            said = (f"sub {', '.join(json.dumps(v) for v in values[:2])}"
                    + (f" and {len(values) - 2} more" if len(values) > 2 else "") if values else f"no condition on {prefix}:sub")
            spaces = [f"{c.key} {json.dumps(v)}" for c in s.conditions if c.key in namespace_keys and c.operator.positive_string
                      for v in c.raw_values]
            found[reach].append(f"statement {name} ({said}{''.join(f', {n}' for n in spaces[:2])})")
    pin = "pin sub to project_path:<path>: or project_id:<id>:"
    if found[OPEN]:
        return finding("PROJECT_PATTERN", f"{'; '.join(found[OPEN])}: the project is a pattern or a whole namespace that "
                       f"can name projects outside the group {group}, which the probes cannot list; {pin}")
    if found[GROUP]:
        return finding("PROJECT_PATTERN", f"{'; '.join(found[GROUP])}: the project is a pattern or a whole namespace "
                       f"inside the group {group}, so a project created later under a matching path or in that "
                       f"namespace gets the role; {pin}", MEDIUM)
    return None


def _unlisted(statements: Sequence[tuple[str, Statement]], prefix: str, index: ProjectIndex) -> Finding | None:
    """Project paths and ids, and on gitlab.com namespaces, that an Allow statement names literally and the group's
    listing does not hold."""
    paths = {p.path.casefold() for p in index.projects}
    namespace_ids = {str(p.namespace_id) for p in index.projects if p.namespace_id is not None}
    claims = _scope_claims(prefix)
    named_paths: list[str] = []
    named_ids: list[str] = []
    for _, s in statements:
        if s.effect != "Allow":
            continue
        for c in s.conditions:
            claim = claims.get(c.key)
            if claim is None or c.operator.base not in _SCOPE_OPERATORS or c.variable_keys:
                continue
            for raw in c.raw_values:
                head = _LITERAL_HEAD_RE.match(raw) if claim == "sub" else None
                if head:
                    kind, value = f"project_{head.group(1)}", head.group(2)
                elif claim != "sub" and _literal(raw, c.operator.base):
                    kind, value = claim, raw
                else:
                    continue
                if kind == "project_path" and value.casefold() not in paths:
                    named_paths.append(value)
                elif kind == "project_id" and not (value.isascii() and value.isdigit() and int(value) in index.by_id):
                    named_ids.append(f"project {value}")
                elif kind == "namespace_path" and not (value.casefold() == index.group.casefold()
                                                       or _under(value, "", index.group)):
                    named_paths.append(f"namespace {value}")
                elif kind == "namespace_id" and namespace_ids and value not in namespace_ids:
                    named_ids.append(f"namespace {value}")
    names = list(dict.fromkeys(named_paths + named_ids))
    if not names:
        return None
    claimable = prefix == GITLAB_COM and bool(named_paths)
    return finding("PROJECT_NOT_IN_GROUP", f"names {', '.join(names[:4])}{f' and {len(names) - 4} more' if len(names) > 4 else ''}, "
                   "which the group's listing does not hold (a typo, or moved or deleted?)"
                   + (": on gitlab.com whoever creates that path gets the role" if claimable else ""),
                   MEDIUM if claimable else None)


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
        elif canonical_policy(role.trust) != canonical_policy(planned.trust_policy):
            findings.append(finding("DIFFERS_FROM_PLAN", f"its trust policy is not the plan's for {planned.path} (edited "
                                    "outside the program?): pulumi up puts the plan's back; `fleet drift` shows the change"))
    try:
        policy = parse_policy(role.trust)
    except Unsupported as err:
        findings.append(finding("UNEVALUATED", f"the trust uses {err}, which the audit does not evaluate: review it by hand"))
        return RoleAudit(role.name, role.arn, managed, fleet_stack, project_id, None, False, tuple(findings))
    findings += _document_findings(policy, prefix, account_id)
    # The issuer's provider of this account spelled otherwise (PROVIDER_SPELLING) is judged as if IAM matched it.
    spelled = [arn for s in policy.statements for acct, arn in _issuer_providers(s, prefix) if acct == account_id]
    probing = list(dict.fromkeys([*principals, *spelled]))
    statements = _web_statements(policy, probing)
    unknown = unknown_keys(policy, prefix)
    findings += [f for f in (_unmodelled(statements, prefix), _unlisted(statements, prefix, index)) if f]
    named = _named_refs(policy, prefix)
    narrowed = candidates(policy, prefix, probing, index)
    chosen = index.projects if narrowed is None else [index.by_id[pid] for pid in sorted(narrowed)]
    probes = [pr for p in chosen for pr in _probes(p.id, p.path, p.namespace_id, _project_refs(p, named, prefix), prefix,
                                                    audiences, p.sub_claim_components)]
    outsider_id = index.outsider_id
    outsider = _probes(outsider_id, OUTSIDER_PATH, outsider_id, _outsider_refs(named, prefix), prefix, audiences, None)
    admitted = _admissions(policy, probes, probing, unknown)
    outside_labels = [label for labels in _admissions(policy, outsider, probing, unknown).values() for label in labels]
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
    if not outside:
        pattern = _project_pattern(policy, statements, prefix, index, probing, audiences, unknown, len(admits) > 1)
        if pattern:
            findings.append(pattern)
    labels = [label for a in admits for label in a.refs] + outside_labels
    any_type = {n.label for n in named if n.any_type}
    loose = sorted({label for label in labels if label in (LABEL_ANY_BRANCH, LABEL_ANY_TAG) or label.endswith(UNPROTECTED)
                    or label in any_type}, key=lambda label: (not label.startswith("any "), label))
    if loose:
        reasons = []
        if any(label.startswith("any ") for label in loose):
            reasons.append(f"a ref of any name passes (an unprotected {ANY_BRANCH})")
        if any(label.endswith(UNPROTECTED) for label in loose):
            reasons.append("an unprotected ref matching a glob the trust names passes")
        if any(label in any_type for label in loose):
            reasons.append("a pattern for ref_type lets a tag pass as well as a branch of that name")
        pin = (f"pin {prefix}:ref_protected to \"true\" or name the refs" if prefix == GITLAB_COM
               else "name the refs and their type (self-managed: a ref_protected:true component in sub is the only pin)")
        findings.append(finding("UNPROTECTED_REFS", f"admits {', '.join(loose)}: {'; '.join(reasons)}; anyone who can push "
                                f"such a ref gets the role; {pin}"))
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
        # A role that trusts every principal but admits no token of this issuer is not the audit's business; one
        # that cannot be evaluated, or whose Allow names "*" for web identities, is.
        if (names_issuer(role.trust, prefix) or audit.admits is None or audit.admits or audit.admits_outside_group
                or _may_admit_anyone(role.trust)):
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
    notes: tuple[str, ...] = ()  # roles deleted while the account was read


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
        notes = []
        step = "iam:ListRoleTags"
        for r in listed:
            trust = _document(r.get("AssumeRolePolicyDocument"))
            if not trusts_issuer(trust, prefix):
                continue
            try:
                tags = [t for page in iam.get_paginator("list_role_tags").paginate(RoleName=r["RoleName"])
                        for t in page["Tags"]]
            except ClientError as err:
                if err.response.get("Error", {}).get("Code") != "NoSuchEntity":
                    raise
                notes.append(f"role {r['RoleName']} was deleted while the account was read: not judged")
                continue
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
    return Account(account, tuple(candidates), len(listed), tuple(providers), tuple(notes))


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
    notes = list(account.notes)
    principals = [arn for arn, _ in account.providers] or [plan.provider_arn]
    audiences = sorted({aud for _, auds in account.providers for aud in auds})
    if not account.providers:
        notes.append(f"the account has no OIDC provider for {plan.issuer}: no role can be assumed with its tokens today; "
                     f"the roles were judged as if {plan.provider_arn} existed with audience {plan.audience}")
    if not audiences:
        audiences = [plan.audience]
    return audit_roles(account.roles, plan=plan, projects=projects, principals=principals, audiences=audiences,
                       roles_read=account.roles_read, notes=notes)
