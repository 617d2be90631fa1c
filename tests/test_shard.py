"""fleet:shard: one group split over several stacks by a stable hash of the project id."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pulumi
import pytest
import yaml
from moto import mock_aws

from fleet.cli import main as cli_main
from fleet.config import ShardConfig
from fleet.errors import ConfigError, FleetError, PlanError
from fleet.inventory import parse_inventory
from fleet.planner import build_plan
from fleet.render import render_json, summary
from fleet.selection import in_shard, select_projects, shard_of
from fleet.stacks import check_overlaps, config_target, other_targets, read_stack, stack_config
from tests.gitlab_double import make_group, make_project
from tests.helpers import make_config
from tests.sample_group import build_shop
from tests.test_policies import SHARED, library, numbered_shared_entries
from tests.test_program import ACCOUNT, PROVIDER, ROLE, iam_client, run
from tests.test_program import stack_config as program_stack_config

GROUPS = [make_group(1, "shop"), make_group(2, "shop/team", 1)]


def shop_listing():
    _groups, projects = build_shop()
    return parse_inventory({"group": {"id": 10, "full_path": "shop"}, "projects": projects})


def shard(count: int, index: int, **sections):
    return make_config(shard={"count": count, "index": index}, **sections)


def test_every_project_is_in_exactly_one_shard_for_any_count():
    for count in (1, 2, 3, 7, 16, 1000):
        for project_id in range(1, 3001):
            owners = [i for i in range(count) if in_shard(project_id, ShardConfig(count, i))]
            assert owners == [shard_of(project_id, count)]
    assert in_shard(5, None)  # unsharded: every project


def test_the_shard_is_the_documented_hash_of_the_id_alone():
    # sha256("42") starts 73475cb40a568e8d; as a big-endian number modulo 1000 that is 637.
    assert hashlib.sha256(b"42").hexdigest()[:16] == "73475cb40a568e8d"
    assert shard_of(42, 1000) == int("73475cb40a568e8d", 16) % 1000 == 637
    assert [shard_of(i, 1000) for i in (1, 101, 123456789)] == [913, 154, 435]
    # Shards are roughly even: no shard of 4 holds more than 30% of 4000 ids.
    sizes = [sum(shard_of(i, 4) == k for i in range(1, 4001)) for k in range(4)]
    assert max(sizes) < 1200 and sum(sizes) == 4000


def test_shards_plan_disjoint_projects_with_the_names_the_unsharded_plan_gives():
    inventory = shop_listing()
    whole = build_plan(make_config(), inventory, "prod")
    names = {p.id: p.role_name for p in whole.projects}
    # The sample's colliding paths land in different shards of 2, so the id suffixes are decided across shards.
    assert shard_of(104, 2) != shard_of(105, 2) and shard_of(106, 2) != shard_of(107, 2)
    for count in (2, 3, 5):
        plans = [build_plan(shard(count, i), inventory, f"prod-{i}") for i in range(count)]
        per_shard = [{p.id: p.role_name for p in plan.projects} for plan in plans]
        assert sum(len(n) for n in per_shard) == len(names)  # no project in two shards
        assert {k: v for n in per_shard for k, v in n.items()} == names
        all_names = [v.casefold() for n in per_shard for v in n.values()]
        assert len(all_names) == len(set(all_names))  # no two shards share a role name
        assert sorted(s.id for plan in plans for s in plan.skipped) == sorted(s.id for s in whole.skipped)
        for i, plan in enumerate(plans):
            assert all(shard_of(p.id, count) == i for p in (*plan.projects, *plan.skipped))
            counts = plan.counts()
            assert counts["projects"] == len(inventory.projects)
            assert counts["other_shards"] == len(inventory.projects) - counts["roles"] - counts["skipped"]
    assert names[105] == "gitlab-shop-api-gateway_105" and names[107] == "gitlab-shop-web-ui_107"


def test_adding_projects_never_moves_a_project_to_another_shard():
    def listing(count):
        return parse_inventory({"group": {"id": 1, "full_path": "shop"},
                                "projects": [make_project(i, f"shop/p{i}", GROUPS) for i in range(1, count + 1)]})
    before = [build_plan(shard(4, i), listing(40), f"s{i}") for i in range(4)]
    after = [build_plan(shard(4, i), listing(400), f"s{i}") for i in range(4)]
    for old, new in zip(before, after, strict=True):
        kept = {p.id: p.role_name for p in new.projects if p.id <= 40}
        assert kept == {p.id: p.role_name for p in old.projects}
        assert len(new.projects) > len(old.projects)


def test_the_plan_json_and_summary_say_the_shard_and_count_other_shards_instead_of_listing_them():
    inventory = shop_listing()
    plan = build_plan(shard(3, 1), inventory, "prod-1")
    out = io.StringIO()
    render_json(plan, out)
    data = yaml.safe_load(out.getvalue())
    assert data["shard"] == {"count": 3, "index": 1}
    others = [p.id for p in inventory.projects if shard_of(p.id, 3) != 1]
    assert data["counts"]["other_shards"] == len(others) > 0
    assert not {s["id"] for s in data["skipped"]} & set(others)
    assert summary(plan).startswith(f"stack prod-1 (shard 1 of 3, {len(others)} projects in other shards): ")
    whole = build_plan(make_config(), inventory, "prod")
    assert whole.to_json()["shard"] is None and "other_shards" not in whole.counts()
    assert "shard" not in summary(whole)


def test_exclude_warnings_are_decided_over_the_whole_listing():
    inventory = shop_listing()
    # shop/sandbox/experiment-1 and -2 (113, 114) lie in one or two shards; no shard warns that the glob matches nothing.
    for i in range(3):
        plan = build_plan(shard(3, i, gitlab={"exclude": ["shop/sandbox/**"]}), inventory, f"prod-{i}")
        assert not [w for w in plan.warnings if "matches no project" in w]


def test_shard_0_creates_the_provider_and_the_others_use_it():
    inventory = shop_listing()
    plans = [build_plan(shard(3, i), inventory, f"prod-{i}") for i in range(3)]
    assert [p.create_provider for p in plans] == [True, False, False]
    assert len({p.provider_arn for p in plans}) == 1
    assert " OIDC provider: use arn:aws:iam::111111111111:oidc-provider/gitlab.example.com" in summary(plans[1])
    arn = "arn:aws:iam::111111111111:oidc-provider/gitlab.example.com"
    adopted = [build_plan(shard(3, i, oidc={"providerArn": arn}), inventory, f"prod-{i}") for i in range(3)]
    assert [p.create_provider for p in adopted] == [False, False, False]


def test_shared_managed_policies_are_per_shard_and_counted_against_the_account_quota(tmp_path):
    inventory = shop_listing()
    lib = library(tmp_path, **{"shared-read": SHARED})
    plans = [build_plan(shard(2, i, policies={"default": ["shared-read"]}), inventory, f"prod-{i}", library=lib,
                        region="eu-west-1") for i in range(2)]
    assert [m.policy_name for p in plans for m in p.managed_policies] == ["fleet-prod-0.shared-read", "fleet-prod-1.shared-read"]
    entries = numbered_shared_entries(3)
    lib = library(tmp_path, **entries)
    config = shard(2, 0, policies={"default": list(entries)}, quotas={"customerManagedPoliciesPerAccount": 5})
    with pytest.raises(PlanError, match=r"this shard needs 3 customer managed policies, and its 2 shards \(fleet:shard.count\) "
                                        r"each hold their own copies, up to 6 in the account: over "
                                        r"fleet:quotas.customerManagedPoliciesPerAccount \(5\)"):
        build_plan(config, inventory, "prod-0", library=lib, region="eu-west-1")
    unsharded = make_config(policies={"default": list(entries)}, quotas={"customerManagedPoliciesPerAccount": 5})
    assert len(build_plan(unsharded, inventory, "prod", library=lib, region="eu-west-1").managed_policies) == 3


@pytest.mark.parametrize(("value", "message"), [
    ({"count": 4, "index": 4}, "fleet:shard.index: 4 is not allowed; expected a whole number from 0 to 3"),
    ({"count": 0, "index": 0}, "fleet:shard.count: 0 is not allowed; expected a whole number from 1 to 1000"),
    ({"count": 1001, "index": 0}, "fleet:shard.count: 1001 is not allowed"),
    ({"count": "2", "index": 0}, 'fleet:shard.count: "2" is not allowed'),
    ({"index": 1}, "fleet:shard.count: missing; expected a whole number from 1 to 1000"),
    ({"count": 2}, "fleet:shard.index: missing; expected a whole number from 0 to 1"),
    ({"count": 2, "idx": 1}, "fleet:shard.idx: unknown key .*did you mean fleet:shard.index?"),
    (3, "fleet:shard: 3 is not allowed; expected an object with keys count, index"),
])
def test_shard_config_is_validated_naming_the_key(value, message):
    with pytest.raises(ConfigError, match=message):
        make_config(shard=value)


def test_only_shard_0_may_adopt_the_provider():
    assert shard(2, 0, adopt={"provider": True}).adopt.provider
    with pytest.raises(ConfigError, match=r"fleet:adopt.provider: true is not allowed; shard 0 creates \(or adopts\) the "
                                          r"OIDC provider, and this stack is shard 1"):
        shard(2, 1, adopt={"provider": True})
    assert make_config().shard is None and shard(1, 0).shard is not None


def write(stacks: Path, name: str, shard_value=None, group="shop", scope="*") -> None:
    stacks.mkdir(exist_ok=True)
    config = {"fleet:accountId": "111111111111",
              "fleet:gitlab": {"url": "https://gitlab.example.com", "group": group},
              "fleet:variables": {"environmentScope": scope}}
    if shard_value is not None:
        config["fleet:shard"] = shard_value
    (stacks / f"Pulumi.{name}.yaml").write_text(yaml.safe_dump({"config": config}))


def check(stacks: Path, name: str, inventory) -> None:
    config = stack_config(read_stack(stacks, name))
    ids = [p.id for p in select_projects(config, inventory)[0] if in_shard(p.id, config.shard)]
    check_overlaps(config_target(name, config), other_targets(stacks, name), inventory, ids)


def test_the_clash_check_accepts_disjoint_shards_and_refuses_overlapping_ones(tmp_path):
    inventory = shop_listing()
    for i in range(3):
        write(tmp_path, f"prod-{i}", {"count": 3, "index": i})
    for i in range(3):
        check(tmp_path, f"prod-{i}", inventory)
    write(tmp_path, "dup", {"count": 3, "index": 1})
    with pytest.raises(FleetError, match=r"stack dup \(group shop and its subgroups, shard 1 of 3\) could also take "):
        check(tmp_path, "prod-1", inventory)
    (tmp_path / "Pulumi.dup.yaml").unlink()
    write(tmp_path, "halves", {"count": 2, "index": 0})
    with pytest.raises(FleetError, match=r"stack prod-0 is shard 0 of 3, and shards of another count overlap it: stack "
                                         r"halves \(group shop and its subgroups, shard 0 of 2\) shares the group's projects "
                                         r".*give every shard stack of the group the same fleet:shard.count"):
        check(tmp_path, "prod-0", inventory)
    (tmp_path / "Pulumi.halves.yaml").unlink()
    write(tmp_path, "whole", None)
    with pytest.raises(FleetError, match=r"stack whole \(group shop and its subgroups\) could also take "):
        check(tmp_path, "prod-2", inventory)
    with pytest.raises(FleetError, match=r"stack prod-0 \(group shop and its subgroups, shard 0 of 3\) could also take "):
        check(tmp_path, "whole", inventory)
    write(tmp_path, "whole", None, scope="staging")  # another scope: shards and an unsharded stack may coexist
    check(tmp_path, "prod-2", inventory)


def test_plan_of_a_shard_from_the_command_line(tmp_path, capsys):
    stacks = tmp_path / "stacks"
    write(stacks, "prod-1", {"count": 2, "index": 1})
    saved = tmp_path / "shop.json"
    saved.write_text(Path("samples/shop.inventory.json").read_text())
    code = cli_main(["plan", "--stack", "prod-1", "--stacks-dir", str(stacks), "--inventory", str(saved), "--format", "json"])
    data = yaml.safe_load(capsys.readouterr().out)
    assert code == 0 and data["shard"] == {"count": 2, "index": 1} and data["create_provider"] is False
    assert all(shard_of(p["id"], 2) == 1 for p in data["projects"])


def test_a_shard_other_than_0_refuses_to_run_before_shard_0_created_the_provider(shop, tmp_path, monkeypatch, token):
    monkeypatch.setenv("MOTO_ACCOUNT_ID", ACCOUNT)
    with mock_aws():
        iam = iam_client()
        with pytest.raises(pulumi.RunError, match=r"this stack is shard 1 of 2 \(fleet:shard\), which uses the OIDC provider "
                                                  r"shard 0 creates, and account 111111111111 holds no "
                                                  r"arn:aws:iam::111111111111:oidc-provider/gitlab.example.com yet: run shard 0 first\."):
            run(tmp_path, program_stack_config(shop, shard={"count": 2, "index": 1}), stack="prod-1", iam=iam)
        assert iam.list_roles()["Roles"] == []
        first, _ = run(tmp_path, program_stack_config(shop, shard={"count": 2, "index": 0}), stack="prod-0", iam=iam)
        second, _ = run(tmp_path, program_stack_config(shop, shard={"count": 2, "index": 1}), stack="prod-1", iam=iam)
        assert len(first.by_type(PROVIDER)) == 1 and second.by_type(PROVIDER) == []
        ids = [{int(r.inputs["tags"]["gitlab-project-id"]) for r in m.by_type(ROLE)} for m in (first, second)]
        assert ids[0] and ids[1] and not ids[0] & ids[1]
        assert all(shard_of(i, 2) == k for k in range(2) for i in ids[k])


def test_the_stack_that_created_the_provider_cannot_become_a_shard_other_than_0(shop, tmp_path, monkeypatch, token):
    """Unsharded `prod` created the provider; as shard 1 it would declare none, and up would delete it."""
    monkeypatch.setenv("MOTO_ACCOUNT_ID", ACCOUNT)
    with mock_aws():
        iam = iam_client()
        run(tmp_path, program_stack_config(shop), stack="prod", iam=iam)
        with pytest.raises(pulumi.RunError, match=r"stack prod created the OIDC provider .* as shard 1 of 2 \(fleet:shard\) "
                                                  r"it would delete it.*make this stack shard 0"):
            run(tmp_path, program_stack_config(shop, shard={"count": 2, "index": 1}), stack="prod", iam=iam)
        assert len(iam.list_open_id_connect_providers()["OpenIDConnectProviderList"]) == 1
