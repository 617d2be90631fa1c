"""Engine events → the typed model: one change per resource, classified, secrets redacted, the stack's outputs read."""

from __future__ import annotations

import json
import random

from pulumi.automation.events import EngineEvent

from fleet.changes import (
    SECRET,
    UNKNOWN,
    Changes,
    OpCounts,
    ProjectEntry,
    SkippedProject,
    classify,
    collect,
    describe_sub,
    redact,
    summarize,
    trust_conditions,
)
from tests import engine_events as ev


def preview() -> Changes:
    return collect(ev.parse(ev.preview_events()))


def test_builders_emit_what_the_sdk_parses(tmp_path):
    events = ev.preview_events()
    path = ev.write_jsonl(events, tmp_path / "events.jsonl")
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == len(events)
    parsed = [EngineEvent.from_json(json.loads(line)) for line in lines]
    pre = [e.resource_pre_event for e in parsed if e.resource_pre_event is not None]
    assert {p.metadata.op.value for p in pre} >= {"same", "create", "update", "delete", "replace",
                                                    "create-replacement", "delete-replaced"}
    assert all(p.metadata.urn.startswith("urn:pulumi:dev::gitlab-aws-oidc-fleet::") for p in pre)
    assert any(e.summary_event is not None and e.summary_event.resource_changes["create"] == 8 for e in parsed)
    assert any(e.cancel_event is not None for e in parsed)
    assert [e.sequence for e in parsed] == sorted(e.sequence for e in parsed)


def test_one_change_per_resource_with_the_engines_op_and_replacements_folded():
    changes = preview()
    urns = [c.urn for c in changes]
    assert len(urns) == len(set(urns))
    named = {c.name: c for c in changes}
    assert named["project-4-role"].op == "replace"  # create-replacement + replace + delete-replaced
    assert named["project-4-role"].role_name == "gitlab-shop-new-name"
    assert named["project-4-role"].old is not None and named["project-4-role"].old.inputs["name"] == "gitlab-shop-old-name"
    assert named["project-4-role"].replace_keys == ("name",)
    assert named["project-2"].op == "create" and named["project-2-role"].op == "create"
    assert named["project-3-role"].op == "update" and "assumeRolePolicy" in named["project-3-role"].diffs
    assert named["project-3-policy-s3-artifacts"].op == "create"
    assert named["project-5-role"].op == "delete" and named["project-5-role"].new is None
    assert named["project-1-role"].op == "same" and not named["project-1-role"].changed
    assert named["policy-s3-read"].op == "update"


def test_resources_are_classified_by_type_and_logical_name():
    changes = preview()
    named = {c.name: c for c in changes}
    expect = {
        "project-2": ("project", 2, None), "project-2-role": ("role", 2, None),
        "project-2-attach-s3-read": ("attachment", 2, "s3-read"),
        "project-3-policy-s3-artifacts": ("inline-policy", 3, "s3-artifacts"),
        "project-2-inline-exclusive": ("inline-exclusive", 2, None),
        "project-2-attachments-exclusive": ("attachments-exclusive", 2, None),
        "project-2-ROLE_ARN": ("variable", 2, "ROLE_ARN"),
        "project-2-GITLAB_AWS_ACCOUNT_ID": ("variable", 2, "GITLAB_AWS_ACCOUNT_ID"),
        "policy-s3-read": ("managed-policy", None, "s3-read"),
        "gitlab-oidc-provider": ("oidc-provider", None, None),
    }
    for name, want in expect.items():
        c = named[name]
        assert (c.kind, c.project_id, c.entry) == want, name
    kinds = {c.type: c.kind for c in changes}
    assert kinds["pulumi:providers:gitlab"] == "provider"
    assert kinds["pulumi:providers:aws"] == "provider"
    assert kinds["pulumi:pulumi:Stack"] == "stack"
    assert classify("pulumi:pulumi:StackReference", "other-stack") == ("stack-reference", None, None)
    assert classify("aws:iam/role:Role", "hand-made-role") == ("other", None, None)
    assert classify("aws:s3/bucket:Bucket", "project-1-role") == ("other", None, None)


def test_provider_inputs_never_enter_the_model_and_secrets_become_text():
    changes = preview()
    providers = [c for c in changes if c.kind == "provider"]
    assert len(providers) == 2
    for c in providers:
        for s in (c.old, c.new):
            assert s is not None and not s.inputs and not s.outputs
    dump = repr(changes)
    assert ev.TOKEN not in dump
    assert ev.SECRET_VALUE not in dump
    named = {c.name: c for c in changes}
    assert named["project-3-GITLAB_AWS_ACCOUNT_ID"].new.inputs["value"] == SECRET
    assert named["project-3-ROLE_ARN"].new.inputs["value"] == SECRET  # the plaintext form, too
    assert named["project-2-ROLE_ARN"].new.inputs["value"] == UNKNOWN


def test_redact_replaces_secrets_at_any_depth():
    value = {"a": [ev.secret("x"), {"b": ev.secret_shown("y")}], "c": "[secret]", "d": ev.COMPUTED, "e": 1}
    assert redact(value) == {"a": [SECRET, {"b": SECRET}], "c": SECRET, "d": UNKNOWN, "e": 1}


