"""Stack files as `pulumi up` reads them, and stacks that could write the same projects' variables."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from fleet.cli import main
from fleet.errors import FleetError
from fleet.inventory import parse_inventory
from fleet.selection import select_projects
from fleet.stacks import check_overlaps, config_target, other_targets, read_stack, stack_config
from tests.gitlab_double import make_group, make_project

GROUPS = [make_group(1, "acme"), make_group(2, "acme/platform", 1), make_group(3, "acme/platform/tools", 2),
          make_group(4, "acme/web", 1), make_group(5, "partner"), make_group(6, "partner/sub", 5)]


def write(stacks: Path, name: str, group, scope="*", trust=None, **gitlab) -> None:
    stacks.mkdir(exist_ok=True)
    config = {"fleet:accountId": "111111111111",
              "fleet:gitlab": {"url": "https://gitlab.example.com", "group": group, **gitlab},
              "fleet:variables": {"environmentScope": scope}}
    if trust is not None:
        config["fleet:trust"] = {"refs": ["branch:main"], **trust}
    (stacks / f"Pulumi.{name}.yaml").write_text(yaml.safe_dump({"config": config}))


def listing(group: dict, *projects: dict):
    return parse_inventory({"group": {"id": group["id"], "full_path": group["full_path"]}, "projects": list(projects)})


def check(stacks: Path, name: str, inventory, planned=None) -> None:
    """The overlap check as plan runs it: for the projects the stack's own selection keeps (unless `planned`)."""
    config = stack_config(read_stack(stacks, name))
    ids = [p.id for p in select_projects(config, inventory)[0]] if planned is None else planned
    check_overlaps(config_target(name, config), other_targets(stacks, name), inventory, ids)


ACME = listing(GROUPS[0], make_project(10, "acme/platform/tools/ci", GROUPS), make_project(11, "acme/web/shop", GROUPS))
PLATFORM = listing(GROUPS[1], make_project(10, "acme/platform/tools/ci", GROUPS))


def test_a_group_and_its_subgroup_with_one_scope_overlap_both_ways(tmp_path):
    write(tmp_path, "all", "acme")
    write(tmp_path, "platform", "acme/platform")
    with pytest.raises(FleetError, match=r"stack platform \(group acme/platform and its subgroups\) could also take acme/platform/tools/ci"):
        check(tmp_path, "all", ACME)
    with pytest.raises(FleetError, match=r"stack all \(group acme and its subgroups\) could also take acme/platform/tools/ci"):
        check(tmp_path, "platform", PLATFORM)


def test_disjoint_groups_scopes_instances_or_a_parent_without_subgroups_do_not_overlap(tmp_path):
    write(tmp_path, "all", "acme", includeSubgroups=False)
    write(tmp_path, "platform", "acme/platform")
    write(tmp_path, "web", "acme/web", scope="production")
    write(tmp_path, "other-instance", "acme/platform", url="https://gitlab.other.example")
    check(tmp_path, "platform", PLATFORM)
    check(tmp_path, "web", listing(GROUPS[3], make_project(11, "acme/web/shop", GROUPS)))


def test_the_same_instance_is_recognised_however_its_url_is_spelt(tmp_path):
    write(tmp_path, "a", "acme/platform")
    write(tmp_path, "b", "ACME/Platform", url="HTTPS://GitLab.Example.com/")
    with pytest.raises(FleetError, match="stack b .* could also take acme/platform/tools/ci"):
        check(tmp_path, "a", PLATFORM)


def test_a_group_named_by_id_is_placed_through_the_listing(tmp_path):
    write(tmp_path, "all", "acme")
    write(tmp_path, "tools", 3)  # acme/platform/tools, a namespace of a listed project
    with pytest.raises(FleetError, match=r"stack tools \(group 3 and its subgroups\) could also take acme/platform/tools/ci"):
        check(tmp_path, "all", ACME)
    write(tmp_path, "tools", 999)  # an id the listing cannot place: it could contain acme
    with pytest.raises(FleetError, match="names its group by an id this listing cannot place.*write fleet:gitlab.group of stack tools as a full path"):
        check(tmp_path, "all", ACME)
    write(tmp_path, "tools", 999, includeSubgroups=False)  # it holds only its own projects, none of them listed here
    check(tmp_path, "all", ACME)


def test_a_shared_in_project_of_another_stacks_group_is_refused(tmp_path):
    write(tmp_path, "acme", "acme", includeShared=True)
    write(tmp_path, "partner", "partner")
    shared = make_project(20, "partner/sub/api", GROUPS, shared_with=[GROUPS[0]])
    inventory = listing(GROUPS[0], make_project(11, "acme/web/shop", GROUPS), shared)
    with pytest.raises(FleetError, match="stack partner .* could also take partner/sub/api"):
        check(tmp_path, "acme", inventory)
    check(tmp_path, "acme", inventory, planned=[11])  # not planned (e.g. excluded): nothing to clash
    write(tmp_path, "partner", "partner", includeSubgroups=False)
    check(tmp_path, "acme", inventory)


