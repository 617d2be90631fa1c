"""Planning: which projects get roles, why others are skipped, and what stops a plan."""

from __future__ import annotations

import pytest

from fleet.deployed import Deployed
from fleet.errors import PlanError
from fleet.globs import path_glob
from fleet.inventory import parse_inventory
from fleet.planner import build_plan
from fleet.trust import HeldSubClaims
from tests.gitlab_double import make_group, make_project
from tests.helpers import make_config

GROUPS = [make_group(1, "shop"), make_group(2, "shop/team", 1), make_group(3, "shop/sandbox", 1),
          make_group(4, "shop-legacy"), make_group(5, "other")]


def listing(*projects):
    return parse_inventory({"group": {"id": 1, "full_path": "shop"}, "projects": list(projects)})


def p(*args, **kw):
    return make_project(*args, GROUPS, **kw)


def reasons(plan):
    return {s.path: s.reason for s in plan.skipped}


def test_project_outside_the_group_is_never_planned_even_when_shared_in_projects_are():
    inv = listing(p(1, "shop/cart"), p(2, "shop-legacy/cart"), p(3, "other/cart", shared_with=[GROUPS[1]]))
    plan = build_plan(make_config(gitlab={"includeShared": True}), inv, "s")
    assert [x.path for x in plan.projects] == ["shop/cart", "other/cart"]  # shared into shop/team
    assert reasons(plan) == {"shop-legacy/cart": "outside-group"}  # listed, but nothing says it is shared
    plan = build_plan(make_config(), inv, "s")
    assert [x.path for x in plan.projects] == ["shop/cart"]
    assert reasons(plan) == {"shop-legacy/cart": "shared-in", "other/cart": "shared-in"}


def test_subgroup_projects_skipped_when_subgroups_are_off():
    plan = build_plan(make_config(gitlab={"includeSubgroups": False}), listing(p(1, "shop/a"), p(2, "shop/team/b")), "s")
    assert reasons(plan) == {"shop/team/b": "subgroup"}


def test_archived_kept_when_asked_pending_deletion_never():
    inv = listing(p(1, "shop/a", archived=True), p(2, "shop/b", pending_deletion=True, archived=True))
    plan = build_plan(make_config(gitlab={"includeArchived": True}), inv, "s")
    assert [x.path for x in plan.projects] == ["shop/a"] and reasons(plan) == {"shop/b": "pending-deletion"}


def test_exclude_globs_and_a_warning_for_a_glob_that_matches_nothing():
    assert path_glob("shop/*/x").fullmatch("shop/team/x") and not path_glob("shop/*/x").fullmatch("shop/a/b/x")
    assert path_glob("shop/**").fullmatch("shop/a/b/c") and path_glob("Shop/Sandbox/**").fullmatch("shop/sandbox/a")
    assert not path_glob("shop/sandbox/**").fullmatch("shop/sandbox-2/a")
    assert path_glob("shop/**/secret").fullmatch("shop/secret")  # **/ also matches no segment
    assert path_glob("shop/**/secret").fullmatch("shop/a/b/secret")
    assert not path_glob("shop/**/secret").fullmatch("shop/topsecret")
    assert path_glob("**/secret").fullmatch("shop/secret") and not path_glob("shop/*/x").fullmatch("shop/x")
    inv = listing(p(1, "shop/sandbox/a"), p(2, "shop/team/b"), p(3, "shop/sandboxed"))
    plan = build_plan(make_config(gitlab={"exclude": ["shop/sandbox/**", "shop/nothing-*"]}), inv, "s")
    assert reasons(plan) == {"shop/sandbox/a": "excluded"}
    assert plan.warnings == ('fleet:gitlab.exclude "shop/nothing-*" matches no project of shop',)


def test_empty_repository_with_only_default_branch_rule_is_skipped_not_given_a_dead_role():
    inv = listing(p(1, "shop/empty", default_branch=None), p(2, "shop/full"))
    plan = build_plan(make_config(trust={"refs": ["branch:{default_branch}"]}), inv, "s")
    assert [x.path for x in plan.projects] == ["shop/full"] and reasons(plan) == {"shop/empty": "no-refs"}
    plan = build_plan(make_config(trust={"refs": ["branch:{default_branch}", "tag:v*"]}), inv, "s")
    assert {x.path: x.refs for x in plan.projects} == {"shop/empty": ("tag:v*",), "shop/full": ("branch:main", "tag:v*")}


