"""Adopting a hand-made setup: collisions refused by default (all listed), imported with fleet:adopt."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import pulumi
import pytest
import yaml
from moto import mock_aws

from fleet import adoption, program
from fleet.adoption import Collision, CollisionError, plan_checks, resolve, variable_collisions
from fleet.config import AdoptConfig
from fleet.deployed import Deployed
from fleet.gitlab_api import GitLabAPI, RetryPolicy
from fleet.inventory import parse_inventory
from fleet.planner import build_plan
from tests.gitlab_double import Fault, make_variable
from tests.helpers import make_config
from tests.pulumi_mocks import FleetMocks
from tests.test_program import stack_config

ACCOUNT = "111111111111"
ROLE = "aws:iam/role:Role"
VARIABLE = "gitlab:index/projectVariable:ProjectVariable"
PROVIDER = "aws:iam/openIdConnectProvider:OpenIdConnectProvider"
PROVIDER_ARN = f"arn:aws:iam::{ACCOUNT}:oidc-provider/gitlab.example.com"
OURS = "Managed by gitlab-aws-oidc-fleet (stack prod); edits are overwritten."


def small_plan(stack: str = "prod", **sections: Any):
    inventory = parse_inventory({"group": {"id": 1, "full_path": "shop"}, "projects": [
        {"id": 7, "path_with_namespace": "shop/cart", "default_branch": "main"},
        {"id": 8, "path_with_namespace": "shop/web", "default_branch": "main"}]})
    return build_plan(make_config(variables={"environmentScope": "production"}, **sections), inventory, stack)


def lookup_of(found: dict[tuple[int, str], dict[str, Any]], asked: list[tuple[int, str, str]] | None = None):
    def lookup(project: int, key: str, scope: str):
        if asked is not None:
            asked.append((project, key, scope))
        return found.get((project, key))
    return lookup


# --- the pure rules -------------------------------------------------------------------------------------

def test_every_collision_is_listed_and_the_message_ends_with_what_to_do():
    plan = small_plan()
    found, refused = variable_collisions(plan.projects, lookup_of({
        (7, "ROLE_ARN"): make_variable("ROLE_ARN", "arn:aws:iam::111111111111:role/by-hand", "production"),
        (8, "GITLAB_AWS_ACCOUNT_ID"): make_variable("GITLAB_AWS_ACCOUNT_ID", ACCOUNT, "production")}), "prod")
    role = adoption.role_collision(plan.projects[0], plan.projects[0].role_arn, {}, "prod")
    assert isinstance(role, Collision) and refused == []
    with pytest.raises(CollisionError) as info:
        resolve([*found, role], [], AdoptConfig(), stack_file="stacks/Pulumi.prod.yaml")
    message = str(info.value)
    assert "shop/cart: CI/CD variable ROLE_ARN in scope production" in message
    assert "shop/web: CI/CD variable GITLAB_AWS_ACCOUNT_ID in scope production" in message
    assert "IAM role gitlab-shop-cart for shop/cart (not made by this program)" in message
    assert ("set fleet:adopt.variables: true, fleet:adopt.roles: true in stacks/Pulumi.prod.yaml; or remove them. "
            "The deployer's policy (iam/pulumi-up-policy.json) changes only roles and OIDC providers tagged "
            "managed-by=gitlab-aws-oidc-fleet") in message
    assert message.endswith("with administrator credentials: aws iam tag-role --role-name gitlab-shop-cart --tags "
                            "Key=managed-by,Value=gitlab-aws-oidc-fleet. Nothing was changed.")


HANDED_OVER = {"managed-by": "gitlab-aws-oidc-fleet"}  # the tag an administrator sets to hand a resource over


def test_adopting_one_kind_leaves_the_others_refused():
    plan = small_plan()
    role = adoption.role_collision(plan.projects[0], plan.projects[0].role_arn, HANDED_OVER, "prod")
    provider = adoption.provider_collision(plan, HANDED_OVER)
    assert isinstance(role, Collision) and isinstance(provider, Collision)
    with pytest.raises(CollisionError, match=r"https://gitlab.example.com: OIDC provider .* set fleet:adopt.provider: true in"):
        resolve([role, provider], [], AdoptConfig(roles=True), stack_file="f")
    adopted = resolve([role, provider], [], AdoptConfig(roles=True, provider=True), stack_file="f")
    assert adopted.roles == {7: "gitlab-shop-cart"} and adopted.provider == PROVIDER_ARN and len(adopted) == 2


def test_a_role_or_provider_the_deployer_may_not_change_is_adopted_only_once_handed_over():
    plan = small_plan()
    role = adoption.role_collision(plan.projects[0], plan.projects[0].role_arn, {}, "prod")
    provider = adoption.provider_collision(plan, {"owner": "platform-team"})
    with pytest.raises(CollisionError) as info:
        resolve([role, provider], [], AdoptConfig(roles=True, provider=True), stack_file="f")
    message = str(info.value)
    assert message.startswith("Not yet adoptable: IAM role gitlab-shop-cart for shop/cart (not made by this program); "
                              "https://gitlab.example.com: OIDC provider")
    assert ("aws iam tag-role --role-name gitlab-shop-cart --tags Key=managed-by,Value=gitlab-aws-oidc-fleet; "
            f"aws iam tag-open-id-connect-provider --open-id-connect-provider-arn {PROVIDER_ARN} --tags "
            "Key=managed-by,Value=gitlab-aws-oidc-fleet. Nothing was changed.") in message


def test_variable_import_ids_are_project_key_scope_and_other_scopes_are_never_asked():
    plan = small_plan()
    asked: list[tuple[int, str, str]] = []
    found, _ = variable_collisions(plan.projects, lookup_of(
        {(7, "ROLE_ARN"): make_variable("ROLE_ARN", "x", "production")}, asked), "prod")
    assert {scope for _, _, scope in asked} == {"production"}
    adopted = resolve(found, [], AdoptConfig(variables=True), stack_file="f")
    assert adopted.variables == {(7, "ROLE_ARN"): "7:ROLE_ARN:production"}


def test_the_stacks_own_variables_pass_and_another_stacks_or_hidden_ones_are_never_adopted():
    plan = small_plan()
    found, refused = variable_collisions(plan.projects, lookup_of({
        (7, "ROLE_ARN"): make_variable("ROLE_ARN", "x", "production", description=OURS),
        (7, "GITLAB_AWS_ACCOUNT_ID"): make_variable("GITLAB_AWS_ACCOUNT_ID", ACCOUNT, "production",
                                                    description=OURS.replace("prod", "dev")),
        (8, "ROLE_ARN"): make_variable("ROLE_ARN", "x", "production", hidden=True)}), "prod")
    assert found == []
    assert refused[0].startswith("shop/cart: CI/CD variable GITLAB_AWS_ACCOUNT_ID in scope production is written by "
                                 "another stack (stack dev)")
    assert "shop/web: CI/CD variable ROLE_ARN in scope production is hidden" in refused[1]
    with pytest.raises(CollisionError, match="is hidden, and GitLab cannot unhide a variable"):
        resolve(found, refused, AdoptConfig(variables=True), stack_file="f")


def test_only_projects_new_to_the_stack_are_asked():
    plan = small_plan()
    asked: list[tuple[int, str, str]] = []
    adoption.check_variables(plan, Deployed(names={7: "gitlab-shop-cart"}), lookup_of({}, asked))
    assert {project for project, _, _ in asked} == {8}


def test_roles_the_stack_holds_pass_and_roles_it_cannot_take_over_are_refused():
    plan = small_plan()
    cart = plan.projects[0]
    ours = {"fleet-stack": "prod", "gitlab-project-id": "7"}
    assert adoption.role_collision(cart, cart.role_arn, ours, "prod") is None
    other = adoption.role_collision(cart, cart.role_arn, {"fleet-stack": "dev", "gitlab-project-path": "shop/x"}, "prod")
    assert other == "gitlab-shop-cart for shop/cart (stack dev, project shop/x)"
    moved = adoption.role_collision(cart, f"arn:aws:iam::{ACCOUNT}:role/ci/gitlab-shop-cart", {}, "prod")
    assert isinstance(moved, str) and "IAM cannot rename or move a role, so it cannot be adopted" in moved
    with pytest.raises(CollisionError, match="role names already taken in account 111111111111 by roles this stack "
                                             r"does not hold: gitlab-shop-cart for shop/cart \(stack dev"):
        resolve([], [], AdoptConfig(roles=True), stack_file="f", taken=[other], account=ACCOUNT)


def test_another_stacks_provider_is_pointed_at_not_adopted():
    plan = small_plan()
    assert adoption.provider_collision(plan, {"fleet-stack": "prod"}) is None
    verdict = adoption.provider_collision(plan, {"fleet-stack": "dev"})
    assert verdict == (f"the OIDC provider {PROVIDER_ARN} for https://gitlab.example.com was made by stack dev: set "
                       f"fleet:oidc.providerArn: {PROVIDER_ARN} to use it without managing it")


def test_a_provider_with_other_audiences_is_never_adopted():
    """Adopting declares the stack's one audience: the others, and the roles outside the fleet that use them, would go."""
    plan = small_plan()
    assert isinstance(adoption.provider_collision(plan, {}, ["https://gitlab.example.com"]), Collision)
    verdict = adoption.provider_collision(plan, {}, ["https://gitlab.example.com", "sts.amazonaws.com"])
    assert verdict == (f"the OIDC provider {PROVIDER_ARN} for https://gitlab.example.com also lists the audiences "
                       "sts.amazonaws.com, which roles outside the fleet may rely on; adopting it would remove them: set "
                       f"fleet:oidc.providerArn: {PROVIDER_ARN} to use it without managing it")