def test_summary_counts_by_op_and_reads_skipped_from_the_stack_outputs():
    s = summarize(preview())
    assert s.roles == OpCounts(created=1, updated=1, deleted=1, replaced=1)
    # inline + attachments + the stack's managed policy
    assert s.policies == OpCounts(created=2, updated=1, deleted=1, replaced=0)
    assert s.variables == OpCounts(created=2, updated=3, deleted=2, replaced=0)
    assert s.projects_new == (ProjectEntry(2, "shop/new-thing"),)
    assert s.projects_gone == (ProjectEntry(5, "shop/gone"),)
    assert s.skipped == (SkippedProject(5, "shop/gone", "archived"), SkippedProject(6, "shop/<odd>|name`", "excluded"))
    assert s.changed


def test_the_last_stack_outputs_event_wins_and_none_without_it():
    events = ev.preview_events()
    assert summarize(collect(ev.parse(events))).skipped is not None
    without = [e for e in events if not ("resOutputsEvent" in e and
                                         e["resOutputsEvent"]["metadata"]["type"] == "pulumi:pulumi:Stack")]
    assert summarize(collect(ev.parse(without))).skipped is None
    # only the step's own outputs event (the old outputs, skipped empty) then the finalized one
    stack_outputs = [e for e in events if "resOutputsEvent" in e and
                     e["resOutputsEvent"]["metadata"]["type"] == "pulumi:pulumi:Stack"]
    assert len(stack_outputs) == 2
    only_old = [e for e in events if e is not stack_outputs[-1]]
    assert summarize(collect(ev.parse(only_old))).skipped == ()


def test_unknown_skipped_output_is_none():
    events = ev.preview_events()
    last = [e for e in events if "resOutputsEvent" in e and
            e["resOutputsEvent"]["metadata"]["type"] == "pulumi:pulumi:Stack"][-1]
    last["resOutputsEvent"]["metadata"]["new"]["outputs"]["skipped"] = ev.COMPUTED
    assert summarize(collect(ev.parse(events))).skipped is None


def test_event_order_is_the_sequence_not_arrival():
    events = ev.preview_events()
    shuffled = list(events)
    random.Random(7).shuffle(shuffled)
    assert collect(ev.parse(shuffled)) == collect(ev.parse(events))


def test_refresh_results_come_from_the_outputs_event():
    named = {c.name: c for c in collect(ev.parse(ev.refresh_events()))}
    gone = named["project-3-role"]
    assert (gone.op, gone.refresh, gone.new) == ("delete", True, None)
    assert gone.old is not None and gone.old.outputs["name"] == "gitlab-shop-payments"
    edited = named["project-1-role"]
    assert (edited.op, edited.refresh) == ("update", True)
    assert "branch:dev" not in edited.old.outputs["assumeRolePolicy"]
    assert "ref:dev" in edited.new.outputs["assumeRolePolicy"]
    assert named["project-1"].op == "same" and named["project-1"].refresh
    assert named["project-2-GITLAB_AWS_ACCOUNT_ID"].new.outputs["value"] == "222222222222"


def test_a_preview_with_a_refresh_phase_reports_the_programs_step():
    refresh = [e for e in ev.refresh_events() if "summaryEvent" not in e and "cancelEvent" not in e]
    events = ev.numbered([{k: v for k, v in e.items() if k not in ("sequence", "timestamp")}
                          for e in [*refresh, *ev.preview_events()]])
    named = {c.name: c for c in collect(ev.parse(events))}
    assert (named["project-3-role"].op, named["project-3-role"].refresh) == ("update", False)
    assert (named["project-1-role"].op, named["project-1-role"].refresh) == ("same", False)


def test_guard_view_of_roles():
    named = {c.name: c for c in preview()}
    assert [named[f"project-{i}-role"].guard_op for i in (1, 2, 3, 4, 5)] == ["same", "create", "update", "replace",
                                                                             "delete"]
    assert named["project-5-role"].role_name == "gitlab-shop-gone"
    assert named["project-5-role"].project_path == "shop/gone"
    assert named["project-4"].project_path == "shop/new-name"
    assert named["project-4-ROLE_ARN"].role_name is None


def test_trust_conditions_read_both_operators_and_gitlab_subs():
    policy = json.loads(ev.trust_json(3, "shop/payments", ("branch:main", "tag:v*")))
    t = trust_conditions(json.dumps(policy))
    assert t is not None
    assert t.subs == {"project_path:shop/payments:ref_type:branch:ref:main",
                      "project_path:shop/payments:ref_type:tag:ref:v*"}
    assert t.audiences == {ev.AUDIENCE}
    assert trust_conditions(SECRET) is None and trust_conditions(UNKNOWN) is None and trust_conditions("{") is None
    assert describe_sub("project_path:a/b:ref_type:branch:ref:x${$}{y}") == ("a/b", "branch x${y}")
    assert describe_sub("project_id:42:ref_type:branch:ref:main") == (None, "project_id:42:ref_type:branch:ref:main")


def test_an_adopted_role_is_new_to_the_stack_for_the_guard():
    """Pulumi imports, then updates, an adopted role: the guard must not count it among the roles the stack holds."""
    role = ev.project_states(ev.CART)["project-1-role"]
    changed = dict(role, inputs=dict(role["inputs"], description="now the stack's"))
    events = ev.numbered([ev.pre(ev.step("import", None, role)), ev.outputs(ev.step("import", None, role)),
                          ev.pre(ev.step("update", role, changed, diffs=["description"])),
                          ev.outputs(ev.step("update", role, changed, diffs=["description"])),
                          ev.summary({"update": 1})])
    [change] = [c for c in collect(ev.parse(events)) if c.kind == "role"]
    assert change.imported and change.guard_op == "create"
