"""The Automation API code path up to the CLI: the SDK really spawns a stand-in `pulumi` (tests/fake_pulumi.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pulumi import automation as auto
from pulumi.automation.events import OpType

from fleet.engine import PULUMI_VERSION, Engine, EngineError, StackLockedError, pulumi_command
from tests import fake_pulumi

ROOT = Path(__file__).resolve().parent.parent
URN = "urn:pulumi:dev::gitlab-aws-oidc-fleet::gitlab-aws-oidc-fleet:index:ProjectAccess$aws:iam/role:Role::project-1-role"
SUMMARY = {"sequence": 9, "timestamp": 9, "summaryEvent": {"maybeCorrupt": False, "durationSeconds": 1,
                                                           "resourceChanges": {"create": 1}, "policyPacks": {}}}
CREATE = {"sequence": 2, "timestamp": 2, "resourcePreEvent": {"metadata": {
    "op": "create", "urn": URN, "type": "aws:iam/role:Role", "provider": "", "new": {
        "type": "aws:iam/role:Role", "urn": URN, "id": "", "parent": "", "provider": "", "inputs": {"name": "gitlab-g-a"},
        "outputs": {}}}}}
LOCKED = ("error: the stack is currently locked by 1 lock(s). Either wait for the other process(es) to end or delete the "
          "lock file with `pulumi cancel`.\n  s3://fleet-state/.pulumi/locks/organization/gitlab-aws-oidc-fleet/dev/"
          "3f1c.json: created by runner@ci-7 (pid 41) at 2026-11-23T10:00:00Z\n")


def engine(tmp_path: Path, scenario: dict, **kwargs) -> tuple[Engine, Path]:
    root = fake_pulumi.install(tmp_path, scenario)
    return Engine(ROOT, "dev", command=auto.PulumiCommand(root=str(root), skip_version_check=True), **kwargs), root


def test_preview_hands_back_the_engines_own_events_and_runs_a_refreshing_diff(tmp_path):
    e, root = engine(tmp_path, {"preview": {"events": [CREATE, SUMMARY]}})
    run = e.preview()
    assert [ev.resource_pre_event.metadata.op for ev in run.events if ev.resource_pre_event] == [OpType.CREATE]
    assert run.events[-1].summary_event is not None and not run.changes_unexpected
    [select, preview] = fake_pulumi.calls(root)[1:]
    assert select["args"][:3] == ["stack", "select", "--stack"] and select["cwd"] == str(ROOT)
    assert {"--diff", "--refresh"} <= set(preview["args"]) and preview["args"][-2:] == ["--stack", "dev"]


def test_drift_reads_a_refresh_preview_and_a_preview_that_expects_no_changes(tmp_path):
    e, root = engine(tmp_path, {"refresh": {"events": [SUMMARY]},
                                "preview": {"events": [CREATE, SUMMARY], "exit": 7,
                                            "stderr": "error: no changes were expected but changes were proposed\n"}})
    assert e.refresh_preview().events
    run = e.preview(expect_no_changes=True)
    assert run.changes_unexpected and run.events
    refresh, preview = fake_pulumi.calls(root)[2:]
    assert refresh["args"][:2] == ["refresh", "--preview-only"] and "--expect-no-changes" in preview["args"]


def test_a_locked_stack_names_the_holder_and_says_what_to_do(tmp_path):
    e, _ = engine(tmp_path, {"preview": {"exit": 255, "stderr": LOCKED}})
    with pytest.raises(StackLockedError) as err:
        e.preview()
    message = str(err.value)
    assert "stack dev is locked by another run" in message and "created by runner@ci-7 (pid 41)" in message
    assert "pulumi cancel --stack dev" in message and "Nothing was changed" in message


def test_a_stack_missing_from_the_backend_says_how_to_create_it(tmp_path, monkeypatch):
    monkeypatch.setenv("PULUMI_BACKEND_URL", "s3://fleet-state")
    with pytest.raises(EngineError, match=r"stack dev does not exist in s3://fleet-state: create it once with `pulumi stack init dev`"):
        engine(tmp_path, {"select": {"exit": 255, "stderr": "error: no stack named 'dev' found\n"}})


def test_a_failed_update_keeps_the_engines_error_lines(tmp_path):
    e, _ = engine(tmp_path, {"up": {"exit": 255, "stdout": "Updating (dev)\n",
                                    "stderr": "error: update failed\nerror: AccessDenied: iam:CreateRole\n"}})
    with pytest.raises(EngineError, match="pulumi failed while updating stack dev: error: update failed; error: AccessDenied"):
        e.up()


def test_up_refreshes_and_passes_the_guard_to_the_program(tmp_path):
    e, root = engine(tmp_path, {"up": {"events": [SUMMARY]}, "outputs": {"value": {}}}, env={"FLEET_GUARD_MAX_DELETES": "2"})
    e.up()
    up = next(c for c in fake_pulumi.calls(root) if c["args"][0] == "up")
    assert {"--yes", "--skip-preview", "--refresh"} <= set(up["args"])
    assert up["env"] == {"FLEET_GUARD_MAX_DELETES": "2"}


def test_a_missing_cli_is_one_sentence_with_the_install_hint():
    with pytest.raises(EngineError) as err:
        pulumi_command(which=lambda _: None)
    message = str(err.value)
    assert message.count(". ") == 0 and PULUMI_VERSION in message and "https://get.pulumi.com" in message


def test_the_command_line_says_so_when_pulumi_is_missing(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PATH"} | {"PATH": str(tmp_path)}
    result = subprocess.run([sys.executable, "-m", "fleet", "preview", "--stack", "demo"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1, result.stderr
    assert result.stderr.strip().splitlines() == [
        f"error: the Pulumi CLI (pulumi) is not installed or not on PATH: install version {PULUMI_VERSION} with "
        f"`curl -fsSL https://get.pulumi.com | sh -s -- --version {PULUMI_VERSION}` and add ~/.pulumi/bin to PATH."]


def test_a_directory_without_pulumi_yaml_is_refused(tmp_path):
    root = fake_pulumi.install(tmp_path, {})
    with pytest.raises(EngineError, match="holds no Pulumi.yaml"):
        Engine(tmp_path, "dev", command=auto.PulumiCommand(root=str(root), skip_version_check=True))


def test_targets_reach_preview_and_up_and_outputs_and_config_are_read(tmp_path):
    urns = ["urn:pulumi:dev::gitlab-aws-oidc-fleet::gitlab-aws-oidc-fleet:index:ProjectAccess**::project-7",
            "urn:pulumi:dev::gitlab-aws-oidc-fleet::gitlab-aws-oidc-fleet:index:ProjectAccess$**::project-7-*"]
    e, root = engine(tmp_path, {"preview": {"events": [SUMMARY]}, "up": {"events": [SUMMARY]},
                                "outputs": {"value": {"roleNames": {"7": "gitlab-g-a"}}},
                                "config": {"value": {"gitlab:token": "glpat-x", "aws:region": "eu-west-1"}}})
    e.preview(target=urns)
    e.up(target=urns)
    e.preview()
    previews = [c["args"] for c in fake_pulumi.calls(root) if c["args"][0] == "preview"]
    [up] = [c["args"] for c in fake_pulumi.calls(root) if c["args"][0] == "up"]
    for args in (previews[0], up):
        assert [args[i + 1] for i, a in enumerate(args) if a == "--target"] == urns
    assert "--target" not in previews[1]
    assert e.outputs() == {"roleNames": {"7": "gitlab-g-a"}}
    assert e.config_value("gitlab:token") == "glpat-x" and e.config_value("gitlab:baseUrl") is None
    assert e.project_name == "gitlab-aws-oidc-fleet"
