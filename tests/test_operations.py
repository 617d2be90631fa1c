"""preview / drift / up / reconcile from the command line: the SDK spawns the stand-in `pulumi` on PATH, which replays
recorded engine events; the merge-request note and the drift issue go to the GitLab API double."""

from __future__ import annotations

import io
import os
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from fleet import cli, operations
from fleet.errors import UsageError
from tests import engine_events as ev
from tests import fake_pulumi
from tests.gitlab_double import GitLabDouble, make_note, make_user

ROOT = Path(__file__).resolve().parent.parent
NOTE_TOKEN = "glpat-fleet-notes"
FLEET_PROJECT = 7
MR = 42


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A copy of the project's Pulumi.yaml and demo stack (reconcile: auto on a second stack), as the working directory."""
    work = tmp_path / "work"
    (work / "stacks").mkdir(parents=True)
    shutil.copy(ROOT / "Pulumi.yaml", work)
    demo = yaml.safe_load((ROOT / "stacks" / "Pulumi.demo.yaml").read_text())
    (work / "stacks" / "Pulumi.demo.yaml").write_text(yaml.safe_dump(demo))
    auto_stack = dict(demo, config=dict(demo["config"], **{"fleet:reconcile": "auto"}))
    (work / "stacks" / "Pulumi.auto.yaml").write_text(yaml.safe_dump(auto_stack))
    monkeypatch.chdir(work)
    for name in [k for k in os.environ if k.startswith(("CI_", "FLEET_"))] + ["CI"]:
        monkeypatch.delenv(name, raising=False)
    return work


def pulumi(tmp_path, monkeypatch, scenario) -> Path:
    root = fake_pulumi.install(tmp_path, scenario)
    monkeypatch.setenv("PATH", f"{root / 'bin'}{os.pathsep}{os.environ['PATH']}")
    return root


def ops(root: Path) -> list[str]:
    return [c["args"][0] if c["args"][0] != "stack" else f"stack {c['args'][1]}" for c in fake_pulumi.calls(root)]


PREVIEW = ev.preview_events()
CLEAN = ev.preview_events(ev.Scenario(created=(), trust_and_policy_update=(), renamed=(), gone=(), managed_policy_changes=False))


def ci(monkeypatch, double: GitLabDouble, *, mr: bool = True) -> None:
    monkeypatch.setenv("CI", "true")
    monkeypatch.setenv("CI_API_V4_URL", f"{double.url}/api/v4")
    monkeypatch.setenv("CI_PROJECT_ID", str(FLEET_PROJECT))
    monkeypatch.setenv("FLEET_NOTE_TOKEN", NOTE_TOKEN)
    monkeypatch.setenv("CI_COMMIT_SHA", "0123456789abcdef0123456789abcdef01234567")
    monkeypatch.setenv("CI_PIPELINE_ID", "77")
    if mr:
        monkeypatch.setenv("CI_MERGE_REQUEST_IID", str(MR))


def test_preview_prints_the_report_and_keeps_one_note_per_stack(project, tmp_path, monkeypatch, capsys):
    human = make_user(5, "reviewer")
    other = make_note(1, "<!-- gitlab-aws-oidc-fleet:preview stack=demo -->\nquoted by a person", human)
    with GitLabDouble(merge_requests={FLEET_PROJECT: {MR}}, mr_notes={(FLEET_PROJECT, MR): [other]}) as double:
        ci(monkeypatch, double)
        root = pulumi(tmp_path, monkeypatch, {"preview": {"events": PREVIEW}})
        assert cli.main(["preview", "--stack", "demo", "--stacks-dir", "stacks", "--mr-note"]) == 0
        first = capsys.readouterr()
        assert cli.main(["preview", "--stack", "demo", "--stacks-dir", "stacks", "--mr-note"]) == 0
        second = capsys.readouterr()
        notes = double.mr_notes[(FLEET_PROJECT, MR)]
    assert "shop/new-thing" in first.out and "note for stack demo created" in first.err
    assert first.out.startswith("_Preview of commit `0123456789ab`, pipeline #77._")
    assert "note for stack demo unchanged" in second.err  # the same report: the note is left as it is
    mine = [n for n in notes if n["author"]["id"] != human["id"]]
    assert len(mine) == 1 and "shop/new-thing" in mine[0]["body"]
    assert notes[0] == other  # a person's note, even one quoting the marker, is left alone
    for secret in (ev.TOKEN, ev.SECRET_VALUE):
        assert secret not in first.out + first.err + mine[0]["body"]
    assert ops(root).count("preview") == 2


def test_mr_note_without_its_token_fails_before_pulumi_runs(project, tmp_path, monkeypatch, capsys):
    with GitLabDouble() as double:
        ci(monkeypatch, double)
        monkeypatch.delenv("FLEET_NOTE_TOKEN")
        root = pulumi(tmp_path, monkeypatch, {"preview": {"events": PREVIEW}})
        assert cli.main(["preview", "--stack", "demo", "--stacks-dir", "stacks", "--mr-note"]) == 78
    err = capsys.readouterr().err
    assert "FLEET_NOTE_TOKEN" in err and "CI_JOB_TOKEN" in err
    assert "preview" not in ops(root)