# --- GitLab: the variable request, and `plan` ------------------------------------------------------------

def api_of(double) -> GitLabAPI:
    return GitLabAPI(double.url, "glpat-test", RetryPolicy(timeout=5, max_retries=0))


def test_a_variable_is_read_in_one_scope_and_404_means_free(shop):
    shop.variables[101] = [make_variable("ROLE_ARN", "a", "*"), make_variable("ROLE_ARN", "b", "production")]
    api = api_of(shop)
    assert api.project_variable(101, "ROLE_ARN", "production")["value"] == "b"
    assert api.project_variable(101, "ROLE_ARN", "review/*") is None
    assert api.project_variable(102, "ROLE_ARN", "*") is None
    path, query = shop.requests[0]
    assert path == "/api/v4/projects/101/variables/ROLE_ARN" and query == {"filter[environment_scope]": "production"}


def test_a_token_without_maintainer_is_refused_with_the_role_it_needs(shop):
    shop.faults.append(Fault(count=1, status=403, path_contains="/variables/"))
    lookup = adoption.gitlab_lookup(api_of(shop), {101: "shop/cart"})
    with pytest.raises(CollisionError, match=r"may not read the CI/CD variables of shop/cart \(403\): .*needs the "
                                             "Maintainer role on each project"):
        lookup(101, "ROLE_ARN", "production")