def test_trust_policy_over_iams_limit_stops_the_plan_naming_the_projects():
    refs = [f"branch:release/2024.{i:02d}" for i in range(40)]
    with pytest.raises(PlanError, match=r"over IAM's 2048-character limit.*fleet:trust.refs.*shop/cart \(\d+ characters\)"):
        build_plan(make_config(trust={"refs": refs}), listing(p(1, "shop/cart")), "s")


def test_listing_of_another_group_is_refused():
    with pytest.raises(PlanError, match="the listing is of group shop"):
        build_plan(make_config(gitlab={"group": "acme"}), listing(p(1, "shop/a")), "s")
    with pytest.raises(PlanError, match=r"\(id 1\), but fleet:gitlab.group is 9"):
        build_plan(make_config(gitlab={"group": 9}), listing(p(1, "shop/a")), "s")


def test_a_numeric_group_against_a_listing_without_the_groups_id_is_refused():
    inv = parse_inventory({"group": {"id": None, "full_path": "shop"}, "projects": [p(1, "shop/a")]})
    with pytest.raises(PlanError, match="fleet:gitlab.group is the id 1, but the listing of shop does not say the group's id"):
        build_plan(make_config(gitlab={"group": 1}), inv, "s")
    assert build_plan(make_config(gitlab={"group": "shop"}), inv, "s").projects


def test_a_project_shared_only_into_a_subgroup_is_out_of_scope_without_subgroups():
    inv = listing(p(1, "shop/a"), p(2, "other/x", shared_with=[GROUPS[1]]), p(3, "other/y", shared_with=[GROUPS[0]]))
    plan = build_plan(make_config(gitlab={"includeShared": True, "includeSubgroups": False}), inv, "s")
    assert [x.path for x in plan.projects] == ["shop/a", "other/y"]
    assert reasons(plan) == {"other/x": "outside-group"}
    plan = build_plan(make_config(gitlab={"includeShared": True}), inv, "s")
    assert [x.path for x in plan.projects] == ["shop/a", "other/x", "other/y"]


@pytest.mark.parametrize("change", ["archived", "excluded", "pending-deletion", "empty-repository"])
def test_a_skipped_keeper_renames_nobody(change):
    """The plain name is decided over every listed project, so skipping its holder leaves the other name alone."""
    keeper = {"archived": dict(archived=True), "pending-deletion": dict(pending_deletion=True),
              "empty-repository": dict(default_branch=None), "excluded": {}}[change]
    config = make_config(gitlab={"exclude": ["shop/a_b"]} if change == "excluded" else {},
                         trust={"refs": ["branch:{default_branch}"]})
    before = build_plan(make_config(trust={"refs": ["branch:{default_branch}"]}), listing(p(1, "shop/a_b"), p(2, "shop/a-b")), "s")
    after = build_plan(config, listing(p(1, "shop/a_b", **keeper), p(2, "shop/a-b")), "s")
    assert [x.role_name for x in before.projects] == ["gitlab-shop-a-b", "gitlab-shop-a-b_2"]
    assert [(x.id, x.role_name) for x in after.projects] == [(2, "gitlab-shop-a-b_2")]


def test_a_gone_keeper_renames_nobody_when_the_deployed_names_are_known():
    before = build_plan(make_config(), listing(p(1, "shop/a_b"), p(2, "shop/a-b")), "s")
    deployed = Deployed({x.id: x.role_name for x in before.projects})
    after = build_plan(make_config(), listing(p(2, "shop/a-b"), p(3, "shop/a.b")), "s", deployed)
    assert {x.id: x.role_name for x in after.projects} == {2: "gitlab-shop-a-b_2", 3: "gitlab-shop-a-b_3"}
    with pytest.raises(PlanError, match="deployed role names cannot be used"):
        build_plan(make_config(), listing(p(2, "shop/a-b")), "s", Deployed({1: "gitlab-x", 2: "GITLAB-X"}))


def test_warnings_for_suffixed_names_and_role_path():
    inv = listing(p(1, "shop/a_b"), p(2, "shop/a-b"))
    plan = build_plan(make_config(role={"path": "/ci/"}), inv, "s")
    assert [x.role_arn for x in plan.projects] == ["arn:aws:iam::111111111111:role/ci/gitlab-shop-a-b",
                                                   "arn:aws:iam::111111111111:role/ci/gitlab-shop-a-b_2"]
    assert "shop/a-b -> gitlab-shop-a-b_2" in plan.warnings[0] and "--role-name" in plan.warnings[0]
    assert 'fleet:role.path is "/ci/"' in plan.warnings[1]