def test_a_project_shared_into_two_stacks_groups_is_refused_by_both(tmp_path):
    groups = [*GROUPS, make_group(7, "zeta")]
    write(tmp_path, "acme", "acme", includeShared=True)
    write(tmp_path, "partner", "partner", includeShared=True)
    x = make_project(30, "zeta/x", groups, shared_with=[groups[0], groups[4]])
    with pytest.raises(FleetError, match="stack partner .* could also take zeta/x"):
        check(tmp_path, "acme", listing(GROUPS[0], make_project(11, "acme/web/shop", GROUPS), x))
    with pytest.raises(FleetError, match="stack acme .* could also take zeta/x"):
        check(tmp_path, "partner", listing(GROUPS[4], x))


@pytest.mark.parametrize("partner_group", ["partner", 5], ids=["by-path", "by-id"])
def test_a_project_shared_into_a_stack_that_takes_shared_projects_is_refused_by_its_owner_too(tmp_path, partner_group):
    write(tmp_path, "acme", "acme")
    write(tmp_path, "partner", partner_group, includeShared=True, includeSubgroups=False)
    shop = make_project(11, "acme/web/shop", GROUPS, shared_with=[GROUPS[4]])
    with pytest.raises(FleetError, match="could also take acme/web/shop"):
        check(tmp_path, "acme", listing(GROUPS[0], shop))
    write(tmp_path, "partner", partner_group, includeShared=False, includeSubgroups=False)
    check(tmp_path, "acme", listing(GROUPS[0], shop))


def test_plan_refuses_overlapping_stacks_end_to_end(tmp_path, capsys):
    write(tmp_path, "shop", "shop")
    write(tmp_path, "web", "shop/web")
    inventory = str(Path(__file__).resolve().parent.parent / "samples/shop.inventory.json")
    assert main(["plan", "--stack", "shop", "--stacks-dir", str(tmp_path), "--inventory", inventory]) == 1
    assert "stack web (group shop/web and its subgroups) could also take shop/web/ui" in capsys.readouterr().err


@pytest.mark.parametrize("line, message", [
    ("includeShared: yes", "fleet:gitlab.includeShared: line 6: `yes` is true to YAML 1.1 but the string \"yes\" to Pulumi"),
    ("timeout: 0030", "fleet:gitlab.timeout: line 6: `0030`"),
])
def test_stack_scalars_that_yaml_11_and_pulumi_read_differently_are_refused(tmp_path, capsys, line, message):
    text = ("config:\n  fleet:accountId: \"111111111111\"\n  fleet:gitlab:\n    url: https://gitlab.example.com\n"
            f"    group: shop\n    {line}\n")
    (tmp_path / "Pulumi.s.yaml").write_text(text)
    assert main(["plan", "--stack", "s", "--stacks-dir", str(tmp_path), "--inventory", "samples/shop.inventory.json"]) == 78
    assert message in capsys.readouterr().err


def test_an_unquoted_account_id_is_read_as_pulumi_reads_it(tmp_path):
    (tmp_path / "Pulumi.s.yaml").write_text(
        "config:\n  fleet:accountId: 111111111111\n  fleet:gitlab:\n    url: https://gitlab.example.com\n    group: shop\n")
    assert stack_config(read_stack(tmp_path, "s")).account_id == "111111111111"
    (tmp_path / "Pulumi.s.yaml").write_text(
        "config:\n  fleet:accountId: 012345678901\n  fleet:gitlab:\n    url: https://gitlab.example.com\n    group: shop\n")
    with pytest.raises(FleetError, match=r"fleet:accountId: line 2: `012345678901` .* quote it"):
        read_stack(tmp_path, "s")  # YAML 1.1 keeps the text, Pulumi's YAML reads a number


def test_a_stack_file_plan_cannot_read_whole_is_refused(tmp_path):
    base = "config:\n  fleet:accountId: \"111111111111\"\n"
    (tmp_path / "Pulumi.esc.yaml").write_text("environment:\n  - acme/fleet-prod\n" + base)
    with pytest.raises(FleetError, match=r"imports Pulumi ESC environments \(environment:\), whose values `pulumi up` reads"):
        read_stack(tmp_path, "esc")
    (tmp_path / "Pulumi.typo.yaml").write_text("confg:\n  x: 1\n" + base)
    with pytest.raises(FleetError, match='unknown top-level key "confg"; did you mean config\\?'):
        read_stack(tmp_path, "typo")
    (tmp_path / "Pulumi.ok.yaml").write_text("secretsprovider: passphrase\nencryptionsalt: v1:abc\n" + base)
    assert read_stack(tmp_path, "ok").config["fleet:accountId"] == "111111111111"


