"""The Pulumi program under Pulumi's mocks, with IAM in moto and GitLab served by the double."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import boto3
import pulumi
import pytest
import yaml
from moto import mock_aws

from fleet import program
from fleet.cli import main as cli_main
from tests.iam_eval import token_allowed
from tests.pulumi_mocks import FleetMocks, all_roles

ACCOUNT = "111111111111"
ROLE = "aws:iam/role:Role"
VARIABLE = "gitlab:index/projectVariable:ProjectVariable"
PROVIDER = "aws:iam/openIdConnectProvider:OpenIdConnectProvider"


def stack_config(double, **sections: Any) -> dict[str, Any]:
    config = {
        "aws:region": "eu-west-1",
        "fleet:accountId": ACCOUNT,
        "fleet:gitlab": {"url": "https://gitlab.example.com", "apiUrl": double.url, "group": "shop",
                         "exclude": ["shop/sandbox/**"]},
        "fleet:trust": {"refs": ["branch:{default_branch}", "tag:v*"]},
        "fleet:variables": {"environmentScope": "production", "protected": True},
    }
    for key, value in sections.items():
        config[f"fleet:{key}"] = value
    return config


def created_nothing(mocks: FleetMocks) -> bool:
    """No resource but the read of the stack's own previous outputs (a read creates nothing)."""
    return [r.typ for r in mocks.resources if r.typ != "pulumi:pulumi:StackReference"] == []