def test_tags_and_description_stay_within_iam_limits():
    long_path = "shop/" + "/".join(["x" * 60] * 5)
    groups = GROUPS + [make_group(10 + i, "shop/" + "/".join(["x" * 60] * (i + 1)), 1) for i in range(4)]
    plan = build_plan(make_config(), listing(make_project(1, long_path, groups)), "s")
    [project] = plan.projects
    assert len(project.tags["gitlab-project-path"]) == 256 and project.tags["gitlab-project-path"].endswith("...")
    assert project.tags["gitlab-project-id"] == "1" and len(project.role_name) == 64


def test_default_branches_git_accepts_are_trusted_literally():
    for branch in ("dev/\U0001F468\u200d\U0001F4BB", "release\u00a01", "f\u00fcr-alle"):
        plan = build_plan(make_config(trust={"refs": ["branch:{default_branch}"]}),
                          listing(p(1, "shop/a", default_branch=branch)), "s")
        assert plan.projects[0].refs == (f"branch:{branch}",)


def test_a_default_branch_git_would_refuse_skips_only_that_project_and_only_when_it_matters():
    inv = listing(p(1, "shop/odd", default_branch="v1*"), p(2, "shop/fine"), p(3, "shop/odd2", default_branch="a..b"))
    plan = build_plan(make_config(trust={"refs": ["branch:{default_branch}", "tag:v*"]}), inv, "s")
    assert [x.path for x in plan.projects] == ["shop/fine"]
    assert reasons(plan) == {"shop/odd": "bad-default-branch", "shop/odd2": "bad-default-branch"}
    assert '"v1*": it holds \'*\' or \'?\'' in plan.skipped[0].detail
    plan = build_plan(make_config(trust={"refs": ["branch:main"]}), inv, "s")  # the default branch plays no part
    assert [x.path for x in plan.projects] == ["shop/odd", "shop/fine", "shop/odd2"]


def test_a_default_branch_too_long_for_iam_skips_its_project_not_the_fleet():
    long_branch = "/".join(["${x}" * 90] * 3)  # git accepts it; escaped as ${$}{x} it outgrows IAM's 2,048 characters
    inv = listing(p(1, "shop/evil", default_branch=long_branch), p(2, "shop/fine"))
    plan = build_plan(make_config(trust={"refs": ["branch:{default_branch}", "tag:v*"]}), inv, "s")
    assert [x.path for x in plan.projects] == ["shop/fine"]
    assert reasons(plan) == {"shop/evil": "bad-default-branch"} and "over IAM's 2048" in plan.skipped[0].detail
    refs = [f"branch:release/2024.{i:02d}" for i in range(40)]  # the stack's own refs are too many: the plan stops
    with pytest.raises(PlanError, match="over IAM's 2048-character limit"):
        build_plan(make_config(trust={"refs": ["branch:{default_branch}", *refs]}), inv, "s")


def test_a_role_planned_without_its_default_branch_rule_is_listed_by_name():
    inv = listing(p(1, "shop/empty", default_branch=None), p(2, "shop/full"), p(3, "shop/also-empty", default_branch=None))
    plan = build_plan(make_config(trust={"refs": ["branch:{default_branch}", "tag:v*"]}), inv, "s")
    [warning] = [w for w in plan.warnings if "no default branch" in w]
    assert warning.startswith("2 project(s) have no default branch (empty repository)")
    assert warning.endswith(": shop/empty, shop/also-empty")
    plan = build_plan(make_config(trust={"refs": ["branch:main", "tag:v*"]}), inv, "s")  # no {default_branch}: nothing dropped
    assert not any("no default branch" in w for w in plan.warnings)


def test_a_plan_with_no_roles_says_so_with_the_group_and_the_reasons():
    inv = listing(p(1, "shop/old", archived=True), p(2, "shop/empty", default_branch=None), p(3, "shop/sandbox/x"))
    plan = build_plan(make_config(trust={"refs": ["branch:{default_branch}"]}, gitlab={"exclude": ["shop/sandbox/**"]}), inv, "s")
    assert not plan.projects
    warning = "no roles planned for group shop: all 3 listed projects are skipped (1 archived, 1 excluded, 1 no-refs)"
    assert plan.no_roles_warning == warning and plan.to_json()["warnings"][0] == warning
    plan = build_plan(make_config(), listing(), "s")
    assert plan.to_json()["warnings"] == ["no roles planned for group shop: GitLab lists no projects in it"]
    assert build_plan(make_config(), listing(p(1, "shop/a")), "s").no_roles_warning is None


