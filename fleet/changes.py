"""Engine events → a typed model of what a preview or refresh changes, classified by what each resource is here.

One `ResourceChange` per URN. Values the engine marks secret become "[secret]"; providers' inputs and outputs
(the GitLab token) are never copied. Facts on the event shapes: /tmp/events/facts.md (merged into the reference).
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, overload

from pulumi.automation.events import EngineEvent, StepEventMetadata, StepEventStateMetadata

from .resources import COMPONENT_TYPE

SECRET = "[secret]"
UNKNOWN = "(known after apply)"
SIG_KEY = "4dabf18193072939515e22adb298388d"  # Pulumi's signature key for special values
SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"
COMPUTED = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"  # an unknown value in a serialized preview

ROLE_TYPE = "aws:iam/role:Role"
ROLE_POLICY_TYPE = "aws:iam/rolePolicy:RolePolicy"
ATTACHMENT_TYPE = "aws:iam/rolePolicyAttachment:RolePolicyAttachment"
INLINE_EXCLUSIVE_TYPE = "aws:iam/rolePoliciesExclusive:RolePoliciesExclusive"
ATTACHMENTS_EXCLUSIVE_TYPE = "aws:iam/rolePolicyAttachmentsExclusive:RolePolicyAttachmentsExclusive"
VARIABLE_TYPE = "gitlab:index/projectVariable:ProjectVariable"
SUB_CLAIM_TYPE = "pulumi-python:dynamic/fleet:SubClaimComponents"  # fleet/sub_claims.py
MANAGED_POLICY_TYPE = "aws:iam/policy:Policy"
OIDC_PROVIDER_TYPE = "aws:iam/openIdConnectProvider:OpenIdConnectProvider"
STACK_TYPE = "pulumi:pulumi:Stack"
STACK_REFERENCE_TYPE = "pulumi:pulumi:StackReference"
PROVIDER_PREFIX = "pulumi:providers:"

Kind = Literal["project", "role", "inline-policy", "attachment", "inline-exclusive", "attachments-exclusive",
               "variable", "sub-claim", "managed-policy", "oidc-provider", "provider", "stack", "stack-reference", "other"]

# (type, logical-name pattern, kind): the resources this program declares, by type and name.
_NAMED: tuple[tuple[str, re.Pattern[str], Kind], ...] = (
    (COMPONENT_TYPE, re.compile(r"project-(?P<id>[0-9]+)"), "project"),
    (ROLE_TYPE, re.compile(r"project-(?P<id>[0-9]+)-role"), "role"),
    (ROLE_POLICY_TYPE, re.compile(r"project-(?P<id>[0-9]+)-policy-(?P<entry>.+)"), "inline-policy"),
    (ATTACHMENT_TYPE, re.compile(r"project-(?P<id>[0-9]+)-attach-(?P<entry>.+)"), "attachment"),
    (INLINE_EXCLUSIVE_TYPE, re.compile(r"project-(?P<id>[0-9]+)-inline-exclusive"), "inline-exclusive"),
    (ATTACHMENTS_EXCLUSIVE_TYPE, re.compile(r"project-(?P<id>[0-9]+)-attachments-exclusive"), "attachments-exclusive"),
    (VARIABLE_TYPE, re.compile(r"project-(?P<id>[0-9]+)-(?P<entry>[A-Za-z0-9_]+)"), "variable"),
    (SUB_CLAIM_TYPE, re.compile(r"project-(?P<id>[0-9]+)-sub-claim"), "sub-claim"),
    (MANAGED_POLICY_TYPE, re.compile(r"policy-(?P<entry>.+)"), "managed-policy"),
    (OIDC_PROVIDER_TYPE, re.compile(r"gitlab-oidc-provider"), "oidc-provider"),
)

# Steps of one replacement, folded into "replace".
_REPLACE_OPS = frozenset({"replace", "create-replacement", "delete-replaced"})


@dataclass(frozen=True)
class State:
    """One side of a step: the resource's id, inputs and outputs, secrets already redacted."""

    id: str = ""
    inputs: Mapping[str, Any] = field(default_factory=dict)
    outputs: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ResourceChange:
    """What the engine does (or found, for a refresh) to one resource, and what the resource is in this program.

    `op` is the engine's op with a replacement's steps folded into "replace". For a refresh it is the result:
    "same", "update" (the cloud differs from the state) or "delete" (gone from the cloud), with `refresh` set;
    "refresh" itself only when the result never arrived.
    """

    urn: str
    type: str
    name: str
    kind: Kind
    op: str
    project_id: int | None = None
    entry: str | None = None  # policy library entry, or variable key
    old: State | None = None
    new: State | None = None
    diffs: tuple[str, ...] = ()
    replace_keys: tuple[str, ...] = ()
    refresh: bool = False
    failed: bool = False
    imported: bool = False  # the run imports it (fleet:adopt): the stack does not hold it yet

    @property
    def changed(self) -> bool:
        return self.op not in ("same", "read", "refresh")

    @property
    def role_name(self) -> str | None:
        """A role's IAM name (the new one when it is renamed); None for other resources or when not known."""
        if self.kind != "role":
            return None
        for state in (self.new, self.old):
            name = state.inputs.get("name", state.outputs.get("name")) if state is not None else None
            if isinstance(name, str) and name not in (SECRET, UNKNOWN):
                return name
        return None

    @property
    def project_path(self) -> str | None:
        """The project's path as this resource knows it: a component's `path` input, a role's gitlab-project-path tag."""
        if self.kind not in ("project", "role"):
            return None
        return _path_of(self.new, self.kind) or _path_of(self.old, self.kind)

    @property
    def guard_op(self) -> str:
        """The op as the blast-radius guard counts it: create, update, same, delete or replace."""
        if self.op in ("delete", "replace"):
            return self.op
        if self.imported or self.op == "create":  # an adopted role is new to the stack, even when an update follows
            return "create"
        if self.op == "update":
            return self.op
        return "same"


