"""Pulumi mocks that behave like the services: IAM calls go to moto, plus the checks real IAM and
GitLab make that moto does not (name rules, case-insensitive uniqueness, trust policy grammar and
size, principals that must exist, CI/CD variable keys and duplicates).
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from typing import Any

import pulumi

from fleet.policy_lint import document_size, lint

ROLE_NAME = re.compile(r"^[\w+=,.@-]{1,64}$")
VARIABLE_KEY = re.compile(r"^[A-Za-z0-9_]{1,255}$")
CONDITION_OPERATORS = {"StringEquals", "StringNotEquals", "StringLike", "StringNotLike",
                       "StringEqualsIgnoreCase", "ForAnyValue:StringEquals", "ForAllValues:StringEquals"}
STATEMENT_KEYS = {"Sid", "Effect", "Principal", "Action", "Condition"}


class ServiceRefusal(Exception):
    """What the real service would answer with an error."""


def check_trust_policy(document: str, existing_providers: set[str]) -> None:
    if len(re.sub(r"\s", "", document)) > 2048:
        raise ServiceRefusal("LimitExceeded: Cannot exceed quota for ACLSizePerRole: 2048")
    try:
        policy = json.loads(document)
    except json.JSONDecodeError as err:
        raise ServiceRefusal(f"MalformedPolicyDocument: {err}") from err
    if policy.get("Version") != "2012-10-17" or not isinstance(policy.get("Statement"), list) or not policy["Statement"]:
        raise ServiceRefusal("MalformedPolicyDocument: Version 2012-10-17 and a non-empty Statement list are required")
    for statement in policy["Statement"]:
        if set(statement) - STATEMENT_KEYS or statement.get("Effect") not in ("Allow", "Deny"):
            raise ServiceRefusal(f"MalformedPolicyDocument: bad statement {statement}")
        if statement.get("Action") != "sts:AssumeRoleWithWebIdentity":
            raise ServiceRefusal(f"MalformedPolicyDocument: unexpected action {statement.get('Action')}")
        federated = statement.get("Principal", {}).get("Federated")
        if federated not in existing_providers:
            raise ServiceRefusal(f"MalformedPolicyDocument: Invalid principal in policy: {federated}")
        for operator, keys in statement.get("Condition", {}).items():
            if operator not in CONDITION_OPERATORS or not isinstance(keys, dict):
                raise ServiceRefusal(f"MalformedPolicyDocument: unknown condition operator {operator}")
            for values in keys.values():
                if not all(isinstance(v, str) for v in (values if isinstance(values, list) else [values])):
                    raise ServiceRefusal("MalformedPolicyDocument: condition values must be strings")


def check_permission_policy(document: str, limit: int = 10_240) -> None:
    """Lint an inline role policy with the program's linter (the same Service Authorization Reference data), as IAM
    would refuse a malformed or oversized one; findings an entry may accept (e.g. RESOURCE_STAR) IAM accepts too."""
    try:
        policy = json.loads(document)
    except json.JSONDecodeError as err:
        raise ServiceRefusal(f"MalformedPolicyDocument: {err}") from err
    if document_size(policy) > limit:
        raise ServiceRefusal(f"LimitExceeded: Maximum policy size of {limit} bytes exceeded")
    refused = [f for f in lint(policy) if not f.acceptable]
    if refused:
        raise ServiceRefusal(f"MalformedPolicyDocument: {[(f.code, f.message) for f in refused]}")


def all_roles(iam: Any) -> list[dict[str, Any]]:
    """Every role in the (moto) account: ListRoles answers 100 at a time."""
    return [role for page in iam.get_paginator("list_roles").paginate() for role in page["Roles"]]


@dataclass
class FleetMocks(pulumi.runtime.Mocks):
    """Resources and invokes as the services answer them. The SDK calls mocks from several threads; one lock
    keeps each call's reads and writes of moto and of the recorded state together."""

    iam: Any  # a boto3 IAM client inside moto's mock_aws
    account_id: str
    previous_outputs: dict[str, Any] = field(default_factory=dict)  # the stack's outputs of its last `up`
    secret_outputs: list[str] = field(default_factory=list)  # which of them are secrets
    held_roles: dict[str, str] = field(default_factory=dict)  # logical name -> role name the stack's state holds
    resources: list[pulumi.runtime.MockResourceArgs] = field(default_factory=list)
    variables: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)  # (project, key, scope) -> inputs
    imported: list[tuple[str, str]] = field(default_factory=list)  # (type, import id) of each resource declared with import_
    # logical name -> outputs of a sub-claim resource the stack's state holds from its last `up` (then it is updated)
    held_sub_claims: dict[str, dict[str, Any]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def by_type(self, typ: str) -> list[pulumi.runtime.MockResourceArgs]:
        return [r for r in self.resources if r.typ == typ]

    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        with self._lock:
            return self._new_resource(args)

    def call(self, args: pulumi.runtime.MockCallArgs):
        with self._lock:
            return self._call(args)

    def _new_resource(self, args: pulumi.runtime.MockResourceArgs):
        self.resources.append(args)
        inputs = dict(args.inputs)
        if args.resource_id and args.typ != "pulumi:pulumi:StackReference":  # the `import_` option
            return self._import(args.typ, args.name, args.resource_id, inputs)
        if args.typ == "pulumi:pulumi:StackReference":
            return inputs["name"], {"name": inputs["name"], "outputs": self.previous_outputs,
                                    "secretOutputNames": self.secret_outputs}
        if args.typ == "aws:iam/role:Role":
            return self._role(args.name, inputs)
        if args.typ == "aws:iam/openIdConnectProvider:OpenIdConnectProvider":
            for known in self.iam.list_open_id_connect_providers()["OpenIDConnectProviderList"]:
                tags = {t["Key"]: t["Value"] for t in self.iam.list_open_id_connect_provider_tags(
                    OpenIDConnectProviderArn=known["Arn"])["Tags"]}
                if known["Arn"].endswith("/" + inputs["url"].removeprefix("https://")) and \
                        tags.get("fleet-stack") == inputs.get("tags", {}).get("fleet-stack"):
                    return known["Arn"], {**inputs, "arn": known["Arn"]}  # the stack's own, from its last `up`
            arn = self.iam.create_open_id_connect_provider(
                Url=inputs["url"], ClientIDList=inputs["clientIdLists"],
                Tags=[{"Key": k, "Value": v} for k, v in inputs.get("tags", {}).items()])["OpenIDConnectProviderArn"]
            return arn, {**inputs, "arn": arn}
        if args.typ == "aws:iam/rolePolicy:RolePolicy":
            check_permission_policy(inputs["policy"])
            self.iam.put_role_policy(RoleName=inputs["role"], PolicyName=inputs["name"], PolicyDocument=inputs["policy"])
            return f"{inputs['role']}:{inputs['name']}", inputs
        if args.typ == "aws:iam/policy:Policy":
            check_permission_policy(inputs["policy"], limit=6_144)
            arn = self.iam.create_policy(PolicyName=inputs["name"], Path=inputs.get("path", "/"), PolicyDocument=inputs["policy"],
                                         Description=inputs.get("description", ""),
                                         Tags=[{"Key": k, "Value": v} for k, v in inputs.get("tags", {}).items()])["Policy"]["Arn"]
            return arn, {**inputs, "arn": arn}
        if args.typ == "aws:iam/rolePolicyAttachment:RolePolicyAttachment":
            attached = self.iam.list_attached_role_policies(RoleName=inputs["role"])["AttachedPolicies"]
            if len(attached) >= 10:  # IAM's default quota of managed policies per role
                raise ServiceRefusal(f"LimitExceeded: Cannot exceed quota for PoliciesPerRole: 10 ({inputs['role']})")
            self.iam.attach_role_policy(RoleName=inputs["role"], PolicyArn=inputs["policyArn"])
            return f"{inputs['role']}/{inputs['policyArn']}", inputs
        if args.typ == "aws:iam/rolePoliciesExclusive:RolePoliciesExclusive":  # what the provider does: drop the rest
            keep = set(inputs.get("policyNames", []))
            for name in self.iam.list_role_policies(RoleName=inputs["roleName"])["PolicyNames"]:
                if name not in keep:
                    self.iam.delete_role_policy(RoleName=inputs["roleName"], PolicyName=name)
            return inputs["roleName"], inputs
        if args.typ == "aws:iam/rolePolicyAttachmentsExclusive:RolePolicyAttachmentsExclusive":
            keep = set(inputs.get("policyArns", []))
            for policy in self.iam.list_attached_role_policies(RoleName=inputs["roleName"])["AttachedPolicies"]:
                if policy["PolicyArn"] not in keep:
                    self.iam.detach_role_policy(RoleName=inputs["roleName"], PolicyArn=policy["PolicyArn"])
            return inputs["roleName"], inputs
        if args.typ == "gitlab:index/projectVariable:ProjectVariable":
            return self._variable(inputs)
        if args.typ.startswith("pulumi-python:dynamic") and "components" in inputs:
            return self._sub_claim(args.name, inputs)
        return f"{args.name}-id", inputs

    def _sub_claim(self, logical: str, inputs: dict[str, Any]):
        """The dynamic sub-claim resource, run as the engine would: its provider against the GitLab double (create,
        or diff and update when the state holds it); the provider's state stays out of the outputs."""
        from fleet.sub_claims import SubClaimProvider
        props = {k: v for k, v in inputs.items() if k != "__provider"}
        provider = SubClaimProvider()
        olds = self.held_sub_claims.get(logical)
        if olds is None:
            result = provider.create(props)
            return result.id, result.outs
        if provider.diff(str(olds["projectId"]), olds, props).changes:
            return str(props["projectId"]), provider.update(str(olds["projectId"]), olds, props).outs
        return str(props["projectId"]), {**props, "original": olds["original"]}

    def _import(self, typ: str, logical: str, import_id: str, inputs: dict[str, Any]):
        """What the engine does since pulumi/pulumi#19339: read the resource by its import id (failing when it does
        not exist), then update it to the declared inputs."""
        self.imported.append((typ, import_id))
        if typ == "aws:iam/role:Role":
            role = self.iam.get_role(RoleName=import_id)["Role"]  # NoSuchEntity when absent, as the provider's Read
            self._deployer_may_change(typ, import_id, role.get("Tags", []))
            if role["RoleName"] != inputs["name"] or role["Path"] != inputs.get("path", "/"):
                raise ServiceRefusal(f"EntityAlreadyExists: replacing imported role {import_id} creates {inputs['name']} first")
            self.held_roles[logical] = import_id
            name, state = self._role(logical, inputs)
            self.iam.update_role(RoleName=name, Description=inputs.get("description", ""),
                                 MaxSessionDuration=int(inputs.get("maxSessionDuration", 3600)))
            self.iam.tag_role(RoleName=name, Tags=[{"Key": k, "Value": v} for k, v in inputs.get("tags", {}).items()])
            return name, state
        if typ == "gitlab:index/projectVariable:ProjectVariable":
            project, key, scope = import_id.split(":", 2)
            if (project, key, scope) not in self.variables:
                raise ServiceRefusal(f"404 Variable Not Found: cannot import {import_id}")
            if (inputs["project"], inputs["key"], inputs.get("environmentScope", "*")) != (project, key, scope):
                raise ServiceRefusal(f"the import id {import_id} names another variable than the declared one")
            self.variables[(project, key, scope)] = inputs
            return import_id, inputs
        if typ == "aws:iam/openIdConnectProvider:OpenIdConnectProvider":
            found = self.iam.get_open_id_connect_provider(OpenIDConnectProviderArn=import_id)  # NoSuchEntity when absent
            self._deployer_may_change(typ, import_id, found.get("Tags", []))
            # The provider updates the audiences and tags in place; moto lacks Add/RemoveClientID, so make it anew (same ARN).
            self.iam.delete_open_id_connect_provider(OpenIDConnectProviderArn=import_id)
            arn = self.iam.create_open_id_connect_provider(
                Url=inputs["url"], ClientIDList=inputs["clientIdLists"],
                Tags=[{"Key": k, "Value": v} for k, v in inputs.get("tags", {}).items()])["OpenIDConnectProviderArn"]
            if arn != import_id:
                raise ServiceRefusal(f"the import id {import_id} names another provider than the url {inputs['url']}")
            return import_id, {**inputs, "arn": import_id}
        raise NotImplementedError(f"import of {typ}")

    @staticmethod
    def _deployer_may_change(typ: str, name: str, tags: list[dict[str, str]]) -> None:
        """iam/pulumi-up-policy.json: roles and providers are changed only when tagged managed-by=<the program>."""
        if {t["Key"]: t["Value"] for t in tags}.get("managed-by") != "gitlab-aws-oidc-fleet":
            raise ServiceRefusal(f"AccessDenied: not authorized to change {typ} {name} (no managed-by tag of the program)")

    def _role(self, logical: str, inputs: dict[str, Any]):
        name = inputs["name"]
        if not ROLE_NAME.match(name):
            raise ServiceRefusal(f"ValidationError: role name {name!r} must match [\\w+=,.@-]{{1,64}}")
        if len(inputs.get("description", "")) > 1000:
            raise ServiceRefusal("ValidationError: description must have length less than or equal to 1000")
        if any(len(k) > 128 or len(v) > 256 for k, v in inputs.get("tags", {}).items()):
            raise ServiceRefusal("ValidationError: tag keys are at most 128 and values at most 256 characters")
        providers = {p["Arn"] for p in self.iam.list_open_id_connect_providers()["OpenIDConnectProviderList"]}
        if self.held_roles.get(logical) == name:  # the same logical role as in the last `up`: an update, not a create
            check_trust_policy(inputs["assumeRolePolicy"], providers)
            self.iam.update_assume_role_policy(RoleName=name, PolicyDocument=inputs["assumeRolePolicy"])
            role = self.iam.get_role(RoleName=name)["Role"]
            return name, {**inputs, "arn": role["Arn"], "uniqueId": role["RoleId"], "id": name}
        existing = {r["RoleName"].casefold() for r in all_roles(self.iam)}
        if name.casefold() in existing:  # IAM compares role names ignoring case; moto does not
            raise ServiceRefusal(f"EntityAlreadyExists: Role with name {name} already exists.")
        providers = {p["Arn"] for p in self.iam.list_open_id_connect_providers()["OpenIDConnectProviderList"]}
        check_trust_policy(inputs["assumeRolePolicy"], providers)
        duration = inputs.get("maxSessionDuration", 3600)  # numbers cross the RPC as floats
        if duration != int(duration):
            raise ServiceRefusal(f"ValidationError: MaxSessionDuration {duration} is not a whole number of seconds")
        kwargs: dict[str, Any] = dict(
            RoleName=name, Path=inputs.get("path", "/"), AssumeRolePolicyDocument=inputs["assumeRolePolicy"],
            MaxSessionDuration=int(duration), Description=inputs.get("description", ""),
            Tags=[{"Key": k, "Value": v} for k, v in inputs.get("tags", {}).items()])
        if inputs.get("permissionsBoundary"):
            kwargs["PermissionsBoundary"] = inputs["permissionsBoundary"]
        role = self.iam.create_role(**kwargs)["Role"]
        return name, {**inputs, "arn": role["Arn"], "uniqueId": role["RoleId"], "id": name}

    def _variable(self, inputs: dict[str, Any]):
        key, scope = inputs["key"], inputs.get("environmentScope", "*")
        if not VARIABLE_KEY.match(key):
            raise ServiceRefusal(f"400 key {key!r} can contain only letters, digits and '_'")
        if len(inputs["value"]) > 10_000:
            raise ServiceRefusal("400 value is too long (maximum is 10000 characters)")
        identity = (inputs["project"], key, scope)
        if identity in self.variables:
            raise ServiceRefusal(f"400 {{key: [{key} has already been taken]}} in project {inputs['project']}")
        self.variables[identity] = inputs
        return ":".join(identity), inputs

    def _call(self, args: pulumi.runtime.MockCallArgs):
        if args.token == "aws:iam/getRoles:getRoles":
            roles = all_roles(self.iam)
            return {"arns": [r["Arn"] for r in roles], "names": [r["RoleName"] for r in roles], "id": self.account_id}
        if args.token == "aws:iam/getRole:getRole":
            role = self.iam.get_role(RoleName=args.args["name"])["Role"]
            return {"name": role["RoleName"], "arn": role["Arn"], "tags": {t["Key"]: t["Value"] for t in role.get("Tags", [])},
                    "id": role["RoleName"]}
        if args.token == "aws:index/getCallerIdentity:getCallerIdentity":
            return {"accountId": self.account_id, "arn": f"arn:aws:iam::{self.account_id}:user/ci", "userId": "AIDAEXAMPLE",
                    "id": self.account_id}
        if args.token == "aws:iam/getOpenIdConnectProvider:getOpenIdConnectProvider":
            try:
                found = self.iam.get_open_id_connect_provider(OpenIDConnectProviderArn=args.args["arn"])
            except self.iam.exceptions.NoSuchEntityException:  # the engine reports it as a failed invoke, in these words
                return {}, [("arn", "reading IAM OIDC Provider: couldn't find resource")]
            return {"arn": args.args["arn"], "url": found["Url"], "clientIdLists": found["ClientIDList"],
                    "thumbprintLists": found.get("ThumbprintList", []),
                    "tags": {t["Key"]: t["Value"] for t in found.get("Tags", [])}}
        raise NotImplementedError(args.token)
