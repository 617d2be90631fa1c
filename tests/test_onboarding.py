"""`python -m fleet up --stack S --new-only`: the projects created since the stack's last run, listed newest first
from the GitLab API double, and a preview and update limited to their resources by the stand-in `pulumi`."""

from __future__ import annotations

import dataclasses
import io
import os
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from fleet import cli, onboarding, operations
from fleet.config import parse_config
from fleet.errors import DiscoveryError
from fleet.resources import COMPONENT_TYPE
from tests import engine_events as ev
from tests import fake_pulumi
from tests.gitlab_double import GitLabDouble, make_group, make_project

ROOT = Path(__file__).resolve().parent.parent
PROJECT = "gitlab-aws-oidc-fleet"  # Pulumi.yaml's name

# The stack's last outputs: it holds a role for shop/cart (1) and skipped project 3 (archived).
OUTPUTS = {"roleNames": {"1": "gitlab-shop-cart"}, "skipped": [{"id": 3.0, "path": "shop/old", "reason": "archived",
                                                                "detail": "archived"}]}
NEWER = dataclasses.replace(ev.NEW, id=4, path="shop/new-thing")
NEWEST = dataclasses.replace(ev.NEW, id=5, path="shop/sub/newest", role_name="gitlab-shop-sub-newest")
NEW_PROJECTS = ((4, "shop/new-thing", {}), (5, "shop/sub/newest", {}))


def creating(*projects: ev.Project) -> list[dict[str, Any]]:
    """A targeted preview that creates these projects' resources and leaves shop/cart as it is."""
    return ev.preview_events(ev.Scenario(same=(ev.CART,), created=projects, trust_and_policy_update=(), renamed=(),
                                         gone=(), skipped=(), managed_policy_changes=False))


CREATE_NEW = creating(NEWER)  # a targeted preview that creates shop/new-thing (4)
NOTHING = ev.clean_preview_events()