@dataclass(frozen=True)
class Changes(Sequence[ResourceChange]):
    """Every resource the events name, in the order first seen, and the stack's outputs when the events carry them."""

    resources: tuple[ResourceChange, ...]
    stack_outputs: Mapping[str, Any] | None = None
    errors: tuple[str, ...] = ()  # error diagnostics, as the engine worded them

    @overload
    def __getitem__(self, index: int) -> ResourceChange: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[ResourceChange]: ...
    def __getitem__(self, index: int | slice) -> ResourceChange | Sequence[ResourceChange]:
        return self.resources[index]

    def __iter__(self) -> Iterator[ResourceChange]:
        return iter(self.resources)

    def __len__(self) -> int:
        return len(self.resources)

    @classmethod
    def of(cls, changes: Changes | Sequence[ResourceChange]) -> Changes:
        return changes if isinstance(changes, Changes) else cls(tuple(changes))


@dataclass(frozen=True)
class OpCounts:
    created: int = 0
    updated: int = 0
    deleted: int = 0
    replaced: int = 0
    imported: int = 0

    @property
    def total(self) -> int:
        return self.created + self.updated + self.deleted + self.replaced + self.imported


@dataclass(frozen=True)
class ProjectEntry:
    id: int
    path: str | None  # None when no event names it


@dataclass(frozen=True)
class SkippedProject:
    id: int
    path: str
    reason: str


@dataclass(frozen=True)
class Summary:
    """Counts by op. `policies` counts inline policies, attachments and the stack's managed policies."""

    roles: OpCounts
    policies: OpCounts
    variables: OpCounts
    projects_new: tuple[ProjectEntry, ...]
    projects_gone: tuple[ProjectEntry, ...]
    skipped: tuple[SkippedProject, ...] | None  # None: the events do not carry the stack's `skipped` output

    @property
    def changed(self) -> bool:
        return bool(self.roles.total or self.policies.total or self.variables.total
                    or self.projects_new or self.projects_gone)


