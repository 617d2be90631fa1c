"""Engine events as the pulumi CLI emits them (JSON, one object per line), for a small fleet.

The shapes follow the SDK's `pulumi.automation.events` (what `EngineEvent.from_json` reads) and Pulumi's engine:
secrets are blinded to the secret signature object, unknown preview values are the computed placeholder, a
replacement emits create-replacement/replace/delete-replaced steps, a refresh emits a `refresh` pre event and an
outputs event whose op is the result (same/update/delete). Always parse these with `parse()` in tests.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pulumi.automation.events import EngineEvent

from fleet.changes import COMPUTED, SECRET_SIG, SIG_KEY
from fleet.resources import COMPONENT_TYPE
from fleet.trust import ProjectRef, provider_arn, trust_policy

STACK = "dev"
PROJECT = "gitlab-aws-oidc-fleet"
ACCOUNT = "111111111111"
ISSUER = "https://gitlab.example.com"
AUDIENCE = "https://gitlab.example.com"
TOKEN = "glpat-SUPER-SECRET-TOKEN-123"
SECRET_VALUE = "hunter2-variable-secret"

ROLE = "aws:iam/role:Role"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
ATTACHMENT = "aws:iam/rolePolicyAttachment:RolePolicyAttachment"
INLINE_EXCLUSIVE = "aws:iam/rolePoliciesExclusive:RolePoliciesExclusive"
ATTACHMENTS_EXCLUSIVE = "aws:iam/rolePolicyAttachmentsExclusive:RolePolicyAttachmentsExclusive"
VARIABLE = "gitlab:index/projectVariable:ProjectVariable"
MANAGED_POLICY = "aws:iam/policy:Policy"
OIDC_PROVIDER = "aws:iam/openIdConnectProvider:OpenIdConnectProvider"
STACK_TYPE = "pulumi:pulumi:Stack"
GITLAB_PROVIDER = "pulumi:providers:gitlab"
AWS_PROVIDER = "pulumi:providers:aws"


# --- values ---

def secret(value: Any) -> dict[str, str]:
    """A secret as the CLI's events carry it (blinded)."""
    return {SIG_KEY: SECRET_SIG, "ciphertext": "[secret]"}


def secret_shown(value: Any) -> dict[str, str]:
    """A secret serialized with secrets shown (plaintext inside the signature object)."""
    return {SIG_KEY: SECRET_SIG, "plaintext": json.dumps(value)}


def urn(type_: str, name: str, *, parents: Sequence[str] = (), stack: str = STACK) -> str:
    qualified = "$".join([*parents, type_])
    return f"urn:pulumi:{stack}::{PROJECT}::{qualified}::{name}"


def trust_json(project_id: int, path: str, refs: Sequence[str]) -> str:
    parsed = []
    for r in refs:
        ref_type, _, name = r.partition(":")
        parsed.append(ProjectRef(ref_type, name, "*" in name or "?" in name))
    return json.dumps(trust_policy(issuer=ISSUER, provider=provider_arn(ACCOUNT, ISSUER), audience=AUDIENCE,
                                   project_id=project_id, project_path=path, refs=parsed))


def role_arn(name: str) -> str:
    return f"arn:aws:iam::{ACCOUNT}:role/{name}"


# --- states and steps ---

def state(type_: str, name: str, *, inputs: Mapping[str, Any], outputs: Mapping[str, Any] | None = None,
          id: str = "", parents: Sequence[str] = (), custom: bool = True) -> dict[str, Any]:
    stack_urn = urn(STACK_TYPE, f"{PROJECT}-{STACK}")
    parent = urn(parents[-1], _parent_name(name), parents=parents[:-1]) if parents else stack_urn
    provider = "" if not custom or type_.startswith("pulumi:providers:") else \
        urn(GITLAB_PROVIDER if type_.startswith("gitlab:") else AWS_PROVIDER, "default") + "::04da6b54-provider-id"
    return {"type": type_, "urn": urn(type_, name, parents=parents), "id": id, "parent": parent,
            "provider": provider, "custom": custom, "delete": False, "protect": False, "retainOnDelete": False,
            "inputs": dict(inputs), "outputs": dict(outputs if outputs is not None else inputs)}