def shop_plan(double, gitlab: dict[str, Any] | None = None, **sections: Any):
    from fleet.discovery import fetch_inventory
    config = make_config(gitlab={"url": "https://gitlab.example.com", "apiUrl": double.url, "group": "shop", **(gitlab or {})},
                         variables={"environmentScope": "production"}, **sections)
    return config, build_plan(config, fetch_inventory(config.gitlab, "glpat-test", progress=None), "prod")


def test_plan_refuses_hand_made_variables_and_says_aws_is_checked_by_preview_and_up(shop, tmp_path):
    shop.variables[101] = [make_variable("ROLE_ARN", "arn:aws:iam::111111111111:role/by-hand", "production"),
                           make_variable("ROLE_ARN", "other scope, never touched", "*")]
    config, plan = shop_plan(shop)
    with pytest.raises(CollisionError) as info:
        plan_checks(config, plan, None, "glpat-test", tmp_path)
    assert "shop/cart: CI/CD variable ROLE_ARN in scope production" in str(info.value)
    assert f"fleet:adopt.variables: true in {tmp_path}/Pulumi.prod.yaml" in str(info.value)
    config, plan = shop_plan(shop, adopt={"variables": True})
    notes = plan_checks(config, plan, None, "glpat-test", tmp_path)
    assert notes[0].startswith("adopting 1 CI/CD variable(s) that already exist (fleet:adopt)")
    assert notes[-1] == ("IAM roles and an OIDC provider that already exist are checked by pulumi preview and pulumi up "
                         "(plan has no AWS access)")