def redact(value: Any) -> Any:
    """A JSON value with every secret replaced by "[secret]" and every unknown by a readable marker."""
    if isinstance(value, dict):  # JSON objects (the SDK hands over what json.loads made)
        if value.get(SIG_KEY) == SECRET_SIG:
            return SECRET
        return {str(k): redact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    if value == COMPUTED:
        return UNKNOWN
    return value


def parse_urn(urn: str) -> tuple[str, str]:
    """(qualified type, logical name) of `urn:pulumi:<stack>::<project>::<type chain>::<name>`."""
    parts = urn.split("::", 3)
    if len(parts) != 4 or not parts[0].startswith("urn:pulumi:"):
        return "", urn
    return parts[2], parts[3]


def classify(type_: str, name: str) -> tuple[Kind, int | None, str | None]:
    """(kind, project id, entry) of a resource of this program, from its type and logical name."""
    if type_.startswith(PROVIDER_PREFIX):
        return "provider", None, None
    if type_ == STACK_TYPE:
        return "stack", None, None
    if type_ == STACK_REFERENCE_TYPE:
        return "stack-reference", None, None
    for known_type, pattern, kind in _NAMED:
        if type_ != known_type:
            continue
        m = pattern.fullmatch(name)
        if m is None:
            return "other", None, None
        groups = m.groupdict()
        project_id = int(groups["id"]) if groups.get("id") else None
        return kind, project_id, groups.get("entry")
    return "other", None, None


def _state(md: StepEventStateMetadata | None, kind: Kind) -> State | None:
    if md is None:
        return None
    if kind == "provider":  # its inputs hold the GitLab token: never copied
        return State(id=str(md.id or ""))
    return State(id=str(md.id or ""), inputs=redact(dict(md.inputs or {})), outputs=redact(dict(md.outputs or {})))


@dataclass
class _Acc:
    """A resource's steps as they arrive: the program's steps, and apart from them a refresh's (a preview with
    `--refresh` or `options.refresh: always` carries both)."""

    type: str
    name: str
    kind: Kind
    project_id: int | None
    entry: str | None
    ops: list[str] = field(default_factory=list)
    old: State | None = None
    new: State | None = None
    outputs_new: State | None = None
    diffs: list[str] = field(default_factory=list)
    replace_keys: list[str] = field(default_factory=list)
    refreshing: bool = False  # the last pre event was a refresh: the next outputs event is its result
    refreshed: bool = False
    refresh_op: str | None = None
    refresh_old: State | None = None
    refresh_new: State | None = None
    failed: bool = False


def _acc_for(accs: dict[str, _Acc], md: StepEventMetadata) -> _Acc:
    acc = accs.get(md.urn)
    if acc is None:
        _, name = parse_urn(md.urn)
        type_ = md.type or ""
        kind, project_id, entry = classify(type_, name)
        acc = accs[md.urn] = _Acc(type_, name, kind, project_id, entry)
    return acc


def _merge_pre(acc: _Acc, md: StepEventMetadata) -> None:
    op = str(md.op.value)
    old, new = _state(md.old, acc.kind), _state(md.new, acc.kind)
    if op == "refresh":
        acc.refreshing = acc.refreshed = True
        acc.refresh_old = old
        return
    acc.refreshing = False
    acc.ops.append(op)
    # A replacement's delete-replaced step holds only the old state; keep the first old and the latest new.
    if old is not None and acc.old is None:
        acc.old = old
    if new is not None and op != "delete-replaced":
        acc.new = new
    for d in md.diffs or []:
        if d not in acc.diffs:
            acc.diffs.append(d)
    for k in md.keys or []:
        if k not in acc.replace_keys:
            acc.replace_keys.append(k)


def _merge_outputs(acc: _Acc, md: StepEventMetadata) -> None:
    new = _state(md.new, acc.kind)
    if acc.refreshing:  # the refresh's result: same, update, or delete (new is None: gone from the cloud)
        acc.refreshing = False
        acc.refresh_op = str(md.op.value)
        acc.refresh_new = new
        return
    if not acc.ops:  # an outputs event without its pre event
        acc.ops.append(str(md.op.value))
    if new is not None:
        acc.outputs_new = new


def _change(urn: str, acc: _Acc) -> ResourceChange:
    base = ResourceChange(urn=urn, type=acc.type, name=acc.name, kind=acc.kind, op="same", project_id=acc.project_id,
                          entry=acc.entry, failed=acc.failed)
    if not acc.ops and acc.refreshed:
        return dataclasses.replace(base, op=acc.refresh_op or "refresh", old=acc.refresh_old, new=acc.refresh_new,
                                   refresh=True)
    op = "replace" if any(o in _REPLACE_OPS for o in acc.ops) else (acc.ops[-1] if acc.ops else "same")
    return dataclasses.replace(base, op=op, old=acc.old, new=_with_outputs(acc.new, acc.outputs_new),
                               diffs=tuple(acc.diffs), replace_keys=tuple(acc.replace_keys),
                               imported=any(o in ("import", "import-replacement") for o in acc.ops))


def collect(events: Iterable[EngineEvent]) -> Changes:
    """The model of one preview, refresh preview or update, from its engine events (ordered by their sequence)."""
    accs: dict[str, _Acc] = {}
    errors: list[str] = []
    stack_outputs: Mapping[str, Any] | None = None
    for event in sorted(events, key=lambda e: e.sequence):
        if event.resource_pre_event is not None:
            _merge_pre(_acc_for(accs, event.resource_pre_event.metadata), event.resource_pre_event.metadata)
        elif event.res_outputs_event is not None:
            md = event.res_outputs_event.metadata
            acc = _acc_for(accs, md)
            _merge_outputs(acc, md)
            if acc.kind == "stack" and md.new is not None:  # the last one holds the outputs the program registered
                stack_outputs = redact(dict(md.new.outputs or {}))
        elif event.res_op_failed_event is not None:
            md = event.res_op_failed_event.metadata
            acc = _acc_for(accs, md)
            if not acc.ops and not acc.refreshed:
                acc.ops.append(str(md.op.value))
            acc.failed = True
        elif event.diagnostic_event is not None and event.diagnostic_event.severity == "error":
            errors.append(event.diagnostic_event.message.strip())
    return Changes(tuple(_change(urn, acc) for urn, acc in accs.items()), stack_outputs, tuple(errors))


def _with_outputs(new: State | None, outputs: State | None) -> State | None:
    """The goal state with the outputs the engine reported last (a component's or the stack's registered outputs)."""
    if outputs is None:
        return new
    if new is None:
        return outputs
    return State(id=outputs.id or new.id, inputs=new.inputs or outputs.inputs, outputs=outputs.outputs)


# --- what the model says about this program's resources ---

def project_paths(changes: Sequence[ResourceChange]) -> dict[int, tuple[str | None, str | None]]:
    """(old path, new path) of each project, from its component's inputs, else its role's gitlab-project-path tag."""
    paths: dict[int, tuple[str | None, str | None]] = {}
    for kind in ("project", "role"):
        for c in changes:
            if c.kind != kind or c.project_id is None or c.project_id in paths:
                continue
            old, new = _path_of(c.old, kind), _path_of(c.new, kind)
            if c.op == "delete":
                new = None
            if c.op == "create":
                old = None
            if old is not None or new is not None:
                paths[c.project_id] = (old, new)
    return paths


def _path_of(state: State | None, kind: str) -> str | None:
    if state is None:
        return None
    if kind == "project":
        value = state.inputs.get("path", state.outputs.get("path"))
    else:
        tags = state.inputs.get("tags") or state.outputs.get("tags")
        value = tags.get("gitlab-project-path") if isinstance(tags, Mapping) else None
    return value if isinstance(value, str) and value not in (SECRET, UNKNOWN) else None


def _counts(changes: Iterable[ResourceChange]) -> OpCounts:
    n = {"create": 0, "update": 0, "delete": 0, "replace": 0, "import": 0}
    for c in changes:
        op = "import" if c.op == "import-replacement" else c.op
        if op in n:
            n[op] += 1
    return OpCounts(n["create"], n["update"], n["delete"], n["replace"], n["import"])


def skipped_projects(stack_outputs: Mapping[str, Any] | None) -> tuple[SkippedProject, ...] | None:
    """The stack's `skipped` output ([{id, path, reason, …}]), or None when it is absent or not known."""
    raw = (stack_outputs or {}).get("skipped")
    if not isinstance(raw, list):
        return None
    out = []
    for s in raw:
        if not isinstance(s, Mapping):
            return None
        sid, path, reason = s.get("id"), s.get("path"), s.get("reason")
        if not isinstance(sid, int | float) or not isinstance(path, str) or not isinstance(reason, str):
            return None
        out.append(SkippedProject(int(sid), path, reason))
    return tuple(out)


def summarize(changes: Changes | Sequence[ResourceChange]) -> Summary:
    changes = Changes.of(changes)
    res = changes.resources
    paths = project_paths(res)

    def ref(c: ResourceChange, side: int) -> ProjectEntry:
        pid = c.project_id if c.project_id is not None else -1
        return ProjectEntry(pid, paths.get(pid, (None, None))[side])

    return Summary(
        roles=_counts(c for c in res if c.kind == "role"),
        policies=_counts(c for c in res if c.kind in ("inline-policy", "attachment", "managed-policy")),
        variables=_counts(c for c in res if c.kind == "variable"),
        projects_new=tuple(sorted((ref(c, 1) for c in res if c.kind == "project" and c.op == "create"), key=_ref_key)),
        projects_gone=tuple(sorted((ref(c, 0) for c in res if c.kind == "project" and c.op == "delete"), key=_ref_key)),
        skipped=skipped_projects(changes.stack_outputs),
    )


def _ref_key(r: ProjectEntry) -> tuple[str, int]:
    return (r.path or "", r.id)


# --- trust policies ---

@dataclass(frozen=True)
class TrustConditions:
    """The `sub` and `aud` values a trust policy admits (StringEquals and StringLike together)."""

    subs: frozenset[str]
    audiences: frozenset[str]


def trust_conditions(value: Any) -> TrustConditions | None:
    """A role's assumeRolePolicy (a JSON string, as the program passes it) read for its sub/aud conditions.

    None when it is not known (secret, unknown in a preview, or not JSON shaped like a policy).
    """
    if isinstance(value, str):
        if value in (SECRET, UNKNOWN):
            return None
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            return None
    if not isinstance(value, Mapping):
        return None
    statements = value.get("Statement")
    if isinstance(statements, Mapping):
        statements = [statements]
    if not isinstance(statements, list):
        return None
    subs: set[str] = set()
    auds: set[str] = set()
    for st in statements:
        condition = st.get("Condition") if isinstance(st, Mapping) else None
        if not isinstance(condition, Mapping):
            continue
        for operator in ("StringEquals", "StringLike"):
            block = condition.get(operator)
            if not isinstance(block, Mapping):
                continue
            for key, values in block.items():
                target = subs if str(key).endswith(":sub") else auds if str(key).endswith(":aud") else None
                if target is not None:
                    target.update(str(v) for v in (values if isinstance(values, list) else [values]))
    return TrustConditions(frozenset(subs), frozenset(auds))


_SUB = re.compile(r"project_path:(?P<path>[^:]*):ref_type:(?P<type>branch|tag):ref:(?P<ref>.*)", re.DOTALL)


def describe_sub(sub: str) -> tuple[str | None, str]:
    """(project path, "branch main") of GitLab's default `sub`; (None, the sub) for any other shape."""
    m = _SUB.fullmatch(sub)
    if m is None:
        return None, sub
    return m["path"], f"{m['type']} {m['ref'].replace('${$}', '$')}"