def _parent_name(child: str) -> str:
    """`project-42` for `project-42-role` (children of the component)."""
    parts = child.split("-")
    return "-".join(parts[:2])


def step(op: str, old: Mapping[str, Any] | None, new: Mapping[str, Any] | None, *, diffs: Sequence[str] = (),
         keys: Sequence[str] = (), detailed: Mapping[str, str] | None = None) -> dict[str, Any]:
    """One step's metadata. `detailed` maps property paths to diff kinds (update, add-replace, …)."""
    some = new or old
    assert some is not None
    md: dict[str, Any] = {"op": op, "urn": some["urn"], "type": some["type"], "provider": some["provider"],
                          "logical": True}
    if old is not None:
        md["old"] = copy.deepcopy(old)
    if new is not None:
        md["new"] = copy.deepcopy(new)
    if keys:
        md["keys"] = list(keys)
    if diffs:
        md["diffs"] = list(diffs)
    if detailed:
        md["detailedDiff"] = {k: {"diffKind": v, "inputDiff": True} for k, v in detailed.items()}
    return md


def pre(md: Mapping[str, Any], *, planning: bool = True) -> dict[str, Any]:
    return {"resourcePreEvent": {"metadata": dict(md), "planning": planning}}


def outputs(md: Mapping[str, Any], *, planning: bool = True) -> dict[str, Any]:
    return {"resOutputsEvent": {"metadata": dict(md), "planning": planning}}


def prelude(config: Mapping[str, str]) -> dict[str, Any]:
    return {"preludeEvent": {"config": dict(config)}}


def summary(changes: Mapping[str, int]) -> dict[str, Any]:
    return {"summaryEvent": {"maybeCorrupt": False, "durationSeconds": 0, "resourceChanges": dict(changes),
                             "PolicyPacks": {}}}


def diagnostic(message: str, *, severity: str = "info", urn_: str = "") -> dict[str, Any]:
    return {"diagnosticEvent": {"urn": urn_, "prefix": "", "message": message, "color": "raw",
                                "severity": severity, "ephemeral": False}}


def cancel() -> dict[str, Any]:
    return {"cancelEvent": {}}


def numbered(events: Iterable[Mapping[str, Any]], *, start: int = 0) -> list[dict[str, Any]]:
    """The events with `sequence` and `timestamp` as the CLI sets them."""
    return [{"sequence": start + i, "timestamp": 1_700_000_000 + i, **e} for i, e in enumerate(events)]


def write_jsonl(events: Iterable[Mapping[str, Any]], path: Path) -> Path:
    """The events as the CLI's event log: one JSON object per line."""
    path.write_text("".join(json.dumps(e) + "\n" for e in events), encoding="utf-8")
    return path


def parse(events: Iterable[Mapping[str, Any]], *, via_json: bool = True) -> list[EngineEvent]:
    """Through the SDK's own parser, so the shapes are the real ones (via JSON text unless told: large fleets)."""
    return [EngineEvent.from_json(json.loads(json.dumps(e)) if via_json else dict(e)) for e in events]


# --- one project's resources ---

@dataclass(frozen=True)
class Project:
    id: int
    path: str
    role_name: str
    refs: tuple[str, ...] = ("branch:main",)
    inline: tuple[str, ...] = ()  # inline library entries
    attached: tuple[str, ...] = ()  # attached library entries (managed policies of the stack)
    extra_inline: tuple[str, ...] = ()  # held by the role, added by hand (seen by a refresh)
    extra_attached: tuple[str, ...] = ()
    account_value: Any = ACCOUNT  # GITLAB_AWS_ACCOUNT_ID's value as the events carry it
    role_arn_value: Any = None  # ROLE_ARN's value; None: the role's ARN
    tags: Mapping[str, str] = field(default_factory=dict)
    unique_id: str = ""

    @property
    def component(self) -> str:
        return f"project-{self.id}"