def test_variables_of_new_projects_are_asked_many_at_once_with_the_same_verdict(shop, tmp_path):
    shop.variables[101] = [make_variable("ROLE_ARN", "arn:aws:iam::111111111111:role/by-hand", "production")]
    shop.variables[102] = [make_variable("GITLAB_AWS_ACCOUNT_ID", "111111111111", "production")]
    verdicts = []
    for concurrency in (1, 8):
        config, plan = shop_plan(shop, gitlab={"concurrency": concurrency})
        shop.latency = 0.2 if concurrency > 1 else 0.0
        first = len(shop.arrivals)
        with pytest.raises(CollisionError) as info:
            plan_checks(config, plan, None, "glpat-test", tmp_path)
        shop.latency = 0.0
        verdicts.append(str(info.value))
        asked = shop.arrivals[first:]
        if concurrency > 1:  # 8 arrived before the first could be answered
            assert sum(1 for t in asked if t < asked[0] + 0.1) == 8
    assert verdicts[0] == verdicts[1]  # the same collisions, in the same order


def test_a_failed_variable_request_stops_the_others(shop, tmp_path, monkeypatch):
    monkeypatch.setattr("fleet.gitlab_api.pause", lambda s, cancel=None: None)
    shop.faults.append(Fault(count=1, status=403, path_contains="/variables/"))
    config, plan = shop_plan(shop, gitlab={"concurrency": 4})
    first = len(shop.requests)
    with pytest.raises(CollisionError, match="may not read the CI/CD variables of"):
        plan_checks(config, plan, None, "glpat-test", tmp_path)
    assert len(shop.requests) - first < 2 * len(plan.projects)  # not every project was asked


def test_plan_from_a_saved_listing_says_nothing_was_checked(tmp_path):
    notes = plan_checks(make_config(), small_plan(), None, None, tmp_path)
    assert notes == ["--inventory: nothing was checked for CI/CD variables, IAM roles or an OIDC provider that already "
                     "exist; pulumi preview and pulumi up check them before declaring anything"]


# --- the program under Pulumi's mocks --------------------------------------------------------------------

def run(tmp_path: Path, config: dict[str, Any], iam: Any, created: list[FleetMocks],
        variables: dict[tuple[str, str, str], dict[str, Any]]) -> dict[str, Any]:
    """fleet.program.main() for stack prod, with the variables GitLab already holds (as the provider sees them)."""
    stacks_dir = tmp_path / "stacks"
    stacks_dir.mkdir(exist_ok=True)
    (stacks_dir / "Pulumi.prod.yaml").write_text(yaml.safe_dump({"config": config}))
    mocks = FleetMocks(iam=iam, account_id=ACCOUNT, variables=dict(variables))
    created.append(mocks)
    pulumi.runtime.set_mocks(mocks, project="gitlab-aws-oidc-fleet", stack="prod", preview=False, organization="organization")
    pulumi.runtime.set_all_config({k: v if isinstance(v, str) else json.dumps(v) for k, v in config.items()})
    outputs: dict[str, Any] = {}

    @pulumi.runtime.test
    def go():
        return pulumi.Output.all(**program.main(stacks_dir)).apply(outputs.update)

    go()
    return outputs


@pytest.fixture
def hand_made(shop, monkeypatch, token):
    """The manual recipe, done for shop/cart before the stack: its role, the provider, ROLE_ARN in production."""
    monkeypatch.setenv("MOTO_ACCOUNT_ID", ACCOUNT)
    by_hand = make_variable("ROLE_ARN", f"arn:aws:iam::{ACCOUNT}:role/gitlab-shop-cart", "production")
    elsewhere = make_variable("ROLE_ARN", "another scope's value", "review/*")
    shop.variables[101] = [by_hand, elsewhere]
    with mock_aws():
        iam = boto3.client("iam", region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test")
        iam.create_open_id_connect_provider(Url="https://gitlab.example.com", ClientIDList=["https://gitlab.example.com"])
        iam.create_role(RoleName="gitlab-shop-cart", AssumeRolePolicyDocument=json.dumps({
            "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Federated": PROVIDER_ARN},
                                                    "Action": "sts:AssumeRoleWithWebIdentity"}]}))
        gitlab_side = {("101", "ROLE_ARN", "production"): {"project": "101", "key": "ROLE_ARN", "value": by_hand["value"],
                                                            "environmentScope": "production"},
                       ("101", "ROLE_ARN", "review/*"): {"project": "101", "key": "ROLE_ARN", "value": elsewhere["value"],
                                                          "environmentScope": "review/*"}}
        yield iam, gitlab_side