# --- fleet:trust.subject and fleet:trust.protectedRefsOnly ------------------------------------------------------

DEFAULT_SUB = ["project_path", "ref_type", "ref"]
BY_ID_SUB = ["project_id", "ref_type", "ref"]


def versioned(version, *projects):
    return parse_inventory({"group": {"id": 1, "full_path": "shop"}, "projects": list(projects), "gitlab_version": version})


def subs(project):
    return [v for s in project.trust_policy["Statement"] for c in s["Condition"].values()
            for k, v in c.items() if k.endswith(":sub") for v in (v if isinstance(v, list) else [v])]


def test_subject_id_switches_each_project_once_then_trusts_only_its_id():
    config = make_config(trust={"refs": ["branch:main"], "subject": "id"})
    plan = build_plan(config, versioned("18.7.0-ee", p(7, "shop/cart", sub_claim_components=DEFAULT_SUB),
                                        p(8, "shop/done", sub_claim_components=BY_ID_SUB)), "s")
    cart, done = plan.projects
    assert (cart.sub_phase, cart.manage_sub_claim, cart.sub_components) == ("switching", True, tuple(BY_ID_SUB))
    assert subs(cart) == ["project_path:shop/cart:ref_type:branch:ref:main", "project_id:7:ref_type:branch:ref:main"]
    assert done.sub_phase == "applied" and subs(done) == ["project_id:8:ref_type:branch:ref:main"]
    assert cart.to_json()["subject"] == {"components": BY_ID_SUB, "phase": "switching", "managed": True}
    [warning] = [w for w in plan.warnings if w.startswith("stack in transition")]
    assert warning.startswith("stack in transition: 1 project(s) trust both sub forms until the next run") and \
        warning.endswith(": shop/cart")
    again = build_plan(config, versioned("18.7.0-ee", p(7, "shop/cart", sub_claim_components=BY_ID_SUB)), "s")
    assert again.projects[0].sub_phase == "applied" and not any("transition" in w for w in again.warnings)


def test_a_hand_made_sub_is_trusted_as_set_or_its_project_skipped_with_the_reason():
    odd = ["project_path", "ref_type", "ref", "deployment_tier"]
    inv = versioned("18.8.0", p(7, "shop/byid", sub_claim_components=BY_ID_SUB), p(8, "shop/odd", sub_claim_components=odd),
                    p(9, "shop/plain"))
    plan = build_plan(make_config(), inv, "s")
    assert {x.path: x.sub_phase for x in plan.projects} == {"shop/byid": "custom", "shop/plain": "applied"}
    assert subs(plan.projects[0]) == ["project_id:7:ref_type:branch:ref:main"]
    [skipped] = plan.skipped
    assert (skipped.path, skipped.reason) == ("shop/odd", "custom-sub-claim")
    assert "holds deployment_tier, which this program does not trust" in skipped.detail
    managed = build_plan(make_config(trust={"refs": ["branch:main"], "subject": "id"}), inv.__class__(
        inv.group, inv.projects[:2], inv.raw, inv.gitlab_version), "s")
    assert reasons(managed) == {"shop/odd": "custom-sub-claim"} and managed.projects[0].sub_phase == "applied"


@pytest.mark.parametrize("trust, issuer", [({"subject": "id"}, "https://gitlab.example.com"),
                                           ({"protectedRefsOnly": True}, "https://gitlab.example.com"),
                                           ({"subject": "id", "protectedRefsOnly": True}, "https://gitlab.com")])
def test_an_instance_too_old_or_of_unknown_version_is_refused_in_one_sentence(trust, issuer):
    config = make_config(gitlab={"url": issuer}, trust={"refs": ["branch:main"], **trust})
    project = p(7, "shop/cart", sub_claim_components=DEFAULT_SUB)
    with pytest.raises(PlanError) as info:
        build_plan(config, versioned("17.11.2", project), "s")
    message = str(info.value)
    assert "needs GitLab 18.7 or later" in message and "runs 17.11.2" in message and message.count(". ") == 0
    with pytest.raises(PlanError, match=r"does not say the instance's version \(GET /version\)"):
        build_plan(config, listing(project), "s")
    with pytest.raises(PlanError) as info:
        build_plan(config, versioned("v18.7", project), "s")
    message = str(info.value)
    assert 'GET /version answered "v18.7", which could not be read as a version' in message, message
    assert "upgrade" not in message and message.count(". ") == 0
    assert build_plan(config, versioned("18.7.1-ee", project), "s").projects