def managed_arn(entry: str) -> str:
    return f"arn:aws:iam::{ACCOUNT}:policy/fleet/{STACK}-{entry}"


def project_states(p: Project) -> dict[str, dict[str, Any]]:
    """Each resource's state, by logical name, as the stack holds it."""
    parents = (COMPONENT_TYPE,)
    name = p.component
    tags = {"gitlab-project-id": str(p.id), "gitlab-project-path": p.path, "fleet-stack": STACK,
            "managed-by": "gitlab-aws-oidc-fleet", **p.tags}
    role_inputs = {"name": p.role_name, "path": "/", "assumeRolePolicy": trust_json(p.id, p.path, p.refs),
                   "maxSessionDuration": 3600, "description": f"GitLab CI of {p.path}", "tags": tags}
    arn = role_arn(p.role_name)
    states = {
        name: state(COMPONENT_TYPE, name, inputs={"projectId": p.id, "path": p.path}, outputs={"roleArn": arn},
                    custom=False),
        f"{name}-role": state(ROLE, f"{name}-role", inputs=role_inputs, id=p.role_name, parents=parents,
                              outputs={**role_inputs, "arn": arn, "uniqueId": p.unique_id or f"AROA{p.id:012d}",
                                       "tagsAll": tags, "inlinePolicies": [], "managedPolicyArns": []}),
        f"{name}-inline-exclusive": state(
            INLINE_EXCLUSIVE, f"{name}-inline-exclusive", parents=parents, id=p.role_name,
            inputs={"roleName": p.role_name, "policyNames": list(p.inline)},
            outputs={"roleName": p.role_name, "policyNames": [*p.inline, *p.extra_inline]}),
        f"{name}-attachments-exclusive": state(
            ATTACHMENTS_EXCLUSIVE, f"{name}-attachments-exclusive", parents=parents, id=p.role_name,
            inputs={"roleName": p.role_name, "policyArns": [managed_arn(e) for e in p.attached]},
            outputs={"roleName": p.role_name, "policyArns": [*(managed_arn(e) for e in p.attached), *p.extra_attached]}),
    }
    for entry in p.inline:
        doc = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:GetObject",
                                                                   "Resource": f"arn:aws:s3:::{entry}/{p.path}/*"}]})
        states[f"{name}-policy-{entry}"] = state(ROLE_POLICY, f"{name}-policy-{entry}", parents=parents,
                                                 id=f"{p.role_name}:{entry}",
                                                 inputs={"role": p.role_name, "name": entry, "policy": doc})
    for entry in p.attached:
        states[f"{name}-attach-{entry}"] = state(ATTACHMENT, f"{name}-attach-{entry}", parents=parents,
                                                 id=f"{p.role_name}/{managed_arn(entry)}",
                                                 inputs={"role": p.role_name, "policyArn": managed_arn(entry)})
    for key, value in (("GITLAB_AWS_ACCOUNT_ID", p.account_value),
                       ("ROLE_ARN", arn if p.role_arn_value is None else p.role_arn_value)):
        inputs = {"project": str(p.id), "key": key, "value": value, "environmentScope": STACK, "protected": False,
                  "masked": False, "raw": True, "description": "managed by gitlab-aws-oidc-fleet"}
        states[f"{name}-{key}"] = state(VARIABLE, f"{name}-{key}", inputs=inputs, parents=parents,
                                        id=f"{p.id}:{key}:{STACK}")
    return states


def provider_states() -> dict[str, dict[str, Any]]:
    """The two default providers; the GitLab one holds the token (blinded, shown, and even as a bare string)."""
    gitlab_inputs = {"token": secret(TOKEN), "baseUrl": "https://gitlab.example.com/api/v4/", "version": "10.4.0",
                     "tokenShown": secret_shown(TOKEN), "note": TOKEN}
    return {
        "gitlab": state(GITLAB_PROVIDER, "default", inputs=gitlab_inputs, id="gl-provider-id", custom=True),
        "aws": state(AWS_PROVIDER, "default", inputs={"region": "eu-west-1", "version": "7.0.0"}, id="aws-provider-id"),
    }