def test_a_secret_fleet_value_is_refused_as_pulumi_up_refuses_it(tmp_path, capsys):
    (tmp_path / "Pulumi.s.yaml").write_text(
        "config:\n  fleet:accountId:\n    secure: AAABAxyz\n  fleet:gitlab:\n    url: https://gitlab.example.com\n"
        "    group: shop\n")
    assert main(["plan", "--stack", "s", "--stacks-dir", str(tmp_path), "--inventory", "samples/shop.inventory.json"]) == 78
    assert "Pulumi.s.yaml: fleet:accountId: is a secret; fleet settings are plain values" in capsys.readouterr().err


def test_a_parent_that_leaves_the_subgroup_out_does_not_overlap_it(tmp_path):
    write(tmp_path, "all", "acme", exclude=["acme/platform/**"])
    write(tmp_path, "platform", "acme/platform")
    check(tmp_path, "all", ACME)
    check(tmp_path, "platform", PLATFORM)
    write(tmp_path, "all", "acme", exclude=["acme/web/**"])  # leaves out another subgroup: the overlap stands
    with pytest.raises(FleetError, match="stack all .* could also take acme/platform/tools/ci"):
        check(tmp_path, "platform", PLATFORM)


def test_a_subgroup_project_shared_into_a_parent_that_takes_no_subgroups_is_not_its(tmp_path):
    """`acme` (no subgroups, shared projects taken) skips acme/platform/x as a subgroup project, shared or not."""
    write(tmp_path, "acme", "acme", includeSubgroups=False, includeShared=True)
    write(tmp_path, "platform", "acme/platform")
    x = make_project(12, "acme/platform/x", GROUPS, shared_with=[GROUPS[0]])
    check(tmp_path, "platform", listing(GROUPS[1], x))


def test_a_group_id_is_refused_when_the_listing_cannot_say_which_groups_hold_its_projects(tmp_path):
    write(tmp_path, "acme", "acme", includeSubgroups=False)
    write(tmp_path, "by-id", 1, includeSubgroups=False)  # the same group, named by id
    inventory = parse_inventory({"group": {"id": None, "full_path": "acme"},  # an API that serves only the listing
                                 "projects": [{**make_project(11, "acme/shop", GROUPS), "namespace": None}]})
    with pytest.raises(FleetError, match="stack by-id .* names its group by an id this listing cannot place"):
        check(tmp_path, "acme", inventory)


def test_stacks_of_other_scopes_that_set_different_sub_claims_on_one_project_are_refused(tmp_path):
    """dev sets `project_id` first, prod keeps the path: each run would undo the other's components."""
    write(tmp_path, "dev", "acme", trust={"subject": "id"})
    write(tmp_path, "prod", "acme", scope="production")
    with pytest.raises(FleetError, match=r"^stack dev and stack prod \(group acme and its subgroups\) could both take "
                                         r".*, and one stack owns a project's sub claim components, which at least one "
                                         r"of them sets"):
        check(tmp_path, "dev", ACME)
    write(tmp_path, "prod", "acme", scope="production", trust={"protectedRefsOnly": True})
    write(tmp_path, "dev", "acme", trust={"subject": "path"})
    with pytest.raises(FleetError, match="one stack owns a project's sub claim components"):
        check(tmp_path, "dev", ACME)  # prod adds ref_protected on a self-managed instance


def test_stacks_of_other_scopes_with_the_same_sub_claim_settings_on_one_project_are_refused_too(tmp_path):
    """Both set `project_id` first: the second records the first's value as the one to give back, and the first,
    when it goes, gives back GitLab's default under the second's id-only roles."""
    write(tmp_path, "dev", "acme", trust={"subject": "id"})
    write(tmp_path, "prod", "acme", scope="production", trust={"subject": "id"})
    with pytest.raises(FleetError, match=r"^stack dev and stack prod \(group acme and its subgroups\) could both take "
                                         r"acme/platform/tools/ci, acme/web/shop, and one stack owns a project's sub "
                                         r"claim components"):
        check(tmp_path, "dev", ACME)
    write(tmp_path, "prod", "acme/platform", scope="production", trust={"subject": "id"})
    write(tmp_path, "dev", "acme", trust={"subject": "id", "refs": ["branch:main"]}, exclude=["acme/platform/**"])
    check(tmp_path, "dev", ACME)  # each owns its own projects
    write(tmp_path, "prod", "acme", scope="production", url="https://gitlab.other.example", trust={"subject": "id"})
    check(tmp_path, "dev", ACME)  # another instance