def test_by_default_preview_and_up_list_every_collision_and_create_nothing(shop, tmp_path, hand_made):
    iam, gitlab_side = hand_made
    created: list[FleetMocks] = []
    with pytest.raises(pulumi.RunError) as info:
        run(tmp_path, stack_config(shop), iam, created, gitlab_side)
    message = str(info.value)
    assert "shop/cart: CI/CD variable ROLE_ARN in scope production" in message
    assert "IAM role gitlab-shop-cart for shop/cart (not made by this program)" in message
    assert f"https://gitlab.example.com: OIDC provider {PROVIDER_ARN} (not made by this program)" in message
    assert ("set fleet:adopt.variables: true, fleet:adopt.roles: true, fleet:adopt.provider: true in "
            "stacks/Pulumi.prod.yaml; or remove them.") in message
    assert message.endswith("Key=managed-by,Value=gitlab-aws-oidc-fleet. Nothing was changed.")
    assert [r.typ for r in created[0].resources if r.typ != "pulumi:pulumi:StackReference"] == []


def test_adopting_untagged_roles_and_provider_stops_before_the_import(shop, tmp_path, hand_made):
    iam, gitlab_side = hand_made
    created: list[FleetMocks] = []
    config = stack_config(shop, adopt={"variables": True, "roles": True, "provider": True})
    with pytest.raises(pulumi.RunError, match=r"Not yet adoptable: IAM role gitlab-shop-cart .*aws iam tag-role "):
        run(tmp_path, config, iam, created, gitlab_side)
    assert created[0].imported == [] and [r.typ for r in created[0].resources if r.typ != "pulumi:pulumi:StackReference"] == []


def test_adopted_resources_are_imported_then_managed_and_other_scopes_are_untouched(shop, tmp_path, hand_made):
    iam, gitlab_side = hand_made
    iam.tag_role(RoleName="gitlab-shop-cart", Tags=[{"Key": "managed-by", "Value": "gitlab-aws-oidc-fleet"}])
    iam.tag_open_id_connect_provider(OpenIDConnectProviderArn=PROVIDER_ARN,
                                     Tags=[{"Key": "managed-by", "Value": "gitlab-aws-oidc-fleet"}])
    created: list[FleetMocks] = []
    config = stack_config(shop, adopt={"variables": True, "roles": True, "provider": True})
    outputs = run(tmp_path, config, iam, created, gitlab_side)
    mocks = created[0]
    assert sorted(mocks.imported) == sorted([(PROVIDER, PROVIDER_ARN), (ROLE, "gitlab-shop-cart"),
                                             (VARIABLE, "101:ROLE_ARN:production")])
    # from then on the stack's: its trust policy, tags and audience, its variable's settings
    role = iam.get_role(RoleName="gitlab-shop-cart")["Role"]
    assert {t["Key"]: t["Value"] for t in role["Tags"]}["fleet-stack"] == "prod"
    assert role["AssumeRolePolicyDocument"]["Statement"][0]["Condition"]
    provider = iam.get_open_id_connect_provider(OpenIDConnectProviderArn=PROVIDER_ARN)
    assert provider["ClientIDList"] == ["https://gitlab.example.com"]
    assert {t["Key"]: t["Value"] for t in provider["Tags"]}["fleet-stack"] == "prod"
    adopted = mocks.variables[("101", "ROLE_ARN", "production")]
    assert adopted["protected"] is True and adopted["description"] == OURS
    assert mocks.variables[("101", "ROLE_ARN", "review/*")]["value"] == "another scope's value"
    assert outputs["roleNames"]["101"] == "gitlab-shop-cart" and outputs["counts"]["roles"] == 29
