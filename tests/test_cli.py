"""The command line: `plan` and `inventory`, as a user runs them."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from fleet.cli import main
from fleet.naming import helper_role_name
from tests.gitlab_double import GitLabDouble, make_group, make_project
from tests.iam_eval import token_allowed

ROOT = Path(__file__).resolve().parent.parent


def write_stack(stacks: Path, name: str, **fleet) -> Path:
    stacks.mkdir(exist_ok=True)
    config = {"aws:region": "eu-west-1", "fleet:accountId": "333333333333"}
    config.update({f"fleet:{k}": v for k, v in fleet.items()})
    path = stacks / f"Pulumi.{name}.yaml"
    path.write_text(yaml.safe_dump({"config": config}))
    return path


def unseen_group() -> GitLabDouble:
    """A group the sample does not have: look-alikes, collisions, long and mixed-case paths."""
    groups = [make_group(1, "acme"), make_group(2, "acme/Team-A", 1), make_group(3, "acme/team-a/deep", 2),
              make_group(4, "acme-corp"), make_group(5, "acmeish"), make_group(6, "acme/infra", 1)]
    groups[2]["full_path"] = "acme/Team-A/deep"
    long = "acme/Team-A/deep/" + "service-with-a-really-long-name-that-goes-on"
    p = lambda *a, **k: make_project(*a, groups, **k)  # noqa: E731
    projects = [
        p(500, "acme/cart"), p(501, "acme/cart-v2"), p(502, "acme/Team-A/Cart"), p(503, "acme/team_a-cart"),
        p(504, long + "-alpha"), p(505, long + "-beta"), p(506, "acme/infra/DNS", default_branch="trunk"),
        p(507, "acme/old", archived=True), p(508, "acme-corp/cart", shared_with=[groups[0]]),
        p(509, "acmeish/cart", shared_with=[groups[0]]), p(510, "acme/infra/dns-v2"), p(511, "acme/Team-A/deep/x.y"),
        p(512, "acme/doomed", pending_deletion=True), p(513, "acme/team-a-cart"),
    ]
    return GitLabDouble(groups=groups, projects=projects)


def run_cli(*args: str, token: str | None = "glpat-test") -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "GITLAB_TOKEN"}
    if token is not None:
        env["GITLAB_TOKEN"] = token
    return subprocess.run([sys.executable, "-m", "fleet", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)


def test_plan_json_on_an_unseen_group_is_right_unique_and_exclusive(tmp_path):
    stacks = tmp_path / "stacks"
    write_stack(stacks, "qa", gitlab={"url": "https://git.acme.test", "group": "acme", "includeShared": True},
                oidc={"audience": "sts.amazonaws.com"}, trust={"refs": ["branch:{default_branch}", "tag:v*"]},
                variables={"environmentScope": "qa"})
    with unseen_group() as double:
        double.projects = [p for p in double.projects if p["id"] != 509] + [
            make_project(509, "acmeish/cart", double.groups)]  # not shared with acme: outside, never planned
        double.projects[-1]["shared_with_groups"] = []
        result = run_cli("plan", "--stack", "qa", "--stacks-dir", str(stacks), "--api-url", double.url, "--format", "json")
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)
    assert plan["stack"] == "qa" and plan["account_id"] == "333333333333"
    assert plan["issuer"] == "https://git.acme.test" and plan["audience"] == "sts.amazonaws.com"
    assert plan["provider_arn"] == "arn:aws:iam::333333333333:oidc-provider/git.acme.test"
    projects = {p["path"]: p for p in plan["projects"]}
    assert set(projects) == {"acme/cart", "acme/cart-v2", "acme/Team-A/Cart", "acme/team_a-cart",
                             "acme/Team-A/deep/service-with-a-really-long-name-that-goes-on-alpha",
                             "acme/Team-A/deep/service-with-a-really-long-name-that-goes-on-beta",
                             "acme/infra/DNS", "acme/infra/dns-v2", "acme/Team-A/deep/x.y", "acme/team-a-cart",
                             "acme-corp/cart"}
    assert {s["path"]: s["reason"] for s in plan["skipped"]} == {
        "acme/old": "archived", "acme/doomed": "pending-deletion"}
    names = [p["role_name"] for p in plan["projects"]]
    assert len({n.casefold() for n in names}) == len(names) and all(len(n) <= 64 for n in names)
    # the lowest id of each colliding name keeps the helper's name
    assert projects["acme/Team-A/Cart"]["role_name"] == helper_role_name("acme/Team-A/Cart") == "gitlab-acme-team-a-cart"
    assert projects["acme/team_a-cart"]["role_name"] == "gitlab-acme-team-a-cart_503"
    assert projects["acme/team-a-cart"]["role_name"] == "gitlab-acme-team-a-cart_513"
    for p in plan["projects"]:
        assert p["role_arn"] == f"arn:aws:iam::333333333333:role/{p['role_name']}"
        managed = "Managed by gitlab-aws-oidc-fleet (stack qa); edits are overwritten."
        assert p["variables"] == [
            {"key": "GITLAB_AWS_ACCOUNT_ID", "value": "333333333333", "environment_scope": "qa", "protected": False,
             "masked": False, "description": managed},
            {"key": "ROLE_ARN", "value": p["role_arn"], "environment_scope": "qa", "protected": False,
             "masked": False, "description": managed}]

    def allowed(policy, path, ref_type="branch", ref="main", aud="sts.amazonaws.com"):
        return token_allowed(policy, account="333333333333", issuer_host="git.acme.test", path=path, project_id=1,
                             ref_type=ref_type, ref=ref, aud=aud)

    branches = {"acme/infra/DNS": "trunk"}
    for path, p in projects.items():
        policy = p["trust_policy"]
        branch = branches.get(path, "main")
        assert allowed(policy, path, ref=branch) and allowed(policy, path, "tag", "v1.2")
        assert not allowed(policy, path, "tag", branch), path  # a tag named like the branch
        assert not allowed(policy, path, "branch", "v1.2"), path  # a branch named like a tag
        assert not allowed(policy, path, ref=branch, aud="https://git.acme.test"), path
        assert not allowed(policy, path.swapcase(), ref=branch), path
        for other in projects:
            if other != path:
                for ref_type, ref in (("branch", "main"), ("branch", "trunk"), ("tag", "v1")):
                    assert not allowed(policy, other, ref_type, ref), (path, other)


def test_plan_table_is_readable_with_a_summary_line(tmp_path):
    result = run_cli("plan", "--stack", "demo", "--inventory", "samples/shop.inventory.json")
    assert result.returncode == 0, result.stderr
    assert "gitlab-shop-cart-v2" in result.stdout and "Skipped projects" in result.stdout
    summary = " ".join(result.stdout.split())
    assert "stack demo: 29 roles for shop in account 123456789012, 7 skipped (2 archived, 2 excluded, 1 pending-deletion, 2 shared-in)" in summary


def test_inventory_saves_the_unfiltered_listing_and_plans_the_same_offline(shop, tmp_path, capsys, token):
    stacks = tmp_path / "stacks"
    write_stack(stacks, "t", gitlab={"url": "https://gitlab.example.com", "group": "shop"})
    assert main(["inventory", "--stack", "t", "--stacks-dir", str(stacks), "--api-url", shop.url]) == 0
    saved = capsys.readouterr().out
    inventory = json.loads(saved)
    assert inventory["group"]["full_path"] == "shop" and len(inventory["projects"]) == 34
    assert any(p["archived"] for p in inventory["projects"])  # before the program's own filtering
    (tmp_path / "inv.json").write_text(saved)
    assert main(["plan", "--stack", "t", "--stacks-dir", str(stacks), "--format", "json", "--inventory", str(tmp_path / "inv.json")]) == 0
    offline = json.loads(capsys.readouterr().out)
    assert main(["plan", "--stack", "t", "--stacks-dir", str(stacks), "--format", "json", "--api-url", shop.url]) == 0
    assert json.loads(capsys.readouterr().out) == offline


def test_overrides_for_group_and_account(shop, tmp_path, capsys, token):
    stacks = tmp_path / "stacks"
    write_stack(stacks, "t", gitlab={"url": "https://gitlab.example.com", "group": "elsewhere"})
    assert main(["plan", "--stack", "t", "--stacks-dir", str(stacks), "--format", "json", "--api-url", shop.url,
                 "--group", "shop/web", "--account-id", "444444444444"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["account_id"] == "444444444444" and plan["group"] == "shop/web"
    assert {p["path"] for p in plan["projects"]} == {"shop/web/ui", "shop/web/storefront", "shop/web/admin",
                                                     "shop/web/search", "shop/web/design-system"}


def test_two_stacks_on_the_same_group_and_scope_are_refused(tmp_path, capsys):
    stacks = tmp_path / "stacks"
    write_stack(stacks, "a", gitlab={"url": "https://gitlab.example.com", "group": "shop"})
    write_stack(stacks, "b", gitlab={"url": "https://gitlab.example.com/", "group": "Shop"}, variables={"environmentScope": "*"})
    write_stack(stacks, "c", gitlab={"url": "https://gitlab.example.com", "group": "shop"}, variables={"environmentScope": "production"})
    inventory = str(ROOT / "samples/shop.inventory.json")
    assert main(["plan", "--stack", "a", "--stacks-dir", str(stacks), "--inventory", inventory]) == 1
    err = capsys.readouterr().err
    assert "stack a targets https://gitlab.example.com with environment scope \"*\"" in err
    assert "stack b (group shop and its subgroups) could also take shop/cart, shop/cart-v2" in err
    assert main(["plan", "--stack", "c", "--stacks-dir", str(stacks), "--inventory", inventory, "--format", "json"]) == 0
    # a --group override is a what-if on one stack, not a second stack file: it is not refused, and says so
    write_stack(stacks, "d", gitlab={"url": "https://gitlab.example.com", "group": "acme"})
    assert main(["plan", "--stack", "d", "--group", "shop", "--stacks-dir", str(stacks), "--inventory", inventory, "--format", "json"]) == 0
    assert "overlap check with other stacks is skipped" in capsys.readouterr().err


def test_user_errors_are_one_message_with_the_documented_exit_code(tmp_path, capsys):
    stacks = tmp_path / "stacks"
    write_stack(stacks, "bad", gitlab={"url": "https://gitlab.example.com", "group": "shop"}, role={"maxSessionDuration": 10})
    assert main(["plan", "--stack", "bad", "--stacks-dir", str(stacks), "--inventory", "x.json"]) == 78
    assert "Pulumi.bad.yaml: fleet:role.maxSessionDuration: 10 is not allowed" in capsys.readouterr().err
    assert main(["plan", "--stack", "nope", "--stacks-dir", str(stacks)]) == 64
    err = capsys.readouterr().err
    assert err.startswith("error: --stack: no stack file") and "Pulumi.nope.yaml" in err and "bad" in err
    write_stack(stacks, "good", gitlab={"url": "https://gitlab.example.com", "group": "acme"})
    assert main(["plan", "--stack", "good", "--stacks-dir", str(stacks), "--inventory", str(ROOT / "samples/shop.inventory.json")]) == 1
    assert "the listing is of group shop, but fleet:gitlab.group is acme" in capsys.readouterr().err
    (tmp_path / "broken.json").write_text('{"group": "acme", "projects": [{"id": "7"}]}')
    assert main(["plan", "--stack", "good", "--stacks-dir", str(stacks), "--inventory", str(tmp_path / "broken.json")]) == 1
    assert "error: --inventory: " in (err := capsys.readouterr().err) and 'project #0: field id is "7"; expected a positive integer' in err
    assert main(["plan", "--stack", "good", "--stacks-dir", str(stacks), "--inventory", str(ROOT / "samples/shop.inventory.json"),
                 "--group", "shop", "--deployed", str(tmp_path / "missing.json")]) == 1
    assert capsys.readouterr().err.startswith("error: --deployed: cannot read stack outputs")


@pytest.mark.parametrize("flag, value, expected", [
    ("--api-url", "https://host/gitlab?x=1", 'argument --api-url: "https://host/gitlab?x=1" is not allowed; expected no query'),
    ("--api-url", "gitlab.example.com", 'argument --api-url: "gitlab.example.com" is not allowed; expected a URL starting with https:// or http://'),
    ("--group", "acme/ bad", 'argument --group: "acme/ bad" is not allowed; expected the group\'s full path'),
    ("--account-id", "12345", 'argument --account-id: "12345" is not allowed; expected the AWS account id'),
    ("--format", "yaml", "argument --format: invalid choice: 'yaml'"),
    ("--stack", "../good", 'argument --stack: "../good" is not a stack name'),
])
def test_a_bad_flag_value_names_the_flag_not_the_stack_file(tmp_path, flag, value, expected):
    stacks = tmp_path / "stacks"
    write_stack(stacks, "good", gitlab={"url": "https://gitlab.example.com", "group": "shop"})
    result = run_cli("plan", "--stack", "good", "--stacks-dir", str(stacks), "--inventory", "samples/shop.inventory.json", flag, value)
    assert result.returncode == 64 and expected in result.stderr, result.stderr
    assert "Pulumi.good.yaml" not in result.stderr


def test_help_documents_the_exit_codes():
    help_text = run_cli("--help").stdout
    for code in ("0", "1", "2", "64", "78"):
        assert f"\n  {code} " in help_text, help_text


def test_help_lists_both_commands():
    result = run_cli("--help")
    assert result.returncode == 0 and "plan" in result.stdout and "inventory" in result.stdout
    result = run_cli("plan", "--help")
    for flag in ("--stack", "--api-url", "--group", "--account-id", "--inventory", "--format"):
        assert flag in result.stdout


@pytest.mark.parametrize("name", ["dev", "prod"])
def test_shipped_example_stacks_are_refused_until_edited_naming_the_file_and_each_value(name):
    result = run_cli("plan", "--stack", name, token=None)
    assert result.returncode == 78, result.stderr
    edits = [line for line in result.stderr.splitlines() if line.startswith(f"  - edit stacks/Pulumi.{name}.yaml: ")]
    keys = {line.split(": ")[1] for line in edits}
    assert {"fleet:accountId", "fleet:gitlab.url", "fleet:gitlab.group"} <= keys, result.stderr
    assert all("is the example's placeholder; set your own value" in line for line in edits)
    assert "listing projects" not in result.stderr  # refused before any request


def test_shipped_stacks_once_edited_are_valid_and_do_not_overlap(tmp_path):
    from fleet.inventory import parse_inventory
    from fleet.stacks import DEFAULT_STACKS_DIR, check_overlaps, config_target, list_stacks, other_targets, read_stack, stack_config
    assert {"dev", "prod", "demo"} <= set(list_stacks(DEFAULT_STACKS_DIR))
    filled = {"dev": "111111111111", "prod": "222222222222"}
    for name in ("dev", "prod", "demo"):
        text = (DEFAULT_STACKS_DIR / f"Pulumi.{name}.yaml").read_text()
        text = re.sub(r'"<[^"]*AWS account id[^"]*>"', f'"{filled.get(name, "")}"', text)
        text = text.replace('"<https://your-gitlab-instance>"', "https://gitlab.example.com")
        text = text.replace('"<your group\'s full path or id>"', "acme")
        text = re.sub(r'"<arn of your boundary policy, or null>"', "arn:aws:iam::222222222222:policy/gitlab-ci-boundary", text)
        assert "<" not in text.split("config:", 1)[1].replace("# e.g.", ""), text
        (tmp_path / f"Pulumi.{name}.yaml").write_text(text)
    configs = {name: stack_config(read_stack(tmp_path, name)) for name in ("dev", "prod", "demo")}
    for name, config in configs.items():
        group = parse_inventory({"group": {"id": None, "full_path": config.gitlab.group}, "projects": []})
        check_overlaps(config_target(name, config), other_targets(tmp_path, name), group, [])
    assert configs["dev"].account_id != configs["prod"].account_id
    assert configs["dev"].refs != configs["prod"].refs
    assert configs["dev"].variables.environment_scope != configs["prod"].variables.environment_scope


def test_sample_inventory_is_what_fleet_inventory_saves(tmp_path):
    from tests.sample_group import write_sample
    write_sample(str(tmp_path / "sample.json"))
    assert json.loads((tmp_path / "sample.json").read_text()) == json.loads((ROOT / "samples/shop.inventory.json").read_text())


def test_values_print_literally_in_the_table(tmp_path, capsys):
    stacks = tmp_path / "stacks"
    write_stack(stacks, "t", gitlab={"url": "https://gitlab.example.com", "group": "shop",
                                     "exclude": ["[red]shop/none[/]", "[/]", "shop/sandbox/**"]})
    inventory = str(ROOT / "samples/shop.inventory.json")
    assert main(["plan", "--stack", "t", "--stacks-dir", str(stacks), "--inventory", inventory]) == 0
    out = capsys.readouterr().out
    assert 'fleet:gitlab.exclude "[red]shop/none[/]" matches no project of shop' in " ".join(out.split())
    assert 'fleet:gitlab.exclude "[/]" matches no project' in " ".join(out.split())


@pytest.mark.parametrize("threshold", [10_000, 100], ids=["with-totals", "without-totals"])
def test_plan_of_a_group_that_changes_while_listed_misses_no_live_project(tmp_path, capsys, token, threshold):
    groups = [make_group(1, "big")]
    projects = [make_project(1000 + i, f"big/p{i}", groups) for i in range(260)]
    stacks = tmp_path / "stacks"
    write_stack(stacks, "t", gitlab={"url": "https://gitlab.example.com", "group": "big"})
    with GitLabDouble(groups=groups, projects=projects, totals_threshold=threshold) as double:
        double.on_listing = lambda n: n == 2 and double.projects.pop(5)  # a project of page 1 is deleted
        assert main(["plan", "--stack", "t", "--stacks-dir", str(stacks), "--api-url", double.url, "--format", "json"]) == 0
        live = {p["id"] for p in double.projects}
    plan = json.loads(capsys.readouterr().out)
    assert live <= {p["id"] for p in plan["projects"]}


def test_plan_with_deployed_names_renames_no_bystander_when_a_keeper_is_gone(tmp_path, capsys):
    stacks = tmp_path / "stacks"
    write_stack(stacks, "t", gitlab={"url": "https://gitlab.example.com", "group": "shop"})
    sample = json.loads((ROOT / "samples/shop.inventory.json").read_text())
    sample["projects"] = [p for p in sample["projects"] if p["id"] != 104]  # shop/api_gateway, the keeper, is deleted
    (tmp_path / "inv.json").write_text(json.dumps(sample))
    (tmp_path / "outputs.json").write_text(json.dumps({"roles": {}, "roleNames": {
        "104": "gitlab-shop-api-gateway", "105": "gitlab-shop-api-gateway_105"}}))
    args = ["plan", "--stack", "t", "--stacks-dir", str(stacks), "--inventory", str(tmp_path / "inv.json"), "--format", "json"]
    assert main([*args, "--deployed", str(tmp_path / "outputs.json")]) == 0
    names = {p["id"]: p["role_name"] for p in json.loads(capsys.readouterr().out)["projects"]}
    assert names[105] == "gitlab-shop-api-gateway_105"
    (tmp_path / "outputs.json").write_text(json.dumps({"counts": {}}))
    assert main([*args, "--deployed", str(tmp_path / "outputs.json")]) == 1
    assert "has neither a roleNames nor a roles output" in capsys.readouterr().err


def test_plan_reads_the_names_of_a_stack_deployed_before_role_names_were_recorded(tmp_path, capsys):
    """Such a stack has only its `roles` output (path -> ARN): the names come from there, matched by path."""
    stacks = tmp_path / "stacks"
    write_stack(stacks, "t", gitlab={"url": "https://gitlab.example.com", "group": "shop"})
    sample = json.loads((ROOT / "samples/shop.inventory.json").read_text())
    for p in sample["projects"]:
        if p["id"] == 104:
            p["archived"] = True  # the old rule chose among planned projects only: 105 got the plain name
    (tmp_path / "inv.json").write_text(json.dumps(sample))
    (tmp_path / "outputs.json").write_text(json.dumps({"roles": {
        "shop/api-gateway": "arn:aws:iam::333333333333:role/gitlab-shop-api-gateway",
        "shop/gone": "arn:aws:iam::333333333333:role/gitlab-shop-web-ui"}}))  # a project since deleted
    args = ["plan", "--stack", "t", "--stacks-dir", str(stacks), "--inventory", str(tmp_path / "inv.json"), "--format", "json"]
    assert main(args) == 0
    assert "note: role names assume the stack holds no roles yet" in capsys.readouterr().err
    assert main([*args, "--deployed", str(tmp_path / "outputs.json")]) == 0
    names = {p["id"]: p["role_name"] for p in json.loads(capsys.readouterr().out)["projects"]}
    assert names[105] == "gitlab-shop-api-gateway"  # kept, although 104 (archived) has the lower id
    assert names[106] == "gitlab-shop-web-ui_106"  # the deleted project's name stays reserved this run


def test_timeout_and_retries_flags_override_the_stack_and_name_the_flag(shop, tmp_path, capsys, token):
    stacks = tmp_path / "stacks"
    write_stack(stacks, "t", gitlab={"url": "https://gitlab.example.com", "group": "shop", "timeout": 30})
    from tests.gitlab_double import Fault
    shop.faults.append(Fault(count=100, delay=0.5))
    assert main(["inventory", "--stack", "t", "--stacks-dir", str(stacks), "--api-url", shop.url,
                 "--timeout", "0.1", "--max-retries", "0"]) == 1
    assert "did not answer within 0.1 s while listing the projects of 'shop'" in capsys.readouterr().err
    result = run_cli("plan", "--stack", "t", "--stacks-dir", str(stacks), "--timeout", "0")
    assert result.returncode == 64 and "argument --timeout: 0 is not allowed; expected more than 0" in result.stderr
    result = run_cli("plan", "--stack", "t", "--stacks-dir", str(stacks), "--max-retries", "٣")
    assert result.returncode == 64 and 'argument --max-retries: "\\u0663" is not allowed' in result.stderr


def test_an_old_stacks_suffixed_name_follows_its_project_through_a_rename(tmp_path, capsys):
    """A `roles` output (path -> ARN) from before roleNames: a suffixed name says its own project, whatever the path."""
    stacks = tmp_path / "stacks"
    write_stack(stacks, "t", gitlab={"url": "https://gitlab.example.com", "group": "shop"})
    (tmp_path / "outputs.json").write_text(json.dumps({"roles": {
        "shop/api-gateway-old": "arn:aws:iam::333333333333:role/gitlab-shop-api-gateway_105"}}))  # 105 was renamed since
    assert main(["plan", "--stack", "t", "--stacks-dir", str(stacks), "--inventory", str(ROOT / "samples/shop.inventory.json"),
                 "--format", "json", "--deployed", str(tmp_path / "outputs.json")]) == 0
    names = {p["id"]: p["role_name"] for p in json.loads(capsys.readouterr().out)["projects"]}
    assert names[105] == "gitlab-shop-api-gateway_105" and names[104] == "gitlab-shop-api-gateway"


def test_an_error_a_flag_causes_in_the_stack_names_the_flag(tmp_path, capsys):
    stacks = tmp_path / "stacks"
    write_stack(stacks, "s", gitlab={"url": "https://gitlab.example.com", "group": "shop"},
                oidc={"providerArn": "arn:aws:iam::333333333333:oidc-provider/gitlab.example.com"})
    args = ["plan", "--stack", "s", "--stacks-dir", str(stacks), "--inventory", str(ROOT / "samples/shop.inventory.json")]
    assert main([*args, "--account-id", "222222222222"]) == 78
    assert "must be in this stack's account 222222222222 (--account-id)" in capsys.readouterr().err
    assert main(args) == 0


def test_subcommand_help_documents_the_exit_codes_too():
    for command in ("plan", "inventory"):
        assert "\n  78  configuration" in run_cli(command, "--help").stdout


def test_a_plan_with_no_roles_is_loud_in_the_table_and_on_stderr_with_json(tmp_path):
    stacks = tmp_path / "stacks"
    write_stack(stacks, "s", gitlab={"url": "https://gitlab.example.com", "group": "shop", "exclude": ["shop/**"]})
    args = ("plan", "--stack", "s", "--stacks-dir", str(stacks), "--inventory", "samples/shop.inventory.json")
    table = run_cli(*args)
    assert table.returncode == 0 and " ".join(table.stdout.split()).count("no roles planned for group shop: all 36 listed") == 1
    as_json = run_cli(*args, "--format", "json")
    assert as_json.returncode == 0 and json.loads(as_json.stdout)["projects"] == []
    assert "warning: no roles planned for group shop: all 36 listed projects are skipped (" in as_json.stderr


def test_errors_from_the_inventory_and_stacks_dir_flags_name_them(tmp_path, capsys):
    stacks = tmp_path / "stacks"
    write_stack(stacks, "s", gitlab={"url": "https://gitlab.example.com", "group": "shop"})
    inventory = str(ROOT / "samples/shop.inventory.json")
    assert main(["plan", "--stack", "s", "--stacks-dir", str(stacks), "--inventory", inventory, "--group", "other"]) == 1
    assert "error: --inventory: the listing is of group shop, but --group is other" in capsys.readouterr().err
    assert main(["plan", "--stack", "s", "--stacks-dir", str(tmp_path / "nope"), "--inventory", inventory]) == 64
    assert capsys.readouterr().err.startswith("error: --stacks-dir: ")
    (stacks / "Pulumi.broken.yaml").write_text("config:\n  fleet:gitlab:\n    includeArchived: yes\n")
    assert main(["plan", "--stack", "s", "--stacks-dir", str(stacks), "--inventory", inventory]) == 78
    assert "cannot check stack broken for an overlap with stack s" in capsys.readouterr().err


def test_policies_list_shows_every_entry_and_how_it_is_attached():
    result = run_cli("policies", "list")
    assert result.returncode == 0, result.stderr
    rows = {line.split()[0]: line.split()[1] for line in result.stdout.splitlines() if line[:1].isalpha() and len(line.split()) > 1}
    assert rows["caller-identity"] == "managed" and rows["s3-artifacts"] == "inline"


def test_policies_show_renders_an_entry_for_a_project_and_says_how_it_attaches():
    result = run_cli("policies", "show", "s3-artifacts", "--project", "shop/cart", "--stack", "demo")
    assert result.returncode == 0, result.stderr
    text = json.dumps(json.loads(result.stdout))
    assert "shop/cart/*" in text and "123456789012" in text and "shop/cart-v2" not in text
    assert "s3-artifacts" in result.stderr and "an inline policy on each role" in result.stderr
    unknown = run_cli("policies", "show", "s3-artefacts", "--project", "shop/cart")
    assert unknown.returncode == 64 and 'NAME: "s3-artefacts" is not in the policy library (did you mean s3-artifacts?)' in unknown.stderr


def test_the_demo_plan_lists_each_projects_policies_and_the_shared_one(tmp_path):
    result = run_cli("plan", "--stack", "demo", "--inventory", "samples/shop.inventory.json", "--format", "json")
    plan = json.loads(result.stdout)
    [managed] = plan["managed_policies"]
    assert managed["name"] == "caller-identity" and managed["attached_to"] == len(plan["projects"])
    storefront = next(p for p in plan["projects"] if p["path"] == "shop/web/storefront")
    assert [(x["name"], x["attachment"], x["reason"]) for x in storefront["policies"]] == [
        ("caller-identity", "managed", "default"), ("s3-artifacts", "inline", "rule 1")]
    inventory = next(p for p in plan["projects"] if p["path"] == "shop/inventory")
    assert inventory["policies"][-1]["reason"] == "topic aws:ecr-push"
    assert any('shop/docs asks for "aws:secrets-read"' in w for w in plan["warnings"])


def test_policies_show_refuses_a_project_path_gitlab_would_not_have():
    result = run_cli("policies", "show", "s3-artifacts", "--project", "shop/*")
    assert result.returncode == 64 and 'error: --project: "shop/*" is not a GitLab project path' in result.stderr


def test_a_bad_policy_selection_is_refused_before_gitlab_is_asked(tmp_path):
    stacks = tmp_path / "stacks"
    write_stack(stacks, "s", gitlab={"url": "https://gitlab.example.com", "group": "shop"}, policies={"default": ["s3-artefacts"]})
    with GitLabDouble() as double:
        result = run_cli("plan", "--stack", "s", "--stacks-dir", str(stacks), "--api-url", double.url)
        assert double.requests == []
    assert result.returncode == 78, result.stderr
    assert 'fleet:policies.default: "s3-artefacts" is not in the policy library (did you mean s3-artifacts?)' in result.stderr


def test_plan_with_deployed_outputs_trusts_both_forms_while_a_stack_gives_its_sub_claims_back(tmp_path, capsys):
    """Back from fleet:trust.subject id to path: as under `pulumi up`, the set form and the one given back."""
    stacks = tmp_path / "stacks"
    write_stack(stacks, "t", gitlab={"url": "https://gitlab.example.com", "group": "shop"})
    sample = json.loads((ROOT / "samples/shop.inventory.json").read_text())
    sample["projects"] = [p for p in sample["projects"] if p["id"] == 101]
    by_id, default = ["project_id", "ref_type", "ref"], ["project_path", "ref_type", "ref"]
    sample["projects"][0]["ci_id_token_sub_claim_components"] = by_id
    (tmp_path / "inv.json").write_text(json.dumps(sample))
    (tmp_path / "outputs.json").write_text(json.dumps({"roleNames": {"101": "gitlab-shop-cart"},
                                                       "subClaims": {"101": {"components": by_id, "original": default}}}))
    args = ["plan", "--stack", "t", "--stacks-dir", str(stacks), "--inventory", str(tmp_path / "inv.json"), "--format", "json"]
    assert main([*args, "--deployed", str(tmp_path / "outputs.json")]) == 0
    [cart] = json.loads(capsys.readouterr().out)["projects"]
    assert cart["subject"] == {"components": default, "phase": "switching", "managed": False}
    (tmp_path / "outputs.json").write_text(json.dumps({"roleNames": {}, "subClaims": {"101": {"original": default}}}))
    assert main([*args, "--deployed", str(tmp_path / "outputs.json")]) == 1
    assert 'subClaims entry "101" is not a project id with the components the stack set and found' in capsys.readouterr().err