def test_a_bad_stack_file_is_refused_before_pulumi_runs(project, tmp_path, monkeypatch, capsys):
    (project / "stacks" / "Pulumi.demo.yaml").write_text("config:\n  fleet:accountId: '12'\n")
    root = pulumi(tmp_path, monkeypatch, {})
    assert cli.main(["drift", "--stack", "demo", "--stacks-dir", "stacks"]) == 78
    assert "edit stacks/Pulumi.demo.yaml: fleet:accountId" in capsys.readouterr().err and fake_pulumi.calls(root) == []


def test_drift_exits_2_and_opens_then_closes_the_stacks_issue(project, tmp_path, monkeypatch, capsys):
    drifted = {"refresh": {"events": ev.refresh_events()},
               "preview": {"events": PREVIEW, "exit": 7,
                           "stderr": "error: no changes were expected but changes were proposed\n"}}
    with GitLabDouble(issues={FLEET_PROJECT: []}) as double:
        ci(monkeypatch, double, mr=False)
        root = pulumi(tmp_path, monkeypatch, drifted)
        assert cli.main(["drift", "--stack", "demo", "--stacks-dir", "stacks", "--issue"]) == 2
        report = capsys.readouterr().out
        [issue] = double.issues[FLEET_PROJECT]
        assert issue["state"] == "opened" and "shop/cart" in issue["description"]
        assert ops(root)[-2:] == ["refresh", "preview"]
        shutil.rmtree(root)
        pulumi(tmp_path, monkeypatch, {"refresh": {"events": CLEAN}, "preview": {"events": CLEAN}})
        assert cli.main(["drift", "--stack", "demo", "--stacks-dir", "stacks", "--issue"]) == 0
        [issue] = double.issues[FLEET_PROJECT]
    assert issue["state"] == "closed"
    assert "shop/cart" in report and ev.TOKEN not in report and ev.SECRET_VALUE not in report


def _up_context(project: Path, answer: str = "yes", interactive: bool = True) -> tuple[operations.Context, io.StringIO, list[str]]:
    asked: list[str] = []

    def ask(question: str) -> str:
        asked.append(question)
        return answer

    out = io.StringIO()
    return operations.Context(project_dir=project, env={}, out=out, interactive=interactive, ask=ask), out, asked


def test_up_refuses_past_the_guard_before_anything_changes(project, tmp_path, monkeypatch, capsys):
    root = pulumi(tmp_path, monkeypatch, {"preview": {"events": PREVIEW}, "up": {"events": PREVIEW}})
    assert cli.main(["up", "--stack", "demo", "--stacks-dir", "stacks", "--yes"]) == 1
    err = capsys.readouterr().err
    # 4 roles held: 10% allows none; the gone project's role and the renamed one are named
    assert "would delete or replace 2 roles" in err and "delete gitlab-shop-gone (shop/gone)" in err
    assert "replace gitlab-shop-new-name (shop/new-name)" in err and "--max-deletes 2" in err
    assert "up" not in ops(root)


def test_up_with_an_allowance_updates_and_tells_the_program(project, tmp_path, monkeypatch, capsys):
    root = pulumi(tmp_path, monkeypatch, {"preview": {"events": PREVIEW}, "up": {"events": PREVIEW}, "outputs": {"value": {}}})
    assert cli.main(["up", "--stack", "demo", "--stacks-dir", "stacks", "--yes", "--max-deletes", "2"]) == 0
    up = [c for c in fake_pulumi.calls(root) if c["args"][0] == "up"]
    assert len(up) == 1 and up[0]["env"] == {"FLEET_GUARD_MAX_DELETES": "2"}
    assert "stack demo updated" in capsys.readouterr().err


def test_up_in_ci_needs_yes_and_asks_on_a_terminal(project, tmp_path, monkeypatch, capsys):
    root = pulumi(tmp_path, monkeypatch, {"preview": {"events": CLEAN}, "up": {"events": CLEAN}, "outputs": {"value": {}}})
    monkeypatch.setenv("CI", "true")
    assert cli.main(["up", "--stack", "demo", "--stacks-dir", "stacks"]) == 64
    assert "pass --yes" in capsys.readouterr().err and fake_pulumi.calls(root) == []
    config = cli.stack_config(cli.read_stack(project / "stacks", "demo"))
    ctx, out, asked = _up_context(project, answer="no")
    assert operations.up(ctx, config, "demo", max_deletes=None, yes=False) == 1
    assert asked and "up" not in ops(root) and "not confirmed" in capsys.readouterr().err
    ctx, out, asked = _up_context(project, answer="yes")
    assert operations.up(ctx, config, "demo", max_deletes=None, yes=False) == 0
    assert ops(root).count("up") == 1 and asked == ["Apply these changes to stack demo? Type yes to continue: "]