def shop(*extra: tuple[int, str, dict[str, Any]]) -> GitLabDouble:
    """Group shop: shop/cart (1) and the archived shop/old (3), and `extra` (id, path, make_project keywords; a path in
    `elsewhere` is shared into shop)."""
    groups = [make_group(10, "shop"), make_group(11, "shop/sub", 10), make_group(20, "elsewhere")]
    projects = [make_project(1, "shop/cart", groups), make_project(3, "shop/old", groups, archived=True)]
    projects += [make_project(pid, path, groups, **kw, **({"shared_with": [groups[0]]} if path.startswith("elsewhere/") else {}))
                 for pid, path, kw in extra]
    return GitLabDouble(groups=groups, projects=projects)


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A copy of Pulumi.yaml and a stack `demo` of group shop, as the working directory; no ambient CI variables."""
    work = tmp_path / "work"
    (work / "stacks").mkdir(parents=True)
    shutil.copy(ROOT / "Pulumi.yaml", work)
    monkeypatch.chdir(work)
    for name in [k for k in os.environ if k.startswith(("CI_", "FLEET_"))] + ["CI"]:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GITLAB_TOKEN", "glpat-test")
    return work


def stack_file(work: Path, double: GitLabDouble, **gitlab: Any) -> None:
    config = {"aws:region": "eu-west-1", "fleet:accountId": "123456789012",
              "fleet:gitlab": {"url": "https://gitlab.example.com", "apiUrl": double.url, "group": "shop", **gitlab}}
    (work / "stacks" / "Pulumi.demo.yaml").write_text(yaml.safe_dump({"config": config}))


def pulumi(tmp_path: Path, monkeypatch, scenario: dict[str, Any]) -> Path:
    root = fake_pulumi.install(tmp_path, scenario)
    monkeypatch.setenv("PATH", f"{root / 'bin'}{os.pathsep}{os.environ['PATH']}")
    return root


def ran(root: Path, op: str) -> list[list[str]]:
    return [c["args"] for c in fake_pulumi.calls(root) if c["args"][0] == op]


def targets_of(args: list[str]) -> list[str]:
    return [args[i + 1] for i, a in enumerate(args) if a == "--target"]


def listings(double: GitLabDouble) -> list[dict[str, str]]:
    return [q for path, q in double.requests if path.endswith("/projects")]


def up_new_only(*extra: str) -> int:
    return cli.main(["up", "--stack", "demo", "--stacks-dir", "stacks", "--new-only", *extra])


# --- Pulumi's glob matching (pulumi/pulumi pkg/resource/deploy/deployment.go getMatcher), to check our URNs ---

def pulumi_glob(glob: str) -> re.Pattern[str]:
    return re.compile(".*".join("[^:]*".join(re.escape(part) for part in seg.split("*")) for seg in glob.split("**")))


def selected(globs: list[str], urn: str) -> bool:
    return any(pulumi_glob(g).fullmatch(urn) for g in globs)


# --- the whole command ----------------------------------------------------------------------------------------------


def test_new_projects_are_found_newest_first_and_only_their_resources_are_updated(project, tmp_path, monkeypatch, capsys):
    events = creating(NEWER, NEWEST)
    with shop(*NEW_PROJECTS) as double:
        stack_file(project, double)
        root = pulumi(tmp_path, monkeypatch, {"outputs": {"value": OUTPUTS}, "preview": {"events": events},
                                              "up": {"events": events}})
        assert up_new_only("--yes") == 0
        [query] = listings(double)  # 5, 4, then 3 (known: the last run skipped it): stop
    captured = capsys.readouterr()
    assert query["order_by"] == "id" and query["sort"] == "desc" and "id_before" not in query
    assert query["include_subgroups"] == "True" and query["with_shared"] == "False"
    expected = onboarding.targets("demo", PROJECT, [5, 4])
    [preview] = ran(root, "preview")
    [up] = ran(root, "up")
    assert targets_of(preview) == expected and targets_of(up) == expected
    assert "2 new project(s) since its last run: shop/sub/newest (id 5), shop/new-thing (id 4)" in captured.err
    assert "stack demo updated: 2 new project(s) onboarded" in captured.err
    assert "shop/new-thing" in captured.out  # the preview's report


def test_the_listing_stops_at_the_first_known_id_and_skips_what_the_plan_skips(project, tmp_path, monkeypatch, capsys):
    events = creating(NEWER, NEWEST)
    with shop(*NEW_PROJECTS) as double:
        stack_file(project, double)
        root = pulumi(tmp_path, monkeypatch, {"outputs": {"value": {**OUTPUTS, "skipped": []}},
                                              "preview": {"events": events}, "up": {"events": events}})
        assert up_new_only("--yes") == 0
        assert len(listings(double)) == 1
    # 5, 4 and 3 are unknown now, 1 is known: 3 is archived, so the plan skips it and it is not targeted
    assert targets_of(ran(root, "up")[0]) == onboarding.targets("demo", PROJECT, [5, 4])
    assert "new project shop/old (id 3) gets no role: archived" in capsys.readouterr().err


def test_nothing_new_is_one_request_and_no_preview(project, tmp_path, monkeypatch, capsys):
    with shop() as double:
        stack_file(project, double)
        root = pulumi(tmp_path, monkeypatch, {"outputs": {"value": OUTPUTS}, "preview": {"events": CREATE_NEW}})
        assert up_new_only("--yes") == 0
        requests = listings(double)
    assert len(requests) == 1 and requests[0]["per_page"] == "100"
    assert ran(root, "preview") == [] and ran(root, "up") == []
    assert "no new project to onboard since its last run; nothing was changed" in capsys.readouterr().err


def test_pages_continue_below_the_last_id_received(project):
    groups = [make_group(1, "big")]
    projects = [make_project(1000 + i, f"big/p{i}", groups) for i in range(151)]
    config = parse_config({"accountId": "123456789012", "gitlab": {"url": "https://gitlab.example.com", "group": "big"}})
    with GitLabDouble(groups=groups, projects=projects) as double:
        config = dataclasses.replace(config, gitlab=dataclasses.replace(config.gitlab, api_url=double.url))
        found = operations.new_projects(config, "glpat-test", frozenset({1000, 1003}))
        queries = listings(double)
    assert [q.get("id_before") for q in queries] == [None, "1051"]
    assert [p.id for p in found.onboard] == list(range(1150, 1003, -1))  # newest first, down to 1003


def test_a_server_that_ignores_id_before_is_refused(project):
    groups = [make_group(1, "big")]
    projects = [make_project(1000 + i, f"big/p{i}", groups) for i in range(150)]
    config = parse_config({"accountId": "123456789012", "gitlab": {"url": "https://gitlab.example.com", "group": "big"}})
    with GitLabDouble(groups=groups, projects=projects, honours_id_after=False) as double:
        config = dataclasses.replace(config, gitlab=dataclasses.replace(config.gitlab, api_url=double.url))
        with pytest.raises(DiscoveryError, match=r"below id 1050 with project 1149: it ignores id_before or does not sort"):
            operations.new_projects(config, "glpat-test", frozenset({1000}))


def test_an_answer_that_is_not_newest_first_is_refused():
    pages = {None: ([{"id": 7}, {"id": 9}], True)}  # a server that ignored sort=desc
    with pytest.raises(DiscoveryError, match="below id 7 with project 9"):
        onboarding.newest_first(lambda below: pages[below], frozenset({1}), source="GitLab at http://x")


def test_subgroups_and_shared_in_projects_follow_the_stack_settings(project):
    def new(**gitlab: Any) -> tuple[list[int], dict[str, str]]:
        with shop((4, "shop/sub/inner", {}), (5, "elsewhere/shared", {}), (6, "shop/direct", {})) as double:
            raw = {"accountId": "123456789012", "gitlab": {"url": "https://gitlab.example.com", "group": "shop", **gitlab}}
            config = parse_config(raw)
            config = dataclasses.replace(config, gitlab=dataclasses.replace(config.gitlab, api_url=double.url))
            found = operations.new_projects(config, "glpat-test", frozenset({1}))
            [query] = listings(double)
        return [p.id for p in found.onboard], query

    ids, query = new()
    assert ids == [6, 4] and query["with_shared"] == "False" and query["include_subgroups"] == "True"
    ids, query = new(includeSubgroups=False, includeShared=True)
    assert ids == [6, 5] and query["with_shared"] == "True" and query["include_subgroups"] == "False"


def test_excluded_and_archived_new_projects_run_no_preview(project, tmp_path, monkeypatch, capsys):
    with shop((4, "shop/sandbox-x", {}), (5, "shop/gone", {"archived": True})) as double:
        stack_file(project, double, exclude=["shop/sandbox-*"])
        root = pulumi(tmp_path, monkeypatch, {"outputs": {"value": OUTPUTS}, "preview": {"events": CREATE_NEW}})
        assert up_new_only("--yes") == 0
    err = capsys.readouterr().err
    assert "new project shop/sandbox-x (id 4) gets no role: matches fleet:gitlab.exclude" in err
    assert "new project shop/gone (id 5) gets no role: archived" in err
    assert ran(root, "preview") == [] and ran(root, "up") == []


def test_a_targeted_preview_that_creates_nothing_runs_no_update(project, tmp_path, monkeypatch, capsys):
    with shop((4, "shop/new-thing", {})) as double:
        stack_file(project, double)
        root = pulumi(tmp_path, monkeypatch, {"outputs": {"value": OUTPUTS}, "preview": {"events": NOTHING}})
        assert up_new_only("--yes") == 0
    assert len(ran(root, "preview")) == 1 and ran(root, "up") == []
    assert "the plan gives none of the new projects a role" in capsys.readouterr().err


@pytest.mark.parametrize("scenario", [
    ev.Scenario(same=(), created=(ev.NEW,), trust_and_policy_update=(), gone=(), managed_policy_changes=False),  # a replace
    ev.Scenario(same=(ev.CART,), created=(ev.NEW,), trust_and_policy_update=(), renamed=(), managed_policy_changes=False),
])
def test_a_targeted_preview_that_deletes_or_replaces_is_refused(project, tmp_path, monkeypatch, capsys, scenario):
    events = ev.preview_events(scenario)
    with shop((4, "shop/new-thing", {})) as double:
        stack_file(project, double)
        root = pulumi(tmp_path, monkeypatch, {"outputs": {"value": OUTPUTS}, "preview": {"events": events},
                                              "up": {"events": events}})
        assert up_new_only("--yes") == 1
    err = capsys.readouterr().err
    assert "a --new-only run may only create, and this one would" in err
    assert re.search(r"(replace gitlab-shop-new-name \(shop/new-name\)|delete gitlab-shop-gone \(shop/gone\))", err)
    assert ran(root, "up") == []


def test_a_stack_never_updated_is_refused_before_gitlab_is_asked(project, tmp_path, monkeypatch, capsys):
    with shop((4, "shop/new-thing", {})) as double:
        stack_file(project, double)
        root = pulumi(tmp_path, monkeypatch, {"outputs": {"value": {}}, "preview": {"events": CREATE_NEW}})
        assert up_new_only("--yes") == 1
        assert double.requests == []
    assert ("stack demo has no roleNames output, so no project can be told new: run a full "
            "`python -m fleet up --stack demo` first") in capsys.readouterr().err
    assert ran(root, "preview") == []


def test_a_change_outside_the_new_projects_says_to_run_a_full_up(project, tmp_path, monkeypatch, capsys):
    untargeted = ("error: Resource 'urn:pulumi:demo::gitlab-aws-oidc-fleet::gitlab-aws-oidc-fleet:index:ProjectAccess$"
                  "aws:iam/rolePolicyAttachment:RolePolicyAttachment::project-4-attach-ecr-push' depends on "
                  "'urn:pulumi:demo::gitlab-aws-oidc-fleet::aws:iam/policy:Policy::policy-ecr-push' which was was not "
                  "specified in --target list.\nerror: preview failed\n")
    with shop((4, "shop/new-thing", {})) as double:
        stack_file(project, double)
        root = pulumi(tmp_path, monkeypatch, {"outputs": {"value": OUTPUTS},
                                              "preview": {"events": CREATE_NEW[:5], "exit": 255, "stderr": untargeted}})
        assert up_new_only("--yes") == 1
    err = capsys.readouterr().err
    assert "which was was not specified in --target list" in err
    assert "run a full `python -m fleet up --stack demo`" in err and ran(root, "up") == []


def test_the_token_may_be_the_stack_secret_and_one_is_required(project, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("GITLAB_TOKEN")
    with shop((4, "shop/new-thing", {})) as double:
        double.tokens = {"glpat-secret"}
        stack_file(project, double)
        root = pulumi(tmp_path, monkeypatch, {"outputs": {"value": OUTPUTS}, "config": {"value": {"gitlab:token": "glpat-secret"}},
                                              "preview": {"events": CREATE_NEW}, "up": {"events": CREATE_NEW}})
        assert up_new_only("--yes") == 0
        assert len(ran(root, "up")) == 1
        shutil.rmtree(root)
        root = pulumi(tmp_path, monkeypatch, {"outputs": {"value": OUTPUTS}, "config": {"value": {}}})
        assert up_new_only("--yes") == 1
        assert len(listings(double)) == 1  # only the first run listed
    assert "no GitLab token: set GITLAB_TOKEN or the stack secret gitlab:token" in capsys.readouterr().err


def test_a_person_is_asked_and_no_is_no(project, tmp_path, monkeypatch):
    with shop((4, "shop/new-thing", {})) as double:
        stack_file(project, double)
        root = pulumi(tmp_path, monkeypatch, {"outputs": {"value": OUTPUTS}, "preview": {"events": CREATE_NEW},
                                              "up": {"events": CREATE_NEW}})
        config = cli.stack_config(cli.read_stack(project / "stacks", "demo"))
        asked: list[str] = []
        ctx = operations.Context(project_dir=project, env={"GITLAB_TOKEN": "glpat-test"}, out=io.StringIO(),
                                 interactive=True, ask=lambda q: asked.append(q) or "no")
        assert operations.up(ctx, config, "demo", max_deletes=None, yes=False, new_only=True) == 1
        assert asked and ran(root, "up") == []
        ctx.ask = lambda q: "yes"
        assert operations.up(ctx, config, "demo", max_deletes=None, yes=False, new_only=True) == 0
    assert len(ran(root, "up")) == 1 and "shop/new-thing" in ctx.out.getvalue()


def test_the_flag_is_documented_and_refuses_max_deletes(project, tmp_path, monkeypatch, capsys):
    with pytest.raises(SystemExit):
        cli.main(["up", "--help"])
    help_text = capsys.readouterr().out
    assert "--new-only" in help_text and "never deletes or replaces anything" in help_text
    with shop() as double:
        stack_file(project, double)
        root = pulumi(tmp_path, monkeypatch, {"outputs": {"value": OUTPUTS}})
        assert up_new_only("--yes", "--max-deletes", "2") == 64
        assert double.requests == []
    assert "--max-deletes cannot be combined with --new-only" in capsys.readouterr().err
    assert fake_pulumi.calls(root) == []


# --- the URNs ---------------------------------------------------------------------------------------------------------


def test_the_globs_select_every_resource_of_the_project_and_nothing_else():
    mine = dataclasses.replace(ev.NEW, id=12, inline=("logs",), attached=("s3-read",))
    others = [dataclasses.replace(ev.NEW, id=1, path="shop/a", attached=("s3-read",)),
              dataclasses.replace(ev.NEW, id=123, path="shop/b", inline=("logs",)),
              dataclasses.replace(ev.NEW, id=112, path="shop/c")]
    globs = list(onboarding.project_targets(ev.STACK, ev.PROJECT, 12))
    states = ev.project_states(mine)
    sub_claim = ev.urn("pulumi-python:dynamic/fleet:SubClaimComponents", "project-12-sub-claim", parents=(COMPONENT_TYPE,))
    assert len(states) == 8 and all(selected(globs, s["urn"]) for s in states.values()) and selected(globs, sub_claim)
    for other in others:
        assert not any(selected(globs, s["urn"]) for s in ev.project_states(other).values()), other.id
    shared = [*ev.shared_states().values(), *ev.provider_states().values(), ev.stack_state({})]
    assert not any(selected(globs, s["urn"]) for s in shared)
    assert not selected(globs, ev.urn(COMPONENT_TYPE, "project-12", stack="prod"))  # another stack's


def test_known_ids_read_role_names_and_skipped_entries():
    assert onboarding.known_ids(OUTPUTS, "demo") == {1, 3}
    with pytest.raises(onboarding.OnboardingError, match="skipped entry"):
        onboarding.known_ids({"roleNames": {}, "skipped": [{"path": "x"}]}, "demo")


def test_the_program_of_a_targeted_run_is_told_which_projects_it_may_record(project, tmp_path, monkeypatch):
    """Pulumi rewrites the stack's outputs even in a targeted run: the program exports outputs for the targeted
    projects alone (FLEET_NEW_ONLY), so one created during the run stays new for the next --new-only run."""
    events = creating(NEWER)
    with shop((4, "shop/new-thing", {})) as double:
        stack_file(project, double)
        root = pulumi(tmp_path, monkeypatch, {"outputs": {"value": OUTPUTS}, "preview": {"events": events},
                                              "up": {"events": events}})
        assert up_new_only("--yes") == 0
    runs = [c for c in fake_pulumi.calls(root) if c["args"][0] in ("preview", "up")]
    assert [c["args"][0] for c in runs] == ["preview", "up"]
    assert all(c["env"].get("FLEET_NEW_ONLY") == "4" for c in runs), runs


def test_a_targeted_run_exports_the_previous_outputs_plus_the_targeted_projects_only():
    from fleet.onboarding import OnboardingError, new_only_ids, outputs_of_targeted_run
    previous = {"roleNames": {"1": "gitlab-a"}, "roles": {"g/a": "arn:aws:iam::1:role/gitlab-a"},
                "policies": {"1": {"attached": []}}, "subClaims": {}, "skipped": [{"id": 5}], "counts": {"roles": 1},
                "providerArn": "arn:p"}
    current = {"roleNames": {"1": "gitlab-a2", "7": "gitlab-new", "9": "gitlab-raced"},  # 9: listed, not targeted
               "roles": {"g/a-renamed": "arn:aws:iam::1:role/gitlab-a2", "g/new": "arn:new", "g/raced": "unknown"},
               "policies": {"1": {"attached": ["x"]}, "7": {"attached": []}, "9": {"attached": []}},
               "subClaims": {"7": {"components": ["project_id"]}}, "skipped": [], "counts": {"roles": 3},
               "providerArn": "arn:p"}
    out = outputs_of_targeted_run(previous, current, {1: "g/a-renamed", 7: "g/new", 9: "g/raced"}, [7])
    assert out["roleNames"] == {"1": "gitlab-a", "7": "gitlab-new"}  # 1's pending rename and 9 wait for a full up
    assert out["roles"] == {"g/a": "arn:aws:iam::1:role/gitlab-a", "g/new": "arn:new"}
    assert out["policies"] == {"1": {"attached": []}, "7": {"attached": []}}
    assert out["subClaims"] == {"7": {"components": ["project_id"]}}
    assert out["skipped"] == [{"id": 5}] and out["counts"] == {"roles": 1} and out["providerArn"] == "arn:p"
    assert new_only_ids({}) is None and new_only_ids({"FLEET_NEW_ONLY": "7,12"}) == {7, 12}
    with pytest.raises(OnboardingError, match="FLEET_NEW_ONLY is \"7;12\": expected project ids separated by commas"):
        new_only_ids({"FLEET_NEW_ONLY": "7;12"})
