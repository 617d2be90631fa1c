"""Planning each role's policies: selection, attachment kinds, validation and IAM's quotas."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from fleet.errors import ConfigError, PlanError
from fleet.inventory import parse_inventory
from fleet.planner import build_plan
from fleet.policy_library import load_library
from tests.gitlab_double import make_group, make_project
from tests.helpers import make_config

GROUPS = [make_group(1, "acme"), make_group(2, "acme/apps", 1), make_group(3, "acme/infra", 1)]
SHARED = {"description": "Reads the stack's shared bucket.", "document": {
    "Version": "2012-10-17", "Statement": [{"Sid": "Read", "Effect": "Allow", "Action": "s3:GetObject",
                                            "Resource": "arn:${partition}:s3:::shared-${account_id}-${region}/*"}]}}
MINE = {"description": "Writes the project's prefix.", "document": {
    "Version": "2012-10-17", "Statement": [{"Sid": "Write", "Effect": "Allow", "Action": ["s3:PutObject", "s3:GetObject"],
                                            "Resource": "arn:${partition}:s3:::artifacts-${account_id}/${project_path}/*"}]}}


def numbered_shared_entries(count: int) -> dict:
    """e0, e1, ...: shared entries that differ only in their Sid (one managed policy each)."""
    return {f"e{i}": {**SHARED, "document": {**SHARED["document"], "Statement": [
        {**SHARED["document"]["Statement"][0], "Sid": f"S{i}"}]}} for i in range(count)}


def listing(*projects):
    return parse_inventory({"group": {"id": 1, "full_path": "acme"}, "projects": list(projects)})


def p(project_id, path, **kw):
    return make_project(project_id, path, GROUPS, **kw)


def library(tmp_path: Path, **entries) -> dict:
    folder = tmp_path / "policies"
    folder.mkdir(exist_ok=True)
    for name, entry in entries.items():
        (folder / f"{name}.yaml").write_text(yaml.safe_dump(entry))
    return load_library([folder])


def plan_for(tmp_path, policies, *projects, entries=None, quotas=None, region="eu-west-1"):
    config = make_config(gitlab={"group": "acme"}, policies=policies, **({"quotas": quotas} if quotas else {}))
    lib = library(tmp_path, **(entries if entries is not None else {"shared-read": SHARED, "my-prefix": MINE}))
    return build_plan(config, listing(*projects), "dev", library=lib, region=region)


def by_path(plan):
    return {x.path: [(pol.name, pol.attachment, pol.reason) for pol in x.policies] for x in plan.projects}


def test_default_rules_and_self_service_each_with_its_first_reason(tmp_path):
    plan = plan_for(tmp_path, {
        "default": ["caller-identity"],
        "rules": [{"match": {"paths": ["acme/apps/**"], "topics": ["container"]}, "attach": ["my-prefix"]},
                  {"match": {"paths": ["acme/**"]}, "attach": ["shared-read", "caller-identity"]}],
        "selfService": {"allowed": ["my-prefix"]}},
        p(1, "acme/apps/web", topics=["container"]), p(2, "acme/apps/cli"), p(3, "acme/infra/dns", topics=["aws:my-prefix"]),
        p(4, "acme/infra/vpc", topics=["aws:shared-read", "aws:admin"]))
    assert by_path(plan) == {
        "acme/apps/web": [("caller-identity", "managed", "default"), ("my-prefix", "inline", "rule 1"),
                          ("shared-read", "managed", "rule 2")],
        "acme/apps/cli": [("caller-identity", "managed", "default"), ("shared-read", "managed", "rule 2")],
        "acme/infra/dns": [("caller-identity", "managed", "default"), ("shared-read", "managed", "rule 2"),
                           ("my-prefix", "inline", "topic aws:my-prefix")],
        "acme/infra/vpc": [("caller-identity", "managed", "default"), ("shared-read", "managed", "rule 2")],
    }
    [refused] = [w for w in plan.warnings if "selfService" in w]
    assert refused.startswith('acme/infra/vpc asks for "aws:shared-read", "aws:admin", which fleet:policies.selfService.allowed')


def test_a_shared_entry_is_one_managed_policy_for_the_whole_fleet_and_inline_entries_are_rendered_per_project(tmp_path):
    projects = [p(100 + i, f"acme/apps/svc-{i}") for i in range(500)]
    plan = plan_for(tmp_path, {"default": ["shared-read", "my-prefix"]}, *projects)
    [managed] = plan.managed_policies
    assert managed.attached_to == 500 and managed.arn == "arn:aws:iam::111111111111:policy/gitlab-aws-oidc-fleet/fleet-dev.shared-read"
    assert managed.document["Statement"][0]["Resource"] == "arn:aws:s3:::shared-111111111111-eu-west-1/*"
    first = plan.projects[0].to_json()["policies"]
    assert first[0] == {"name": "shared-read", "attachment": "managed", "arn": managed.arn, "reason": "default"}
    assert first[1]["document"]["Statement"][0]["Resource"] == "arn:aws:s3:::artifacts-111111111111/acme/apps/svc-0/*"
    assert set(first[1]) == {"name", "attachment", "document", "reason"}
    assert plan.to_json()["managed_policies"] == [{"name": "shared-read", "arn": managed.arn, "document": managed.document,
                                                  "attached_to": 500}]


def test_iams_own_policy_variables_are_written_with_a_double_dollar(tmp_path):
    entry = {"description": "Own user folder.", "document": {"Version": "2012-10-17", "Statement": [
        {"Sid": "Home", "Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::home/$${aws:userid}/${project_id}/*"}]}}
    plan = plan_for(tmp_path, {"default": ["home"]}, p(7, "acme/apps/web"), entries={"home": entry})
    assert plan.projects[0].policies[0].document["Statement"][0]["Resource"] == "arn:aws:s3:::home/${aws:userid}/7/*"


def test_unknown_entry_names_are_refused_with_the_closest_known_one(tmp_path):
    with pytest.raises(ConfigError) as info:
        plan_for(tmp_path, {"default": ["my-prefx"], "rules": [{"match": {"topics": ["x"]}, "attach": ["nope"]}]}, p(1, "acme/a"))
    problems = info.value.problems
    assert problems[0].startswith('fleet:policies.default: "my-prefx" is not in the policy library (did you mean my-prefix?); known entries:')
    assert problems[1].startswith('fleet:policies.rules[0].attach: "nope" is not in the policy library; known entries:')


def test_pass_role_on_star_is_refused_unless_the_entry_is_allowed_privileged(tmp_path):
    entry = {"description": "Passes any role.", "document": {"Version": "2012-10-17", "Statement": [
        {"Sid": "Pass", "Effect": "Allow", "Action": "iam:PassRole", "Resource": "*"}]},
             "accept": [{"finding": "RESOURCE_STAR", "reason": "test"}]}
    with pytest.raises(PlanError, match=r"policy library entry pass-any .*privileged: .*iam:PassRole"):
        plan_for(tmp_path, {"default": ["pass-any"]}, p(1, "acme/a"), entries={"pass-any": entry})
    plan = plan_for(tmp_path, {"default": ["pass-any"], "allowPrivileged": ["pass-any"]}, p(1, "acme/a"), entries={"pass-any": entry})
    assert plan.managed_policies[0].name == "pass-any"


def test_an_unknown_action_is_refused_with_a_suggestion(tmp_path):
    entry = {"description": "Typo.", "document": {"Version": "2012-10-17", "Statement": [
        {"Sid": "Get", "Effect": "Allow", "Action": "s3:GetObjects", "Resource": "arn:aws:s3:::b/${project_path}/*"}]}}
    with pytest.raises(PlanError, match=r"UNKNOWN_ACTION: .*s3:GetObjects.*s3:GetObject"):
        plan_for(tmp_path, {"default": ["typo"]}, p(1, "acme/a"), entries={"typo": entry})


def test_a_lint_finding_passes_only_when_the_entry_accepts_it_with_a_reason(tmp_path):
    star = {"description": "Reads every object.", "document": {"Version": "2012-10-17", "Statement": [
        {"Sid": "All", "Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}]}}
    with pytest.raises(PlanError, match=r"RESOURCE_STAR"):
        plan_for(tmp_path, {"default": ["star"]}, p(1, "acme/a"), entries={"star": star})
    accepted = {**star, "accept": [{"finding": "RESOURCE_STAR", "reason": "a public bucket of fixtures"}]}
    assert plan_for(tmp_path, {"default": ["star"]}, p(1, "acme/a"), entries={"star": accepted}).managed_policies


def test_managed_policies_per_role_at_the_quota_and_one_over(tmp_path):
    entries = numbered_shared_entries(11)
    names = sorted(entries)
    assert len(plan_for(tmp_path, {"default": names[:10]}, p(1, "acme/a"), entries=entries).projects[0].policies) == 10
    with pytest.raises(PlanError, match=r"acme/a: 11 managed policies \(.*\), over fleet:quotas.managedPoliciesPerRole \(10\)"):
        plan_for(tmp_path, {"default": names}, p(1, "acme/a"), entries=entries)
    assert plan_for(tmp_path, {"default": names}, p(1, "acme/a"), entries=entries, quotas={"managedPoliciesPerRole": 11})


def test_inline_characters_per_role_at_the_limit_and_one_over(tmp_path):
    def entry(resource_chars):
        return {"description": "Big.", "document": {"Version": "2012-10-17", "Statement": [
            {"Sid": "Big", "Effect": "Allow", "Action": "s3:GetObject",
             "Resource": "arn:aws:s3:::${project_id}/" + "x" * resource_chars}]}}
    from fleet.policy_lint import document_size
    base = document_size({"Version": "2012-10-17", "Statement": [{"Sid": "Big", "Effect": "Allow", "Action": "s3:GetObject",
                                                                   "Resource": "arn:aws:s3:::1/"}]})
    fits = 10_240 - base
    assert plan_for(tmp_path, {"default": ["big"]}, p(1, "acme/a"), entries={"big": entry(fits)}).projects
    with pytest.raises(PlanError, match=r"acme/a: inline policies of 10241 characters \(big 10241\), over IAM's 10240 per role"):
        plan_for(tmp_path, {"default": ["big"]}, p(1, "acme/a"), entries={"big": entry(fits + 1)})


def test_roles_and_customer_managed_policies_per_account(tmp_path):
    with pytest.raises(PlanError, match=r"the stack plans 3 roles, over fleet:quotas.rolesPerAccount \(2\)"):
        plan_for(tmp_path, {}, p(1, "acme/a"), p(2, "acme/b"), p(3, "acme/c"), quotas={"rolesPerAccount": 2})
    with pytest.raises(PlanError, match=r"needs 2 customer managed policies, over fleet:quotas.customerManagedPoliciesPerAccount \(1\)"):
        plan_for(tmp_path, {"default": ["shared-read", "caller-identity"]}, p(1, "acme/a"),
                 quotas={"customerManagedPoliciesPerAccount": 1})


def test_policies_config_errors_name_the_key(tmp_path):
    with pytest.raises(ConfigError) as info:
        make_config(policies={"default": "caller-identity", "rules": [{"match": {}, "attach": ["x"]}, {"mach": {"paths": ["a"]}}],
                              "selfService": {"allow": ["x"]}}, quotas={"managedPoliciesPerRole": 30})
    text = "\n".join(info.value.problems)
    for expected in ('fleet:policies.default: "caller-identity" is not allowed; expected a list of policy library entry names',
                     "fleet:policies.rules[0].match: {} is not allowed; expected paths (globs) and/or topics",
                     "fleet:policies.rules[1].mach: ", "did you mean policies.rules[1].match?",
                     "fleet:policies.rules[1].attach: missing",
                     "fleet:policies.selfService.allow: ", "did you mean policies.selfService.allowed?",
                     "fleet:quotas.managedPoliciesPerRole: 30 is not allowed; expected a whole number from 1 to 25"):
        assert expected in text, text


def test_every_rendered_document_is_linted_so_one_projects_values_cannot_slip_through(tmp_path):
    entry = {"description": "Keyed by id.", "document": {"Version": "2012-10-17", "Statement": [
        {"Sid": "Own", "Effect": "Allow", "Action": "s3:GetObject", "Resource": "${project_slug}"}]}}
    with pytest.raises(PlanError) as info:  # not an ARN: refused for each project, reported once with the others named
        plan_for(tmp_path, {"default": ["raw"]}, p(1, "acme/a"), p(2, "acme/b"), entries={"raw": entry})
    text = str(info.value)
    assert "RESOURCE_ARN" in text and "(rendered for acme/a)" in text
    assert "policy library entry raw: refused for 1 more project(s) too: acme/b" in text


def test_an_aws_managed_policy_is_attached_only_when_allowed_by_name(tmp_path):
    admin = {"description": "Everything.", "arn": "arn:aws:iam::aws:policy/AdministratorAccess"}
    with pytest.raises(PlanError, match=r"attaches the AWS managed policy arn:aws:iam::aws:policy/AdministratorAccess, which "
                                        r"cannot be checked offline; list the entry in fleet:policies.allowPrivileged"):
        plan_for(tmp_path, {"selfService": {"allowed": ["admin"]}}, p(1, "acme/a", topics=["aws:admin"]), entries={"admin": admin})
    plan = plan_for(tmp_path, {"default": ["admin"], "allowPrivileged": ["admin"]}, p(1, "acme/a"), entries={"admin": admin})
    assert plan.projects[0].to_json()["policies"] == [{"name": "admin", "attachment": "aws-managed",
                                                       "arn": "arn:aws:iam::aws:policy/AdministratorAccess", "reason": "default"}]


def test_policy_refusals_are_configuration_errors(tmp_path):
    with pytest.raises(PlanError) as info:
        plan_for(tmp_path, {}, p(1, "acme/a"), p(2, "acme/b"), quotas={"rolesPerAccount": 1})
    assert info.value.exit_code == 78


def test_a_duplicate_key_in_an_entry_is_refused_not_silently_dropped(tmp_path):
    folder = tmp_path / "dup"
    folder.mkdir()
    (folder / "dup.yaml").write_text("description: d\ndocument:\n  Version: '2012-10-17'\n  Statement:\n"
                                     "    - {Sid: A, Effect: Allow, Action: s3:GetObject, Resource: '*', Resource: 'arn:aws:s3:::b/*'}\n")
    with pytest.raises(ConfigError, match=r'dup.yaml: cannot be read as YAML: the key "Resource" appears twice in one map'):
        load_library([folder])


def test_shared_policy_names_fit_iam_and_descriptions_never_change_with_the_entry(tmp_path):
    stack_name = "s" * 111  # fleet-<111 s>.shared-read: 129 characters, one over
    config = make_config(gitlab={"group": "acme"}, policies={"default": ["shared-read"]})
    lib = library(tmp_path, **{"shared-read": SHARED})
    with pytest.raises(PlanError, match=r"the managed policy name fleet-s+\.shared-read is over IAM's 128 characters"):
        build_plan(config, listing(p(1, "acme/a")), stack_name, library=lib, region="eu-west-1")
    plan = build_plan(config, listing(p(1, "acme/a")), "dev", library=lib, region="eu-west-1")
    assert plan.managed_policies[0].description == "gitlab-aws-oidc-fleet stack dev: policy library entry shared-read"


@pytest.mark.parametrize("region", ["", "*", "eu-west-1/x"])
def test_region_placeholders_need_a_real_region(tmp_path, region):
    with pytest.raises(PlanError, match=r"entries use \$\{region\}, but the stack's aws:region is"):
        plan_for(tmp_path, {"default": ["shared-read"]}, p(1, "acme/a"), region=region)


def test_a_change_is_checked_with_the_old_and_new_policies_together(tmp_path):
    """Pulumi attaches the new before it detaches the old: a swap at the quota would fail halfway through up."""
    from fleet.deployed import Deployed, DeployedPolicies
    entries = numbered_shared_entries(11)
    names = sorted(entries)
    config = make_config(gitlab={"group": "acme"}, policies={"default": names[1:]})  # e0 out, e9 (the 10th) in
    lib = library(tmp_path, **entries)
    arn = "arn:aws:iam::111111111111:policy/gitlab-aws-oidc-fleet/fleet-dev.{}".format
    now = Deployed(names={1: "gitlab-acme-a"}, policies={1: DeployedPolicies(frozenset(arn(n) for n in names[:10]))})
    with pytest.raises(PlanError, match=r"acme/a: the change holds 11 managed policies at once .* make the change in two runs"):
        build_plan(config, listing(p(1, "acme/a")), "dev", now, library=lib, region="eu-west-1")
    assert build_plan(config, listing(p(1, "acme/a")), "dev", library=lib, region="eu-west-1").projects  # a first up: fine
    same = Deployed(names={1: "gitlab-acme-a"}, policies={1: DeployedPolicies(frozenset(arn(n) for n in names[1:]))})
    assert build_plan(config, listing(p(1, "acme/a")), "dev", same, library=lib, region="eu-west-1").projects


def test_the_policies_output_feeds_the_next_runs_check(tmp_path):
    from fleet.deployed import deployed_names
    plan = plan_for(tmp_path, {"default": ["shared-read", "my-prefix"]}, p(1, "acme/a"))
    output = {str(x.id): x.policies_output() for x in plan.projects}
    assert output["1"]["attached"] == [plan.managed_policies[0].arn] and output["1"]["inline"]["my-prefix"] > 100
    deployed = deployed_names({"roleNames": {"1": "gitlab-acme-a"}, "policies": output}, [], "outputs")
    assert deployed.policies[1].attached == {plan.managed_policies[0].arn}


def test_a_renamed_role_is_a_new_role_and_holds_none_of_the_old_ones_policies(tmp_path):
    from fleet.deployed import Deployed, DeployedPolicies
    entries = numbered_shared_entries(11)
    names = sorted(entries)
    config = make_config(gitlab={"group": "acme"}, policies={"default": names[1:]})
    arn = "arn:aws:iam::111111111111:policy/gitlab-aws-oidc-fleet/fleet-dev.{}".format
    old = Deployed(names={1: "gitlab-acme-a"}, policies={1: DeployedPolicies(frozenset(arn(n) for n in names[:10]))})
    plan = build_plan(config, listing(p(1, "acme/b")), "dev", old, library=library(tmp_path, **entries), region="eu-west-1")
    assert plan.projects[0].role_name == "gitlab-acme-b" and len(plan.projects[0].policies) == 10


def test_a_malformed_policies_output_is_refused_in_one_sentence():
    from fleet.deployed import parse_policies
    from fleet.errors import FleetError
    for inline in ({"x": float("nan")}, {"x": -1}, {"x": 1.5}, {"x": True}):
        with pytest.raises(FleetError, match=r"outputs: policies is .* expected a map of project id to \{attached, inline\}"):
            parse_policies({"1": {"attached": [], "inline": inline}}, "outputs")
    assert parse_policies({"1": {"attached": [], "inline": {"x": 570.0}}}, "outputs")[1].inline == {"x": 570}


def test_an_unhashable_key_is_a_yaml_error_not_a_crash(tmp_path):
    folder = tmp_path / "odd"
    folder.mkdir()
    (folder / "odd.yaml").write_text("description: d\n? [a, b]\n: 1\n")
    with pytest.raises(ConfigError, match=r"odd.yaml: cannot be read as YAML"):
        load_library([folder])