def test_protected_refs_on_gitlab_com_need_no_version_and_no_change_to_the_projects():
    config = make_config(gitlab={"url": "https://gitlab.com"}, trust={"refs": ["branch:main"], "protectedRefsOnly": True})
    plan = build_plan(config, listing(p(7, "shop/cart")), "s")
    [cart] = plan.projects
    assert not cart.manage_sub_claim and cart.sub_phase == "applied"
    assert cart.trust_policy["Statement"][0]["Condition"]["StringEquals"]["gitlab.com:ref_protected"] == "true"


def test_protected_refs_on_self_managed_put_ref_protected_in_the_sub():
    config = make_config(trust={"refs": ["branch:main"], "protectedRefsOnly": True})
    plan = build_plan(config, versioned("18.7.0", p(7, "shop/cart", sub_claim_components=DEFAULT_SUB + ["ref_protected"])), "s")
    [cart] = plan.projects
    assert cart.manage_sub_claim and cart.sub_phase == "applied"
    assert subs(cart) == ["project_path:shop/cart:ref_type:branch:ref:main:ref_protected:true"]


def test_a_managed_sub_needs_a_maintainer_token_that_sees_the_components():
    config = make_config(trust={"refs": ["branch:main"], "subject": "id"})
    with pytest.raises(PlanError, match=r"^fleet:trust.subject id makes the stack set each project's "
                                        r"ci_id_token_sub_claim_components, .* not Maintainer of 1 project\(s\): shop/b; "):
        build_plan(config, versioned("18.7.0", p(7, "shop/a", sub_claim_components=DEFAULT_SUB), p(8, "shop/b")), "s")


def test_a_stack_that_stops_managing_trusts_what_it_gives_back_until_it_is_back():
    held = {pid: HeldSubClaims(tuple(BY_ID_SUB), tuple(DEFAULT_SUB)) for pid in (7, 8)}
    inv = versioned("18.7.0", p(7, "shop/cart", sub_claim_components=BY_ID_SUB), p(8, "shop/hidden"))
    plan = build_plan(make_config(), inv, "s", restoring=held)
    cart, hidden = plan.projects
    assert cart.sub_phase == "switching" and not cart.manage_sub_claim and cart.sub_components == tuple(DEFAULT_SUB)
    assert subs(cart) == ["project_id:7:ref_type:branch:ref:main", "project_path:shop/cart:ref_type:branch:ref:main"]
    # its components not listed (the token lost Maintainer there): its tokens still carry what the stack set
    assert hidden.sub_phase == "switching"
    assert subs(hidden) == ["project_id:8:ref_type:branch:ref:main", "project_path:shop/hidden:ref_type:branch:ref:main"]


def test_both_forms_still_fit_iams_trust_policy_limit_or_the_plan_stops():
    refs = [f"branch:release/2024.{i:02d}" for i in range(20)]
    config = make_config(trust={"refs": refs, "subject": "id"})
    one = build_plan(config, versioned("18.7.0", p(7, "shop/cart", sub_claim_components=BY_ID_SUB)), "s")
    assert one.projects  # fits with one form
    with pytest.raises(PlanError, match=r"over IAM's 2048-character limit.*shop/cart"):
        build_plan(config, versioned("18.7.0", p(7, "shop/cart", sub_claim_components=DEFAULT_SUB)), "s")


def test_the_table_marks_a_switching_project_and_says_what_the_sub_is_made_of():
    import io

    from fleet.render import render_table
    config = make_config(trust={"refs": ["branch:main"], "subject": "id"})
    plan = build_plan(config, versioned("18.7.0", p(7, "shop/cart", sub_claim_components=DEFAULT_SUB),
                                        p(8, "shop/done", sub_claim_components=BY_ID_SUB)), "s")
    out = io.StringIO()
    render_table(plan, out, width=120)
    lines = out.getvalue().splitlines()
    assert any(line.split()[:3] == ["7", "~", "shop/cart"] for line in lines)
    assert any(line.split()[:2] == ["8", "shop/done"] for line in lines)
    assert "~ sub switches in this run: both forms trusted until the next run finds the new one applied" in lines
    assert "sub: project_id:ref_type:ref (2)" in lines