def iam_client():
    return boto3.client("iam", region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test")


def run(tmp_path: Path, config: dict[str, Any], *, stack: str = "prod", caller: str = ACCOUNT,
        existing_provider: tuple[str, list[str]] | None = None, created: list[FleetMocks] | None = None,
        write_stack_file: bool = True, previous_outputs: dict[str, Any] | None = None,
        iam: Any = None, held_roles: dict[str, str] | None = None,
        secret_outputs: list[str] | None = None,
        held_sub_claims: dict[str, dict[str, Any]] | None = None) -> tuple[FleetMocks, dict[str, Any]]:
    """Run fleet.program.main() for one stack; returns the mocks (what was created) and the outputs.

    IAM is a fresh moto account unless `iam` (a client inside the caller's own mock_aws) is given, so that
    several stacks can run against one account.
    """
    stacks_dir = tmp_path / "stacks"
    stacks_dir.mkdir(exist_ok=True)
    if write_stack_file:
        (stacks_dir / f"Pulumi.{stack}.yaml").write_text(yaml.safe_dump({"config": config}))
    if iam is None:
        with mock_aws():
            return run(tmp_path, config, stack=stack, caller=caller, existing_provider=existing_provider,
                       created=created, write_stack_file=False, previous_outputs=previous_outputs, iam=iam_client(),
                       held_roles=held_roles, secret_outputs=secret_outputs, held_sub_claims=held_sub_claims)
    if existing_provider:
        iam.create_open_id_connect_provider(Url=existing_provider[0], ClientIDList=existing_provider[1])
    mocks = FleetMocks(iam=iam, account_id=caller, previous_outputs=previous_outputs or {}, held_roles=held_roles or {},
                       secret_outputs=secret_outputs or [], held_sub_claims=held_sub_claims or {})
    if created is not None:
        created.append(mocks)
    pulumi.runtime.set_mocks(mocks, project="gitlab-aws-oidc-fleet", stack=stack, preview=False,
                             organization="organization")
    pulumi.runtime.set_all_config({k: v if isinstance(v, str) else json.dumps(v) for k, v in config.items()})
    outputs: dict[str, Any] = {}

    @pulumi.runtime.test
    def go():
        result = program.main(stacks_dir)
        return pulumi.Output.all(**result).apply(outputs.update)

    go()
    mocks.roles = {r["RoleName"]: r for r in all_roles(iam)}  # type: ignore[attr-defined]
    return mocks, outputs


@pytest.fixture
def moto_account(monkeypatch, token):
    monkeypatch.setenv("MOTO_ACCOUNT_ID", ACCOUNT)


def test_declares_provider_roles_and_variables_for_a_realistic_group(shop, tmp_path, moto_account):
    mocks, outputs = run(tmp_path, stack_config(shop))
    [provider] = mocks.by_type(PROVIDER)
    assert provider.inputs["url"] == "https://gitlab.example.com"
    assert provider.inputs["clientIdLists"] == ["https://gitlab.example.com"]
    assert "thumbprintLists" not in provider.inputs

    roles = {r.inputs["name"]: r for r in mocks.by_type(ROLE)}
    assert len(roles) == 29 and outputs["counts"]["roles"] == 29
    cart = roles["gitlab-shop-cart"]
    assert cart.name == "project-101-role"
    assert cart.inputs["path"] == "/" and cart.inputs["maxSessionDuration"] == 3600
    assert cart.inputs["tags"] == {"gitlab-project-id": "101", "gitlab-project-path": "shop/cart",
                                   "fleet-stack": "prod", "managed-by": "gitlab-aws-oidc-fleet"}
    assert "gitlab-shop-api-gateway_105" in roles and "gitlab-shop-web-ui_107" in roles
    assert all(len(name) <= 64 for name in roles)

    # the trust policy stored in IAM (moto) admits the project's own tokens only
    stored = mocks.roles["gitlab-shop-cart"]["AssumeRolePolicyDocument"]
    claims = dict(account=ACCOUNT, issuer_host="gitlab.example.com", aud="https://gitlab.example.com", project_id=101)
    assert token_allowed(stored, path="shop/cart", ref_type="branch", ref="main", **claims)
    assert token_allowed(stored, path="shop/cart", ref_type="tag", ref="v1.0", **claims)
    assert not token_allowed(stored, path="shop/cart-v2", ref_type="branch", ref="main", **claims)
    assert not token_allowed(stored, path="shop/cart", ref_type="tag", ref="main", **claims)

    variables = {(v.inputs["project"], v.inputs["key"]): v.inputs for v in mocks.by_type(VARIABLE)}
    assert len(variables) == 2 * 29
    role_arn = variables[("101", "ROLE_ARN")]
    assert role_arn["value"] == f"arn:aws:iam::{ACCOUNT}:role/gitlab-shop-cart"
    assert role_arn["environmentScope"] == "production" and role_arn["protected"] is True
    assert role_arn["masked"] is False and "Managed by gitlab-aws-oidc-fleet" in role_arn["description"]
    assert variables[("101", "GITLAB_AWS_ACCOUNT_ID")]["value"] == ACCOUNT

    assert outputs["roles"]["shop/cart"] == f"arn:aws:iam::{ACCOUNT}:role/gitlab-shop-cart"
    assert {s["path"]: s["reason"] for s in outputs["skipped"]} == {
        "shop/legacy-billing": "archived", "shop/notifications": "archived", "shop/old-reports": "pending-deletion",
        "shop/sandbox/experiment-1": "excluded", "shop/sandbox/experiment-2": "excluded"}


def test_program_and_offline_plan_declare_the_same(shop, tmp_path, moto_account, capsys):
    config = stack_config(shop, role={"path": "/ci/", "maxSessionDuration": 7200,
                                      "permissionsBoundary": f"arn:aws:iam::{ACCOUNT}:policy/ci-boundary"})
    mocks, outputs = run(tmp_path, config)
    assert cli_main(["plan", "--stack", "prod", "--stacks-dir", str(tmp_path / "stacks"), "--format", "json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    declared = {r.inputs["name"]: r.inputs for r in mocks.by_type(ROLE)}
    assert set(declared) == {p["role_name"] for p in plan["projects"]}
    for p in plan["projects"]:
        role = declared[p["role_name"]]
        assert json.loads(role["assumeRolePolicy"]) == p["trust_policy"]
        assert role["description"] == p["description"] and role["tags"] == p["tags"]
        assert (role["path"], role["maxSessionDuration"], role["permissionsBoundary"]) == (
            "/ci/", 7200, f"arn:aws:iam::{ACCOUNT}:policy/ci-boundary")
        assert p["role_arn"] == f"arn:aws:iam::{ACCOUNT}:role/ci/{p['role_name']}" == outputs["roles"][p["path"]]
    policies = {(r.inputs["role"], r.inputs["name"]): json.loads(r.inputs["policy"])
                for r in mocks.by_type("aws:iam/rolePolicy:RolePolicy")}
    assert policies == {(p["role_name"], x["name"]): x["document"] for p in plan["projects"] for x in p["policies"]}
    fields = ("value", "environmentScope", "protected", "masked", "description")
    variables = {(v.inputs["project"], v.inputs["key"]): tuple(v.inputs[f] for f in fields) for v in mocks.by_type(VARIABLE)}
    assert variables == {(str(p["id"]), v["key"]): (v["value"], v["environment_scope"], v["protected"], v["masked"],
                                                    v["description"]) for p in plan["projects"] for v in p["variables"]}
    assert outputs["roleNames"] == {str(p["id"]): p["role_name"] for p in plan["projects"]}


def test_plan_and_up_read_one_stack_file_alike(tmp_path, moto_account):
    """`plan` reads the YAML file, `pulumi up` gets Pulumi's strings: both go through one decoder."""
    from fleet.stacks import read_stack, stack_config as file_config
    stacks = tmp_path / "stacks"
    stacks.mkdir()
    (stacks / "Pulumi.s.yaml").write_text(
        'config:\n  aws:region: eu-west-1\n  fleet:accountId: 111111111111\n  fleet:gitlab:\n'
        '    url: HTTPS://GitLab.Example.com/\n    group: shop\n    timeout: 12.5\n    exclude: ["shop/x/**"]\n'
        '  fleet:role:\n    maxSessionDuration: 7200.0\n  fleet:variables:\n    protected: true\n'
        '    environmentScope: "production"\n')
    stack = read_stack(stacks, "s")
    mocks = FleetMocks(iam=None, account_id=ACCOUNT)
    pulumi.runtime.set_mocks(mocks, project="gitlab-aws-oidc-fleet", stack="s", preview=False)
    pulumi.runtime.set_all_config(dict(stack.config))
    seen = []
    pulumi.runtime.test(lambda: seen.append(program.config_from_pulumi()) or pulumi.Output.from_input(1))()
    assert seen == [file_config(stack)]
    assert seen[0].gitlab.url == "https://gitlab.example.com" and seen[0].role.max_session_duration == 7200


def test_adopted_provider_boundary_and_role_settings(shop, tmp_path, moto_account):
    adopted = f"arn:aws:iam::{ACCOUNT}:oidc-provider/gitlab.example.com"
    config = stack_config(shop, oidc={"providerArn": adopted, "audience": "sts.amazonaws.com"},
                          role={"path": "/ci/", "maxSessionDuration": 7200,
                                "permissionsBoundary": f"arn:aws:iam::{ACCOUNT}:policy/ci-boundary"})
    mocks, outputs = run(tmp_path, config, existing_provider=("https://gitlab.example.com", ["sts.amazonaws.com"]))
    assert mocks.by_type(PROVIDER) == []
    role = next(r for r in mocks.by_type(ROLE) if r.inputs["name"] == "gitlab-shop-cart")
    assert role.inputs["path"] == "/ci/" and role.inputs["maxSessionDuration"] == 7200
    assert role.inputs["permissionsBoundary"] == f"arn:aws:iam::{ACCOUNT}:policy/ci-boundary"
    assert outputs["roles"]["shop/cart"] == f"arn:aws:iam::{ACCOUNT}:role/ci/gitlab-shop-cart"
    assert outputs["providerArn"] == adopted
    assert '"gitlab.example.com:aud": "sts.amazonaws.com"' in role.inputs["assumeRolePolicy"]


@pytest.mark.parametrize("existing, message", [
    (None, "cannot be read in account 111111111111"),
    (("https://gitlab.example.com", ["https://gitlab.example.com"]), 'does not list the audience "sts.amazonaws.com"'),
])
def test_adopted_provider_must_exist_and_accept_the_audience(shop, tmp_path, moto_account, existing, message):
    config = stack_config(shop, oidc={"providerArn": f"arn:aws:iam::{ACCOUNT}:oidc-provider/gitlab.example.com",
                                      "audience": "sts.amazonaws.com"})
    created: list[FleetMocks] = []
    with pytest.raises(pulumi.RunError, match=message):
        run(tmp_path, config, existing_provider=existing, created=created)
    assert created_nothing(created[0])


def test_wrong_account_credentials_create_nothing(shop, tmp_path, moto_account):
    created: list[FleetMocks] = []
    with pytest.raises(pulumi.RunError, match="AWS credentials are for account 999999999999"):
        run(tmp_path, stack_config(shop), caller="999999999999", created=created)
    assert created_nothing(created[0])


def test_invalid_config_creates_nothing_and_names_the_key(shop, tmp_path, moto_account):
    config = stack_config(shop, trust={"refs": ["branch:main", "brnch:dev"]}, role={"maxSessionDuration": 60})
    created: list[FleetMocks] = []
    with pytest.raises(pulumi.RunError) as info:
        run(tmp_path, config, created=created)
    assert created_nothing(created[0])
    assert 'edit stacks/Pulumi.prod.yaml: fleet:trust.refs[1]: "brnch:dev" is not allowed; did you mean "branch:dev"?' in str(info.value)
    assert "edit stacks/Pulumi.prod.yaml: fleet:role.maxSessionDuration: 60 is not allowed" in str(info.value)


def test_misspelt_key_is_refused_like_the_offline_plan(shop, tmp_path, moto_account):
    config = stack_config(shop)
    config["fleet:acountId"] = ACCOUNT
    with pytest.raises(pulumi.RunError) as info:
        run(tmp_path, config)
    assert 'fleet:acountId: unknown key (set to "111111111111"); did you mean fleet:accountId?' in str(info.value)
    assert "fleet:accountId: missing" not in str(info.value)


def test_clash_check_uses_the_running_config_not_a_file_of_its_own(shop, tmp_path, moto_account):
    config = stack_config(shop)
    (tmp_path / "stacks").mkdir()
    other = {**config, "fleet:variables": {"environmentScope": "review/*"}}
    (tmp_path / "stacks" / "Pulumi.other.yaml").write_text(yaml.safe_dump({"config": other}))
    _, outputs = run(tmp_path, config, write_stack_file=False)  # config from Pulumi only, e.g. ESC
    assert outputs["counts"]["roles"] == 29
    clashing = {**config, "fleet:variables": {"environmentScope": "production"}}
    (tmp_path / "stacks" / "Pulumi.other.yaml").write_text(yaml.safe_dump({"config": clashing}))
    created: list[FleetMocks] = []
    with pytest.raises(pulumi.RunError, match=r"stack other \(group shop and its subgroups\) could also take shop/cart, "):
        run(tmp_path, config, write_stack_file=False, created=created)
    assert created_nothing(created[0])


def test_discovery_failure_creates_nothing(shop, tmp_path, moto_account):
    shop.tokens = {"secret"}
    created: list[FleetMocks] = []
    with pytest.raises(pulumi.RunError, match="rejected the token"):
        run(tmp_path, stack_config(shop), created=created)
    assert created_nothing(created[0])


def library_folder(tmp_path: Path) -> None:
    """A stack library folder (`policies/` beside `stacks/`) with one entry per project and one AWS managed one."""
    folder = tmp_path / "policies"
    folder.mkdir(exist_ok=True)
    (folder / "own-prefix.yaml").write_text(yaml.safe_dump({"description": "The project's prefix.", "document": {
        "Version": "2012-10-17", "Statement": [{"Sid": "Own", "Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject"],
                                                "Resource": "arn:${partition}:s3:::artifacts-${account_id}/${project_path}/*"}]}}))
    (folder / "read-only.yaml").write_text(yaml.safe_dump({"description": "AWS's read-only policy.",
                                                           "arn": "arn:aws:iam::aws:policy/ReadOnlyAccess"}))


def test_policies_one_shared_managed_policy_inline_per_project_and_exclusive(shop, tmp_path, moto_account, monkeypatch):
    monkeypatch.setenv("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")  # AWS managed policies exist, as in a real account
    library_folder(tmp_path)
    config = stack_config(shop)
    config["fleet:policies"] = {"libraries": ["policies"], "default": ["caller-identity"], "allowPrivileged": ["read-only"],
                                "rules": [{"match": {"paths": ["shop/web/**"]}, "attach": ["own-prefix", "read-only"]}]}
    with mock_aws():
        iam = iam_client()
        mocks, outputs = run(tmp_path, config, iam=iam)
        storefront = iam.get_role_policy(RoleName="gitlab-shop-web-storefront", PolicyName="own-prefix")["PolicyDocument"]
        attached = {a["PolicyName"] for a in iam.list_attached_role_policies(RoleName="gitlab-shop-web-storefront")["AttachedPolicies"]}
    [shared] = mocks.by_type("aws:iam/policy:Policy")  # one for the fleet, not one per role
    assert shared.inputs["name"] == "fleet-prod.caller-identity" and shared.inputs["path"] == "/gitlab-aws-oidc-fleet/"
    roles = mocks.by_type("aws:iam/role:Role")
    web = [r for r in roles if r.inputs["tags"]["gitlab-project-path"].startswith("shop/web/")]
    attachments = mocks.by_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")
    assert len(attachments) == len(roles) + len(web)
    inline = mocks.by_type("aws:iam/rolePolicy:RolePolicy")
    assert sorted(r.inputs["role"] for r in inline) == sorted(r.inputs["name"] for r in web)
    assert storefront["Statement"][0]["Resource"] == f"arn:aws:s3:::artifacts-{ACCOUNT}/shop/web/storefront/*"
    assert attached == {"fleet-prod.caller-identity", "ReadOnlyAccess"}
    exclusive = {r.inputs["roleName"]: r.inputs.get("policyArns", []) for r in
                 mocks.by_type("aws:iam/rolePolicyAttachmentsExclusive:RolePolicyAttachmentsExclusive")}
    assert len(exclusive) == len(roles) and sorted(exclusive["gitlab-shop-web-storefront"]) == sorted(
        [shared_arn := f"arn:aws:iam::{ACCOUNT}:policy/gitlab-aws-oidc-fleet/fleet-prod.caller-identity",
         "arn:aws:iam::aws:policy/ReadOnlyAccess"])
    assert exclusive["gitlab-shop-cart"] == [shared_arn]
    names = {r.inputs["roleName"]: r.inputs.get("policyNames", []) for r in
             mocks.by_type("aws:iam/rolePoliciesExclusive:RolePoliciesExclusive")}
    assert names["gitlab-shop-web-storefront"] == ["own-prefix"] and names["gitlab-shop-cart"] == []
    assert outputs["policies"]["122"]["attached"] == exclusive["gitlab-shop-web-storefront"]
    assert set(outputs["policies"]["122"]["inline"]) == {"own-prefix"}


def test_policies_added_by_hand_are_removed_on_the_next_up(shop, tmp_path, moto_account, monkeypatch):
    monkeypatch.setenv("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")
    library_folder(tmp_path)
    config = stack_config(shop)
    config["fleet:policies"] = {"libraries": ["policies"], "rules": [{"match": {"paths": ["shop/cart"]}, "attach": ["own-prefix"]}]}
    with mock_aws():
        iam = iam_client()
        first, outputs = run(tmp_path, config, iam=iam)
        held = {r.name: r.inputs["name"] for r in first.by_type("aws:iam/role:Role")}
        iam.put_role_policy(RoleName="gitlab-shop-cart", PolicyName="by-hand", PolicyDocument=json.dumps({
            "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))
        iam.attach_role_policy(RoleName="gitlab-shop-cart", PolicyArn="arn:aws:iam::aws:policy/AdministratorAccess")
        again = config
        run(tmp_path, again, iam=iam, held_roles=held, previous_outputs=outputs)
        inline = iam.list_role_policies(RoleName="gitlab-shop-cart")["PolicyNames"]
        attached = iam.list_attached_role_policies(RoleName="gitlab-shop-cart")["AttachedPolicies"]
    assert inline == ["own-prefix"] and attached == []


def test_a_token_from_the_environment_is_never_written_to_the_state(shop, tmp_path, moto_account, monkeypatch):
    """The provider's inputs go to the stack's state (readable with the passphrase): GITLAB_TOKEN stays out of them,
    the provider reads the variable itself."""
    monkeypatch.setenv("GITLAB_TOKEN", "glpat-deployer-api-token")
    shop.tokens = {"glpat-deployer-api-token"}
    mocks, _ = run(tmp_path, stack_config(shop))
    [provider] = mocks.by_type("pulumi:providers:gitlab")
    assert "token" not in provider.inputs and "glpat-deployer-api-token" not in json.dumps(provider.inputs, default=str)
    assert provider.inputs["baseUrl"] == f"{shop.url}/api/v4/"


def test_listing_and_writing_variables_use_one_token(shop, tmp_path, moto_account, monkeypatch):
    monkeypatch.delenv("GITLAB_TOKEN")
    shop.tokens = {"the-secret"}
    config = {**stack_config(shop), "gitlab:token": "the-secret"}  # `pulumi config set --secret gitlab:token`
    mocks, _ = run(tmp_path, config)
    [provider] = mocks.by_type("pulumi:providers:gitlab")
    secret = provider.inputs["token"]
    assert secret["value"] == "the-secret" and secret[pulumi.runtime.rpc._special_sig_key] == pulumi.runtime.rpc._special_secret_sig
    assert provider.inputs["baseUrl"] == f"{shop.url}/api/v4/"
    monkeypatch.setenv("GITLAB_TOKEN", "another")
    requests_before = len(shop.requests)
    created: list[FleetMocks] = []
    with pytest.raises(pulumi.RunError, match="GITLAB_TOKEN and the stack secret gitlab:token are both set and differ"):
        run(tmp_path, config, created=created)
    assert created_nothing(created[0]) and len(shop.requests) == requests_before


def test_no_token_no_request(shop, tmp_path, moto_account, monkeypatch):
    monkeypatch.delenv("GITLAB_TOKEN")
    created: list[FleetMocks] = []
    with pytest.raises(pulumi.RunError, match="no GitLab token: set GITLAB_TOKEN or the stack secret gitlab:token"):
        run(tmp_path, stack_config(shop), created=created)
    assert created_nothing(created[0]) and shop.requests == []


def test_names_already_deployed_win_over_the_rule(shop, tmp_path, moto_account, monkeypatch):
    monkeypatch.setenv("FLEET_GUARD_MAX_DELETES", "1")  # 999's role goes: allowed, as by `python -m fleet up --max-deletes 1`
    # history: 105 (shop/api-gateway) got the plain name before 104 moved in; 101 is gone, its name reserved
    previous = {"roleNames": {"105": "gitlab-shop-api-gateway", "104": "gitlab-shop-api-gateway_104",
                              "107": "gitlab-shop-web-ui_107", "999": "gitlab-shop-web-ui"}}
    _, outputs = run(tmp_path, stack_config(shop), previous_outputs=previous)
    names = outputs["roleNames"]
    assert names["105"] == "gitlab-shop-api-gateway" and names["104"] == "gitlab-shop-api-gateway_104"
    assert names["107"] == "gitlab-shop-web-ui_107" and names["106"] == "gitlab-shop-web-ui_106"
    assert names["101"] == "gitlab-shop-cart"  # everyone else: the helper's name


def test_names_kept_in_a_secret_output_are_read_too(shop, tmp_path, moto_account):
    previous = {"roleNames": {"105": "gitlab-shop-api-gateway", "104": "gitlab-shop-api-gateway_104"}}
    _, outputs = run(tmp_path, stack_config(shop), previous_outputs=previous, secret_outputs=["roleNames"])
    assert outputs["roleNames"]["105"] == "gitlab-shop-api-gateway"


def test_a_corrupt_role_names_output_is_refused(shop, tmp_path, moto_account):
    created: list[FleetMocks] = []
    with pytest.raises(pulumi.RunError, match=r'roleNames key "x" is not a project id'):
        run(tmp_path, stack_config(shop), previous_outputs={"roleNames": {"x": "gitlab-a"}}, created=created)
    assert created_nothing(created[0])


def shop_and_shop_web():
    from tests.gitlab_double import GitLabDouble, make_group, make_project
    from tests.sample_group import build_shop
    groups, projects = build_shop()
    groups.append(make_group(30, "shop-web"))
    projects.append(make_project(300, "shop-web/ui", groups))
    return GitLabDouble(groups=groups, projects=projects)


def test_two_stacks_in_one_account_never_plan_one_role_name(tmp_path, moto_account):
    """`shop/web-ui` (group shop) and `shop-web/ui` (group shop-web) both want gitlab-shop-web-ui."""
    with shop_and_shop_web() as double, mock_aws():
        iam = iam_client()
        _, outputs = run(tmp_path, stack_config(double), stack="shop", iam=iam)
        assert outputs["roleNames"]["106"] == "gitlab-shop-web-ui"
        other = stack_config(double, gitlab={"url": "https://gitlab.example.com", "apiUrl": double.url, "group": "shop-web"})
        created: list[FleetMocks] = []
        with pytest.raises(pulumi.RunError, match=r"role names already taken in account 111111111111 .*"
                                                  r"gitlab-shop-web-ui for shop-web/ui \(stack shop, project shop/web-ui\)"):
            run(tmp_path, other, stack="shopweb", iam=iam, created=created)
        assert created_nothing(created[0])


def test_a_hand_made_role_of_a_planned_name_is_refused_before_anything_is_created(shop, tmp_path, moto_account):
    with mock_aws():
        iam = iam_client()
        iam.create_role(RoleName="GitLab-Shop-Cart", AssumeRolePolicyDocument="{}")  # IAM compares names ignoring case
        created: list[FleetMocks] = []
        with pytest.raises(pulumi.RunError, match=r"gitlab-shop-cart for shop/cart \(not made by this program\)"):
            run(tmp_path, stack_config(shop), iam=iam, created=created)
        assert created_nothing(created[0])


def test_a_stack_deployed_before_role_names_were_recorded_keeps_its_names(shop, tmp_path, moto_account, monkeypatch):
    """Its last outputs hold only `roles` (path -> ARN): each role's project comes from its gitlab-project-id tag,
    and the name of a project no longer listed stays reserved while its role exists."""
    monkeypatch.setenv("FLEET_GUARD_MAX_DELETES", "1")  # 999's role goes (counted by the guard, see below)
    held = {"gitlab-shop-api-gateway": 105, "gitlab-shop-api-gateway_104": 104, "gitlab-shop-web-ui": 999}
    with mock_aws():
        iam = iam_client()
        for name, project in held.items():
            iam.create_role(RoleName=name, AssumeRolePolicyDocument="{}",
                            Tags=[{"Key": "gitlab-project-id", "Value": str(project)}, {"Key": "fleet-stack", "Value": "prod"}])
        previous = {"roles": {"shop/api-gateway": f"arn:aws:iam::{ACCOUNT}:role/gitlab-shop-api-gateway",
                              "shop/api_gateway": f"arn:aws:iam::{ACCOUNT}:role/gitlab-shop-api-gateway_104",
                              "shop/deleted": f"arn:aws:iam::{ACCOUNT}:role/gitlab-shop-web-ui"}}
        _, outputs = run(tmp_path, stack_config(shop), previous_outputs=previous, iam=iam,
                         held_roles={f"project-{project}-role": name for name, project in held.items()})
    names = outputs["roleNames"]
    assert names["105"] == "gitlab-shop-api-gateway" and names["104"] == "gitlab-shop-api-gateway_104"
    assert names["106"] == "gitlab-shop-web-ui_106"


def test_an_old_stack_whose_project_moved_and_whose_old_path_was_reused_never_fails_halfway(tmp_path, moto_account, monkeypatch):
    monkeypatch.setenv("FLEET_GUARD_MAX_DELETES", "1")  # 5's role is renamed (replaced): allowed for this run
    """Project 5 moved from shop/a to shop/b and 9 took shop/a; the old `roles` output says shop/a -> gitlab-shop-a.
    The role's tag says it is 5's: 9 does not get it (IAM would refuse a second role of that name mid-`up`)."""
    from tests.gitlab_double import GitLabDouble, make_group, make_project
    groups = [make_group(10, "shop")]
    with GitLabDouble(groups=groups, projects=[make_project(5, "shop/b", groups), make_project(9, "shop/a", groups)]) as double, \
            mock_aws():
        iam = iam_client()
        iam.create_role(RoleName="gitlab-shop-a", AssumeRolePolicyDocument="{}",
                        Tags=[{"Key": "gitlab-project-id", "Value": "5"}, {"Key": "fleet-stack", "Value": "prod"}])
        previous = {"roles": {"shop/a": f"arn:aws:iam::{ACCOUNT}:role/gitlab-shop-a"}}
        _, outputs = run(tmp_path, stack_config(double), previous_outputs=previous, iam=iam,
                         held_roles={"project-5-role": "gitlab-shop-a"})
    assert outputs["roleNames"] == {"5": "gitlab-shop-b", "9": "gitlab-shop-a_9"}


def test_the_mocks_see_every_role_not_only_iams_first_page(moto_account):
    """ListRoles answers 100 roles at a time: a name taken beyond the first page must still be refused."""
    from tests.pulumi_mocks import ServiceRefusal
    with mock_aws():
        iam = iam_client()
        for i in range(150):
            iam.create_role(RoleName=f"role-{i:03d}", AssumeRolePolicyDocument="{}")
        mocks = FleetMocks(iam=iam, account_id=ACCOUNT)
        with pytest.raises(ServiceRefusal, match="EntityAlreadyExists: Role with name ROLE-149 already exists"):
            mocks.new_resource(pulumi.runtime.MockResourceArgs(
                typ=ROLE, name="project-1-role", inputs={"name": "ROLE-149", "assumeRolePolicy": "{}"},
                provider="", resource_id=""))
        names = mocks.call(pulumi.runtime.MockCallArgs(token="aws:iam/getRoles:getRoles", args={}, provider=""))["names"]
        assert len(names) == 150


def test_pulumi_up_warns_loudly_when_no_project_gets_a_role(shop, tmp_path, moto_account, monkeypatch):
    warned: list[str] = []
    monkeypatch.setattr(pulumi.log, "warn", lambda message, *args, **kwargs: warned.append(message))
    config = stack_config(shop)
    config["fleet:gitlab"] = {**config["fleet:gitlab"], "exclude": ["shop/**"]}
    mocks, outputs = run(tmp_path, config)
    assert not mocks.by_type("aws:iam/role:Role")
    assert any(w.startswith("no roles planned for group shop: all ") for w in warned), warned


def test_roles_already_in_the_account_count_against_its_quota_before_anything_is_created(shop, tmp_path, moto_account):
    config = stack_config(shop)
    config["fleet:quotas"] = {"rolesPerAccount": 31}  # the stack plans 29 roles
    with mock_aws():
        iam = iam_client()
        for name in ("AWSServiceRoleForSSO", "hand-made", "another"):
            iam.create_role(RoleName=name, AssumeRolePolicyDocument="{}")
        created: list[FleetMocks] = []
        with pytest.raises(pulumi.RunError, match=r"holds 3 other roles, and this stack needs 29 at once .*: over fleet:quotas.rolesPerAccount \(31\)"):
            run(tmp_path, config, iam=iam, created=created)
        assert created_nothing(created[0])
        iam.delete_role(RoleName="another")
        run(tmp_path, config, iam=iam)  # 2 + 29 fits


def test_the_project_refreshes_before_every_up_so_hand_added_policies_are_seen():
    """The exclusive resources only notice policies added by hand after a refresh (pulumi/pulumi-aws#4766)."""
    project = yaml.safe_load((Path(__file__).resolve().parent.parent / "Pulumi.yaml").read_text())
    assert project["options"]["refresh"] == "always"


def test_up_reads_its_last_policies_and_refuses_a_swap_that_would_pass_the_quota_halfway(shop, tmp_path, moto_account):
    folder = tmp_path / "policies"
    folder.mkdir()
    for i in range(11):
        (folder / f"e{i}.yaml").write_text(yaml.safe_dump({"description": "Who.", "document": {"Version": "2012-10-17",
            "Statement": [{"Sid": f"S{i}", "Effect": "Allow", "Action": "sts:GetCallerIdentity", "Resource": "*"}]}}))
    config = stack_config(shop)
    config["fleet:policies"] = {"libraries": ["policies"], "default": [f"e{i}" for i in range(10)]}
    with mock_aws():
        iam = iam_client()
        first, outputs = run(tmp_path, config, iam=iam)
        held = {r.name: r.inputs["name"] for r in first.by_type("aws:iam/role:Role")}
        again = {**config, "fleet:policies": {"libraries": ["policies"], "default": [f"e{i}" for i in range(1, 11)]}}
        created: list[FleetMocks] = []
        with pytest.raises(pulumi.RunError, match="the change holds 11 managed policies at once"):
            run(tmp_path, again, iam=iam, held_roles=held, previous_outputs=outputs, created=created)
        assert created_nothing(created[0])


def test_roles_that_go_still_count_until_the_new_ones_exist():
    from types import SimpleNamespace

    from fleet.deployed import Deployed
    from fleet.errors import FleetError
    plan = SimpleNamespace(account_id=ACCOUNT, projects=[SimpleNamespace(role_name="b"), SimpleNamespace(role_name="c")])
    deployed = Deployed(names={1: "a", 2: "b"})
    with pytest.raises(FleetError, match=r"holds 0 other roles, and this stack needs 3 at once"):
        program.check_roles_fit_the_account(plan, deployed, ["a", "b"], 2)  # a goes only after c is created
    program.check_roles_fit_the_account(plan, deployed, ["a", "b"], 3)


def test_pulumi_up_refuses_a_bad_policy_selection_before_gitlab_is_asked(shop, tmp_path, moto_account):
    config = stack_config(shop)
    config["fleet:policies"] = {"default": ["s3-artefacts"]}
    created: list[FleetMocks] = []
    with pytest.raises(pulumi.RunError, match=r'"s3-artefacts" is not in the policy library \(did you mean s3-artifacts\?\)'):
        run(tmp_path, config, created=created)
    assert shop.requests == [] and created_nothing(created[0])


def _guarded(tmp_path, shop, previous, *, preview=False):
    """Run the program for `shop` on a stack whose outputs hold `previous`; under a preview the guard only reports."""
    import fleet.program as program_module
    if preview:
        original = program_module.pulumi.runtime.is_dry_run
        program_module.pulumi.runtime.is_dry_run = lambda: True  # type: ignore[assignment]
        try:
            return run(tmp_path, stack_config(shop), previous_outputs=previous)
        finally:
            program_module.pulumi.runtime.is_dry_run = original  # type: ignore[assignment]
    return run(tmp_path, stack_config(shop), previous_outputs=previous)


# Twelve roles held by projects the listing no longer has, next to the group's own: more than fleet:guard allows.
GONE = {str(900 + i): f"gitlab-shop-gone-{i}" for i in range(12)}


def test_up_by_hand_refuses_to_delete_more_roles_than_the_guard_allows(shop, tmp_path, moto_account, monkeypatch):
    monkeypatch.delenv("FLEET_GUARD_MAX_DELETES", raising=False)
    with pytest.raises(pulumi.RunError) as err:
        _guarded(tmp_path, shop, {"roleNames": GONE})
    message = str(err.value)
    assert "would delete or replace 12 roles" in message and "fleet:guard.maxDeletes 5" in message
    assert "delete gitlab-shop-gone-0 (900)" in message and "Nothing was changed" in message


def test_the_command_lines_allowance_lets_up_delete_them(shop, tmp_path, moto_account, monkeypatch):
    monkeypatch.setenv("FLEET_GUARD_MAX_DELETES", "12")
    _, outputs = _guarded(tmp_path, shop, {"roleNames": GONE})
    assert not set(GONE) & set(outputs["roleNames"])
    monkeypatch.setenv("FLEET_GUARD_MAX_DELETES", "11")
    with pytest.raises(pulumi.RunError, match="12 roles, more than allowed [(]--max-deletes 11[)]"):
        _guarded(tmp_path, shop, {"roleNames": GONE})


def test_a_preview_is_never_refused_by_the_guard(shop, tmp_path, moto_account, monkeypatch):
    monkeypatch.delenv("FLEET_GUARD_MAX_DELETES", raising=False)
    _, outputs = _guarded(tmp_path, shop, {"roleNames": GONE}, preview=True)
    assert outputs["counts"]["roles"] == 29


def test_the_programs_guard_counts_a_legacy_stacks_lost_roles_and_a_new_role_path(shop, tmp_path, moto_account, monkeypatch):
    """`pulumi up` by hand: roles a legacy stack holds for projects the listing lost go, and a new fleet:role.path
    replaces every role; both count against fleet:guard."""
    monkeypatch.delenv("FLEET_GUARD_MAX_DELETES", raising=False)
    lost = {"roles": {f"shop/gone-{i}": f"arn:aws:iam::{ACCOUNT}:role/gitlab-shop-gone-{i}" for i in range(6)}}
    with mock_aws():
        iam = iam_client()
        for i in range(6):
            iam.create_role(RoleName=f"gitlab-shop-gone-{i}", AssumeRolePolicyDocument="{}",
                            Tags=[{"Key": "gitlab-project-id", "Value": str(900 + i)}, {"Key": "fleet-stack", "Value": "prod"}])
        with pytest.raises(pulumi.RunError, match=r"delete or replace 6 roles.*delete gitlab-shop-gone-0 \(a project the listing"):
            run(tmp_path, stack_config(shop), previous_outputs=lost, iam=iam,
                held_roles={f"project-{900 + i}-role": f"gitlab-shop-gone-{i}" for i in range(6)})
    moved = {"roleNames": {"101": "gitlab-shop-cart"}, "roles": {"shop/cart": f"arn:aws:iam::{ACCOUNT}:role/ci/gitlab-shop-cart"}}
    with pytest.raises(pulumi.RunError, match=r"delete or replace 1 roles.*replace gitlab-shop-cart \(101\)"):
        run(tmp_path, stack_config(shop), previous_outputs=moved)


# --- fleet:trust.subject id: the sub claim components, set by the stack, and the trust that follows them ---------

DYNAMIC_PREFIX = "pulumi-python:dynamic"
DEFAULT_SUB = ["project_path", "ref_type", "ref"]
BY_ID_SUB = ["project_id", "ref_type", "ref"]


def sub_claim_group(version="18.7.0"):
    from tests.gitlab_double import GitLabDouble, make_group, make_project
    groups = [make_group(10, "shop")]
    projects = [make_project(5, "shop/a", groups, sub_claim_components=DEFAULT_SUB),
                make_project(6, "shop/b", groups, sub_claim_components=DEFAULT_SUB)]
    return GitLabDouble(groups=groups, projects=projects, version=version)


def admitted(mocks, role, sub, project_id):
    from tests.iam_eval import allows
    policy = mocks.roles[role]["AssumeRolePolicyDocument"]
    return allows(policy, federated=f"arn:aws:iam::{ACCOUNT}:oidc-provider/gitlab.example.com",
                  action="sts:AssumeRoleWithWebIdentity",
                  context={"gitlab.example.com:sub": sub, "gitlab.example.com:aud": "https://gitlab.example.com"})


def held_state(mocks, outputs, double):
    """What the stack's state holds after an `up`: its roles and its sub-claim resources (with their outputs)."""
    roles = {r.name: r.inputs["name"] for r in mocks.by_type(ROLE)}
    claims = {f"project-{pid}-sub-claim": {"projectId": int(pid), "apiUrl": double.url, **held}
              for pid, held in outputs["subClaims"].items()}
    return roles, claims


def test_subject_id_sets_each_projects_components_and_drops_the_path_form_on_the_next_run(tmp_path, moto_account,
                                                                                         monkeypatch):
    monkeypatch.setenv("FLEET_GUARD_MAX_DELETES", "1")  # 5 moves: its role is renamed (replaced) in the second run
    with sub_claim_group() as double, mock_aws():
        config = stack_config(double, trust={"refs": ["branch:main"], "subject": "id"})
        iam = iam_client()
        first, outputs = run(tmp_path, config, iam=iam)
        claims = [r for r in first.resources if r.typ.startswith(DYNAMIC_PREFIX)]
        assert sorted((r.name, r.inputs["projectId"], r.inputs["components"]) for r in claims) == [
            ("project-5-sub-claim", 5, BY_ID_SUB), ("project-6-sub-claim", 6, BY_ID_SUB)]
        assert all("token" not in key.casefold() for r in claims for key in r.inputs)
        assert [p["ci_id_token_sub_claim_components"] for p in double.projects] == [BY_ID_SUB, BY_ID_SUB]
        assert outputs["subClaims"]["5"] == {"components": BY_ID_SUB, "original": DEFAULT_SUB}
        # this run: both forms (jobs that started before the change carry the path form)
        assert admitted(first, "gitlab-shop-a", "project_path:shop/a:ref_type:branch:ref:main", 5)
        assert admitted(first, "gitlab-shop-a", "project_id:5:ref_type:branch:ref:main", 5)

        # project 5 moves to shop/a-moved, and a new project 9 takes the path shop/a
        from tests.gitlab_double import make_project
        double.projects[0]["path_with_namespace"] = "shop/a-moved"
        double.projects.append(make_project(9, "shop/a", double.groups, sub_claim_components=DEFAULT_SUB))
        roles, held = held_state(first, outputs, double)
        second_runs: list[FleetMocks] = []
        _, outputs = run(tmp_path, config, iam=iam, held_roles=roles, previous_outputs=outputs, created=second_runs,
                         held_sub_claims=held)
        second = second_runs[0]
        assert outputs["subClaims"]["5"]["original"] == DEFAULT_SUB  # still what it found first
        five, nine = outputs["roleNames"]["5"], outputs["roleNames"]["9"]
        assert admitted(second, five, "project_id:5:ref_type:branch:ref:main", 5)
        for form in ("project_path:shop/a:ref_type:branch:ref:main", "project_path:shop/a-moved:ref_type:branch:ref:main",
                     "project_id:9:ref_type:branch:ref:main"):
            assert not admitted(second, five, form, 5), form  # 9's tokens, in either form, and the old form
        assert admitted(second, nine, "project_id:9:ref_type:branch:ref:main", 9)
        assert not admitted(second, nine, "project_id:5:ref_type:branch:ref:main", 9)


def test_a_stack_switched_back_to_path_trusts_both_until_the_components_are_given_back(tmp_path, moto_account):
    from fleet.sub_claims import SubClaimProvider
    with sub_claim_group() as double, mock_aws():
        config = stack_config(double, trust={"refs": ["branch:main"], "subject": "id"})
        iam = iam_client()
        first, outputs = run(tmp_path, config, iam=iam)
        roles, held = held_state(first, outputs, double)
        back = {**config, "fleet:trust": {"refs": ["branch:main"]}}
        created: list[FleetMocks] = []
        _, after = run(tmp_path, back, iam=iam, held_roles=roles, previous_outputs=outputs, created=created,
                       held_sub_claims=held)
        assert not [r for r in created[0].resources if r.typ.startswith(DYNAMIC_PREFIX)] and after["subClaims"] == {}
        for sub in ("project_id:5:ref_type:branch:ref:main", "project_path:shop/a:ref_type:branch:ref:main"):
            assert admitted(created[0], "gitlab-shop-a", sub, 5)
        for name, state in held.items():  # the engine deletes the resources the program no longer declares
            SubClaimProvider().delete(str(state["projectId"]), state)
        assert [p["ci_id_token_sub_claim_components"] for p in double.projects] == [DEFAULT_SUB, DEFAULT_SUB]


def test_a_project_whose_components_are_hidden_when_the_stack_switches_back_still_trusts_its_tokens(
        tmp_path, moto_account, capsys):
    """The token lost Maintainer on shop/b: its tokens carry project_id until the restore, which cannot happen."""
    from fleet.sub_claims import SubClaimProvider
    with sub_claim_group() as double, mock_aws():
        config = stack_config(double, trust={"refs": ["branch:main"], "subject": "id"})
        iam = iam_client()
        first, outputs = run(tmp_path, config, iam=iam)
        roles, held = held_state(first, outputs, double)
        double.hidden_sub_claims = {6}
        created: list[FleetMocks] = []
        run(tmp_path, {**config, "fleet:trust": {"refs": ["branch:main"]}}, iam=iam, held_roles=roles,
            previous_outputs=outputs, created=created, held_sub_claims=held)
        for sub in ("project_id:6:ref_type:branch:ref:main", "project_path:shop/b:ref_type:branch:ref:main"):
            assert admitted(created[0], "gitlab-shop-b", sub, 6), sub
        for state in held.values():  # the engine deletes the resources: the one it cannot restore is let go
            SubClaimProvider().delete(str(state["projectId"]), state)
        assert [p["ci_id_token_sub_claim_components"] for p in double.projects] == [DEFAULT_SUB, BY_ID_SUB]
        assert "cannot restore ci_id_token_sub_claim_components on project 6: not Maintainer" in capsys.readouterr().err


def test_subject_id_on_an_old_instance_or_without_maintainer_creates_nothing(tmp_path, moto_account):
    with sub_claim_group(version="17.11.2") as double:
        config = stack_config(double, trust={"refs": ["branch:main"], "subject": "id"})
        created: list[FleetMocks] = []
        with pytest.raises(pulumi.RunError, match=r"fleet:trust.subject id needs GitLab 18.7 or later for a sub "
                                                  r"starting with project_id, but the instance runs 17.11.2"):
            run(tmp_path, config, created=created)
        assert created_nothing(created[0])
        double.version, double.hidden_sub_claims = "18.7.0", {6}
        with pytest.raises(pulumi.RunError, match=r"not Maintainer of 1 project\(s\): shop/b"):
            run(tmp_path, config, created=created)
        assert created_nothing(created[-1])
        assert all(c.method == "GET" for c in double.calls)


def test_a_corrupt_sub_claims_output_is_refused(shop, tmp_path, moto_account):
    created: list[FleetMocks] = []
    with pytest.raises(pulumi.RunError, match=r'subClaims entry "x" is not a project id with the components the stack '
                                              r'set and found before'):
        run(tmp_path, stack_config(shop), previous_outputs={"subClaims": {"x": {"original": ["project_path"]}}},
            created=created)
    assert created_nothing(created[0])


def test_a_new_only_run_records_the_targeted_projects_alone(shop, tmp_path, moto_account, monkeypatch):
    """Pulumi rewrites the stack's outputs in a targeted run: projects it did not target stay new, and the others keep
    what the last run recorded."""
    _, full = run(tmp_path, stack_config(shop))
    previous = {k: v for k, v in full.items()}
    previous["roleNames"] = {k: v for k, v in full["roleNames"].items() if k not in ("101", "102")}  # 101, 102: new
    previous["roles"] = {k: v for k, v in full["roles"].items() if k not in ("shop/cart", "shop/cart-v2")}
    previous["policies"] = {k: v for k, v in full["policies"].items() if k not in ("101", "102")}
    previous["counts"] = {"roles": 27}
    monkeypatch.setenv("FLEET_NEW_ONLY", "101")
    _, outputs = run(tmp_path, stack_config(shop), previous_outputs=previous)
    assert set(outputs["roleNames"]) == set(previous["roleNames"]) | {"101"}  # not 102: untargeted, still new
    assert "shop/cart" in outputs["roles"] and "shop/cart-v2" not in outputs["roles"]
    assert outputs["counts"] == {"roles": 27} and "101" in outputs["policies"] and "102" not in outputs["policies"]
    monkeypatch.setenv("FLEET_NEW_ONLY", "101;102")
    created: list[FleetMocks] = []
    with pytest.raises(Exception, match=r"FLEET_NEW_ONLY is \"101;102\": expected project ids separated by commas"):
        run(tmp_path, stack_config(shop), previous_outputs=previous, created=created)
    assert created_nothing(created[0])  # a malformed value stops the program before anything is declared