def test_reconcile_reports_by_default_and_runs_up_when_auto(project, tmp_path, monkeypatch, capsys):
    small = ev.preview_events(replace(ev.Scenario(), renamed=(), gone=()))  # drift without deletes
    drifted = {"refresh": {"events": ev.refresh_events()},
               "preview": [{"events": small, "exit": 7, "stderr": "error: no changes were expected but changes were proposed\n"},
                           {"events": small}],
               "up": {"events": small}, "outputs": {"value": {}}}
    root = pulumi(tmp_path, monkeypatch, drifted)
    assert cli.main(["reconcile", "--stack", "demo", "--stacks-dir", "stacks"]) == 2
    assert "fleet:reconcile is report, so nothing was changed" in capsys.readouterr().err and "up" not in ops(root)
    shutil.rmtree(root)
    root = pulumi(tmp_path, monkeypatch, drifted)
    assert cli.main(["reconcile", "--stack", "auto", "--stacks-dir", "stacks"]) == 0
    assert [op for op in ops(root) if op in ("refresh", "preview", "up")] == ["refresh", "preview", "preview", "up"]
    up = next(c for c in fake_pulumi.calls(root) if c["args"][0] == "up")
    assert up["env"] == {"FLEET_GUARD_MAX_DELETES": "0"}  # the same guard: fleet:guard and 10% of the roles


PROPOSED = "error: no changes were expected but changes were proposed\n"


@pytest.mark.parametrize("failure", [
    # the program failed; GitLab-controlled text in its error quotes the CLI's phrase
    {"events": CLEAN[:-2] + [ev.diagnostic("collision: description 'error: no changes were expected but changes "
                                           "were proposed'", severity="error")], "exit": 255,
     "stderr": "error: preview failed\n" + PROPOSED},
    # the phrase only on stdout (the diff), and the preview never completed
    {"events": CLEAN[:3], "exit": 255, "stdout": PROPOSED, "stderr": "error: an unhandled error occurred\n"},
])
def test_drift_is_an_error_not_clean_when_the_preview_failed(project, tmp_path, monkeypatch, capsys, failure):
    from tests.gitlab_double import make_issue
    bot = make_user(9001, "project_7_bot")
    open_issue = make_issue(FLEET_PROJECT, 1, "Drift in stack demo",
                            "<!-- gitlab-aws-oidc-fleet:drift stack=demo -->\nold drift", bot)
    with GitLabDouble(issues={FLEET_PROJECT: [open_issue]}, users={NOTE_TOKEN: bot}) as double:
        ci(monkeypatch, double, mr=False)
        pulumi(tmp_path, monkeypatch, {"refresh": {"events": CLEAN}, "preview": failure})
        assert cli.main(["drift", "--stack", "demo", "--stacks-dir", "stacks", "--issue"]) == 1
        [issue] = double.issues[FLEET_PROJECT]
    assert issue["state"] == "opened" and "pulumi failed while previewing stack demo" in capsys.readouterr().err


def test_drift_found_when_pulumi_proposes_changes_its_events_do_not_show(project, tmp_path, monkeypatch, capsys):
    pulumi(tmp_path, monkeypatch, {"refresh": {"events": CLEAN}, "preview": {"events": CLEAN, "exit": 7, "stderr": PROPOSED}})
    assert cli.main(["drift", "--stack", "demo", "--stacks-dir", "stacks"]) == 2
    assert "proposes changes that its events did not describe" in capsys.readouterr().out


def test_up_refuses_to_delete_the_oidc_provider_every_role_trusts(project, tmp_path, monkeypatch, capsys):
    provider = ev.shared_states()["gitlab-oidc-provider"]
    gone = ev.numbered([e for e in CLEAN if "summaryEvent" not in e and "cancelEvent" not in e]
                       + [ev.pre(ev.step("delete", provider, None)), ev.summary({"delete": 1})])
    root = pulumi(tmp_path, monkeypatch, {"preview": {"events": gone}, "up": {"events": gone}})
    assert cli.main(["up", "--stack", "demo", "--stacks-dir", "stacks", "--yes"]) == 1
    assert "would delete the account's GitLab OIDC provider" in capsys.readouterr().err and "up" not in ops(root)


def test_full_commands_refuse_an_environment_that_holds_fleet_new_only(project):
    """FLEET_NEW_ONLY makes the program record outputs for the listed projects alone: only `up --new-only` sets it."""
    ctx = operations.Context(project_dir=project, env={"FLEET_NEW_ONLY": "4"}, out=io.StringIO(), interactive=False)
    for command in (lambda: operations.preview(ctx, "demo", mr_note=False), lambda: operations.drift(ctx, "demo", issue=False)):
        with pytest.raises(UsageError, match="FLEET_NEW_ONLY is set in the environment: it is for the program of `up --new-only`"):
            command()