def stack_state(outputs_: Mapping[str, Any]) -> dict[str, Any]:
    return state(STACK_TYPE, f"{PROJECT}-{STACK}", inputs={}, outputs=outputs_, custom=False)


def shared_states(*, policy_doc: str = '{"Version":"2012-10-17"}') -> dict[str, dict[str, Any]]:
    oidc = {"url": ISSUER, "clientIdLists": [AUDIENCE], "tags": {"managed-by": "gitlab-aws-oidc-fleet"}}
    return {
        "gitlab-oidc-provider": state(OIDC_PROVIDER, "gitlab-oidc-provider", inputs=oidc,
                                      id=provider_arn(ACCOUNT, ISSUER)),
        "policy-s3-read": state(MANAGED_POLICY, "policy-s3-read", id=managed_arn("s3-read"),
                                inputs={"name": f"{STACK}-s3-read", "path": "/fleet/", "policy": policy_doc}),
    }


# --- a small fleet: what each step of a preview looks like ---

CART = Project(1, "shop/cart", "gitlab-shop-cart", attached=("s3-read",))
NEW = Project(2, "shop/new-thing", "gitlab-shop-new-thing", attached=("s3-read",))
PAYMENTS = Project(3, "shop/payments", "gitlab-shop-payments")
RENAMED_OLD = Project(4, "shop/old-name", "gitlab-shop-old-name")
RENAMED_NEW = Project(4, "shop/new-name", "gitlab-shop-new-name")
GONE = Project(5, "shop/gone", "gitlab-shop-gone", inline=("logs",))
SKIPPED = [{"id": 5, "path": "shop/gone", "reason": "archived", "detail": "archived in GitLab"},
           {"id": 6, "path": "shop/<odd>|name`", "reason": "excluded", "detail": "matches fleet:exclude"}]


def _same(states: Mapping[str, dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for s in states.values():
        md = step("same", s, s)
        out += [pre(md), outputs(md)]
    return out


def _create(states: Mapping[str, dict[str, Any]], *, unknown: Sequence[str] = ()) -> list[dict[str, Any]]:
    out = []
    for name, s in states.items():
        new = copy.deepcopy(s)
        new["id"] = ""
        new["outputs"] = {k: (COMPUTED if k in ("arn", "uniqueId") else v) for k, v in new["outputs"].items()}
        if name in unknown:
            new["inputs"]["value"] = COMPUTED
        md = step("create", None, new)
        out += [pre(md), outputs(md)]
    return out


def _delete(states: Mapping[str, dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for s in states.values():
        md = step("delete", s, None)
        out += [pre(md), outputs(md)]
    return out


def _update(old: dict[str, Any], new: dict[str, Any], diffs: Sequence[str]) -> list[dict[str, Any]]:
    md = step("update", old, new, diffs=diffs, detailed={d: "update" for d in diffs})
    return [pre(md), outputs(md)]


def _replace(old: dict[str, Any], new: dict[str, Any], keys: Sequence[str]) -> list[dict[str, Any]]:
    detailed = {k: "update-replace" for k in keys}
    fresh = copy.deepcopy(new)
    fresh["id"] = ""
    create = step("create-replacement", old, fresh, keys=keys, diffs=keys, detailed=detailed)
    swap = step("replace", old, fresh, keys=keys, diffs=keys, detailed=detailed)
    gone = copy.deepcopy(old)
    gone["delete"] = True
    delete = step("delete-replaced", gone, None)
    return [pre(create), outputs(create), pre(swap), outputs(swap), pre(delete), outputs(delete)]


@dataclass(frozen=True)
class Scenario:
    """Which projects a preview sees, and how. The defaults cover every kind of step."""

    same: tuple[Project, ...] = (CART,)
    created: tuple[Project, ...] = (NEW,)
    trust_and_policy_update: tuple[tuple[Project, Project], ...] = (
        (PAYMENTS, replace(PAYMENTS, refs=("branch:main", "tag:v*"), inline=("s3-artifacts",),
                           account_value=secret(ACCOUNT), role_arn_value=secret_shown(SECRET_VALUE))),)
    renamed: tuple[tuple[Project, Project], ...] = ((RENAMED_OLD, RENAMED_NEW),)
    gone: tuple[Project, ...] = (GONE,)
    skipped: tuple[Mapping[str, Any], ...] = tuple(SKIPPED)
    managed_policy_changes: bool = True


def preview_events(scenario: Scenario = Scenario()) -> list[dict[str, Any]]:
    """A preview's events, numbered, ending with the stack's registered outputs and the summary."""
    providers = provider_states()
    shared = shared_states()
    roles = {p.path: role_arn(p.role_name) for p in (*scenario.same, *(n for _, n in scenario.renamed))}
    events: list[dict[str, Any]] = [prelude({"fleet:accountId": ACCOUNT, "gitlab:token": "[secret]"})]
    old_stack = stack_state({"roles": {p.path: role_arn(p.role_name) for p in (*scenario.same, *scenario.gone)},
                             "skipped": []})
    stack_md = step("same", old_stack, old_stack)
    events += [pre(stack_md)]
    events += _same(providers)
    events += _same({"gitlab-oidc-provider": shared["gitlab-oidc-provider"]})
    if scenario.managed_policy_changes:
        new_policy = shared_states(policy_doc='{"Version":"2012-10-17","Statement":[]}')["policy-s3-read"]
        events += _update(shared["policy-s3-read"], new_policy, ["policy"])
    else:
        events += _same({"policy-s3-read": shared["policy-s3-read"]})
    for p in scenario.same:
        events += _same(project_states(p))
    for p in scenario.created:
        events += _create(project_states(p), unknown=(f"{p.component}-ROLE_ARN",))
        roles[p.path] = COMPUTED
    for old_p, new_p in scenario.trust_and_policy_update:
        old_s, new_s = project_states(old_p), project_states(new_p)
        for name, new in new_s.items():
            old = old_s.get(name)
            if old is None:
                events += _create({name: new})
            elif old["inputs"] != new["inputs"]:
                events += _update(old, new, [k for k in new["inputs"] if old["inputs"].get(k) != new["inputs"][k]])
            else:
                events += _same({name: new})
        events += _delete({n: s for n, s in old_s.items() if n not in new_s})
        roles[new_p.path] = role_arn(new_p.role_name)
    for old_p, new_p in scenario.renamed:
        old_s, new_s = project_states(old_p), project_states(new_p)
        for name, new in new_s.items():
            old = old_s[name]
            if name.endswith("-role"):
                events += _replace(old, new, ["name"])
            elif old["inputs"] != new["inputs"]:
                events += _update(old, new, [k for k in new["inputs"] if old["inputs"].get(k) != new["inputs"][k]])
            else:
                events += _same({name: new})
    for p in scenario.gone:
        events += _delete(project_states(p))
    new_stack = stack_state({"roles": roles, "skipped": [dict(s) for s in scenario.skipped],
                             "counts": {"roles": len(roles)}, "providerArn": provider_arn(ACCOUNT, ISSUER)})
    events += [outputs(stack_md), outputs(step("same", old_stack, new_stack))]
    events += [diagnostic("a warning from the program", severity="warning")]
    events += [summary({"same": 10, "create": 8, "update": 4, "replace": 1, "delete": 8}), cancel()]
    return numbered(events)


# --- a refresh preview with drift of each kind ---

def _refresh(states: Mapping[str, dict[str, Any]], found: Mapping[str, dict[str, Any] | None]) -> list[dict[str, Any]]:
    """`refresh` pre events for every state; outputs events with the result op: what `found` says the cloud holds."""
    out = []
    for name, old in states.items():
        out.append(pre(step("refresh", old, old)))
        if name not in found:
            out.append(outputs(step("same", old, old)))
            continue
        now = found[name]
        out.append(outputs(step("delete", old, None) if now is None else step("update", old, now)))
    return out


def _edited(s: dict[str, Any], **outputs_: Any) -> dict[str, Any]:
    now = copy.deepcopy(s)
    now["outputs"].update(outputs_)
    return now


def refresh_events(*, projects: Sequence[Project] = (CART, PAYMENTS, NEW)) -> list[dict[str, Any]]:
    """Drift: CART's trust admits a hand-added branch, its tags and exclusives changed (IAM); PAYMENTS' role was deleted
    by hand and its ROLE_ARN variable deleted in GitLab; NEW's account variable was edited (GitLab); the stack's managed
    policy was edited (IAM, stack-wide)."""
    events: list[dict[str, Any]] = []
    providers = provider_states()
    shared = shared_states()
    events += _refresh(providers, {})
    events += _refresh(shared, {"policy-s3-read": _edited(shared["policy-s3-read"], policy='{"Statement":"edited"}')})
    for p in projects:
        states = project_states(p)
        found: dict[str, dict[str, Any] | None] = {}
        if p.id == CART.id:
            edited_trust = trust_json(p.id, p.path, (*p.refs, "branch:dev"))
            role = states[f"{p.component}-role"]
            found[f"{p.component}-role"] = _edited(role, assumeRolePolicy=edited_trust,
                                                  tags={**role["outputs"]["tags"], "owner": "@someone"})
            found[f"{p.component}-inline-exclusive"] = _edited(
                states[f"{p.component}-inline-exclusive"], policyNames=["hand-made"])
            found[f"{p.component}-attachments-exclusive"] = _edited(
                states[f"{p.component}-attachments-exclusive"],
                policyArns=[managed_arn("s3-read"), "arn:aws:iam::aws:policy/AdministratorAccess"])
        elif p.id == PAYMENTS.id:
            found[f"{p.component}-role"] = None
            found[f"{p.component}-ROLE_ARN"] = None
        elif p.id == NEW.id:
            found[f"{p.component}-GITLAB_AWS_ACCOUNT_ID"] = _edited(
                states[f"{p.component}-GITLAB_AWS_ACCOUNT_ID"], value="222222222222", protected=True)
        events += _refresh(states, found)
    stack = stack_state({"skipped": []})
    events += [pre(step("refresh", stack, stack)), outputs(step("same", stack, stack))]
    events += [summary({"same": 20, "update": 5, "delete": 2}), cancel()]
    return numbered(events)


def clean_refresh_events(projects: Sequence[Project] = (CART,)) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    events += _refresh(provider_states(), {})
    events += _refresh(shared_states(), {})
    for p in projects:
        events += _refresh(project_states(p), {})
    return numbered([*events, summary({"same": len(events) // 2})])


def clean_preview_events(projects: Sequence[Project] = (CART,)) -> list[dict[str, Any]]:
    return preview_events(Scenario(same=tuple(projects), created=(), trust_and_policy_update=(), renamed=(), gone=(),
                                   skipped=(), managed_policy_changes=False))


def created_fleet_events(n: int, *, first_id: int = 1000) -> list[dict[str, Any]]:
    """A preview that creates `n` projects (component and role; pre events only): for the size cap."""
    events: list[dict[str, Any]] = []
    parents = (COMPONENT_TYPE,)
    for i in range(n):
        pid = first_id + i
        path = f"big/group-{i % 97}/project-{i:05d}"
        name = f"project-{pid}"
        role_name = f"gitlab-big-project-{i:05d}"
        component = state(COMPONENT_TYPE, name, inputs={"projectId": pid, "path": path}, outputs={}, custom=False)
        role_inputs = {"name": role_name, "path": "/", "assumeRolePolicy": trust_json(pid, path, ("branch:main",)),
                       "tags": {"gitlab-project-id": str(pid), "gitlab-project-path": path}}
        role = state(ROLE, f"{name}-role", inputs=role_inputs, outputs={"arn": COMPUTED}, parents=parents)
        events += [pre({"op": "create", "urn": s["urn"], "type": s["type"], "provider": s["provider"], "new": s})
                   for s in (component, role)]
    return numbered(events)
