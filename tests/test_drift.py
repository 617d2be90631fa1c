"""Drift sorted into IAM edited outside Pulumi, GitLab variables edited outside, and fleet membership changed."""

from __future__ import annotations

import dataclasses
import re

from fleet.changes import collect
from fleet.drift import Drift, classify, render_drift
from fleet.report import code
from tests import engine_events as ev


def found() -> Drift:
    return classify(collect(ev.parse(ev.refresh_events())), collect(ev.parse(ev.preview_events())))


def item(items, path: str):
    matches = [i for i in items if i.project_path == path]
    assert len(matches) == 1, (path, items)
    return matches[0]


def test_clean_when_nothing_drifted():
    drift = classify(collect(ev.parse(ev.clean_refresh_events())), collect(ev.parse(ev.clean_preview_events())))
    assert drift.clean
    assert drift.counts == {"iam": 0, "gitlab": 0, "membership": 0}
    assert render_drift(drift, stack="dev") == (
        "**No drift** in stack <code>dev</code>: IAM and the GitLab variables match the stack's state, and the "
        "group's projects match the fleet.\n")


def test_counts_by_kind():
    drift = found()
    assert not drift.clean
    assert drift.counts == {"iam": 3, "gitlab": 2, "membership": 4}  # + changes of the program not undoing an edit


def test_iam_edited_outside_pulumi_names_the_project_and_the_change():
    drift = found()
    cart = item(drift.iam, "shop/cart")
    assert cart.project_id == 1
    assert f"trust policy edited: now also admits branch {code('dev')}" in cart.lines
    assert f"inline policy added outside Pulumi: {code('hand-made')}" in cart.lines
    assert f"policy attached outside Pulumi: {code('arn:aws:iam::aws:policy/AdministratorAccess')}" in cart.lines
    assert f"tag {code('owner')} changed from (none) to {code('@someone')}" in cart.lines
    payments = item(drift.iam, "shop/payments")
    assert payments.lines == (f"role {code('gitlab-shop-payments')} was deleted outside Pulumi; the next `up` creates "
                              "it again",)
    stack_wide = [i for i in drift.iam if i.project_id is None]
    assert [(i.subject, i.lines) for i in stack_wide] == [
        (f"managed policy {code('s3-read')}", ("its document was edited outside Pulumi",))]


def test_gitlab_variables_edited_or_deleted_outside():
    drift = found()
    new = item(drift.gitlab, "shop/new-thing")
    assert new.lines == (f"variable {code('GITLAB_AWS_ACCOUNT_ID')} was edited in GitLab: value {code(ev.ACCOUNT)} → "
                         f"{code('222222222222')}; {code('protected')} {code('false')} → {code('true')}",)
    payments = item(drift.gitlab, "shop/payments")
    assert payments.lines == (f"variable {code('ROLE_ARN')} was deleted in GitLab; the next `up` sets it again",)


def test_membership_from_the_preview():
    drift = found()
    assert item(drift.membership, "shop/new-thing").lines == (
        "new in the group: the next `up` gives it a role and its variables",)
    assert item(drift.membership, "shop/gone").lines == (
        "left the fleet because it was archived: the next `up` deletes its role and variables",)
    moved = item(drift.membership, "shop/new-name")
    assert moved.lines == (f"renamed or moved from {code('shop/old-name')} to {code('shop/new-name')}",
                           f"its role is renamed from {code('gitlab-shop-old-name')} to {code('gitlab-shop-new-name')} "
                           "(replaced)")


def test_a_project_gone_without_a_skip_reason_says_the_group_no_longer_lists_it():
    scenario = ev.Scenario(skipped=())
    drift = classify(collect(ev.parse(ev.clean_refresh_events())), collect(ev.parse(ev.preview_events(scenario))))
    assert item(drift.membership, "shop/gone").lines == (
        "left the fleet because the group no longer lists it (deleted, moved out or made inaccessible): the next "
        "`up` deletes its role and variables",)
    assert not drift.iam and not drift.gitlab


def test_a_secret_variable_value_edited_outside_is_not_shown():
    events = ev.refresh_events()
    for e in events:
        md = e.get("resOutputsEvent", {}).get("metadata")
        if md and md["urn"].endswith("project-2-GITLAB_AWS_ACCOUNT_ID") and md.get("new"):
            md["new"]["outputs"]["value"] = ev.secret_shown(ev.SECRET_VALUE)
    drift = classify(collect(ev.parse(events)), collect(ev.parse(ev.clean_preview_events())))
    text = render_drift(drift, stack="dev")
    assert ev.SECRET_VALUE not in text and ev.TOKEN not in text
    assert f"value {code(ev.ACCOUNT)} → (secret)" in text


def test_render_lists_each_kind_under_its_heading():
    text = render_drift(found(), stack="dev")
    assert text.startswith("### Drift in stack <code>dev</code>\n")
    assert ("**IAM edited outside Pulumi**: 3 items · **GitLab variables edited outside Pulumi**: 2 items · "
            "**Fleet membership changed**: 4 items") in text
    headings = re.findall(r"^#### (.*)$", text, re.MULTILINE)
    assert headings == ["IAM edited outside Pulumi", "GitLab variables edited outside Pulumi", "Fleet membership changed"]
    assert f"- {code('shop/payments')} (project 3): role {code('gitlab-shop-payments')} was deleted" in text
    assert ev.TOKEN not in text


def test_render_is_capped_by_whole_items():
    text = render_drift(found(), stack="dev")
    cut = render_drift(found(), stack="dev", limit=len(text) - 1)
    assert len(cut) <= len(text) - 1
    m = re.search(r"_([0-9]+) more items? left out to keep this text within GitLab's size limit; the counts above "
                  r"include them\._", cut)
    assert m is not None
    assert cut.count("\n- ") + int(m.group(1)) == text.count("\n- ")
    assert render_drift(found(), stack="dev", limit=len(text)) == text
    assert len(render_drift(found(), stack="dev", limit=100)) <= 100


def test_paths_in_drift_are_escaped():
    odd = ev.Project(9, "grp/<i>x</i>|`y`@all", "gitlab-odd")
    events = ev.refresh_events(projects=(odd,))
    for e in events:
        md = e.get("resOutputsEvent", {}).get("metadata")
        if md and md["urn"].endswith("project-9-role"):
            md["op"] = "delete"
            md.pop("new", None)
    text = render_drift(classify(collect(ev.parse(events)), collect(ev.parse(ev.clean_preview_events()))), stack="dev")
    outside = re.sub(r"<code>.*?</code>", "", text)
    assert "<i>" not in text and "@all" not in outside and "`y`" not in text
    assert "(project 9)" in text


def test_a_change_the_preview_proposes_is_never_reported_clean():
    """A clean refresh, but the program would change a role's trust (e.g. the project's default branch was renamed in
    GitLab): Pulumi proposes a change, so drift is found and says what the next up would do."""
    only_trust = ev.Scenario(created=(), renamed=(), gone=(), managed_policy_changes=False)
    drift = classify(collect(ev.parse(ev.clean_refresh_events())), collect(ev.parse(ev.preview_events(only_trust))))
    assert not drift.clean
    payments = item(drift.membership, "shop/payments")
    assert any("would update its role" in line and code("assumeRolePolicy") in line for line in payments.lines)


def test_a_trust_policy_widened_in_iam_is_drift_even_with_the_same_subjects():
    """Another statement letting a foreign account assume the role keeps the GitLab sub/aud conditions as they were."""
    import copy
    import json as json_
    refresh, md, document, widened = _cart_role_refreshed()
    md.new = copy.deepcopy(md.old)
    md.new.outputs = dict(md.old.outputs, assumeRolePolicy=json_.dumps(widened))
    md.op = type(md.op)("update")
    drift = classify(collect(refresh), [])
    cart = item(drift.iam, "shop/cart")
    assert any("trust policy edited outside Pulumi beyond its GitLab subjects" in line for line in cart.lines)
    # the same document with its keys in another order is no drift
    md.new.outputs = dict(md.old.outputs, assumeRolePolicy=json_.dumps(document, sort_keys=True, indent=2))
    assert classify(collect(refresh), []).clean


def test_a_hand_typed_role_arn_value_is_never_copied_into_the_issue():
    """ROLE_ARN edited in GitLab to anything (a pasted secret, say) or masked: the issue says it changed, not to what."""
    from fleet.report import variable_value
    assert variable_value("ROLE_ARN", "arn:aws:iam::111111111111:role/gitlab-shop-cart") == code(
        "arn:aws:iam::111111111111:role/gitlab-shop-cart")
    assert variable_value("ROLE_ARN", "AKIAEXAMPLE/secret-key-pasted-here") == "(not shown)"
    assert variable_value("GITLAB_AWS_ACCOUNT_ID", "111111111111", masked=True) == "(not shown)"
    assert variable_value("GITLAB_AWS_ACCOUNT_ID", "111111111111") == code("111111111111")
    assert variable_value("OTHER", "111111111111") == "(not shown)"


def test_an_edit_by_hand_is_reported_once_under_its_cause():
    """The drift preview refreshes first and proposes to undo what the refresh found: that is the same edit."""
    refreshed = collect(ev.parse(ev.refresh_events()))
    undo = [c for c in refreshed if c.op in ("update", "delete")]
    assert undo
    drift = classify(refreshed, [dataclasses.replace(c, refresh=False, op="update" if c.op == "update" else "create")
                                 for c in undo])
    assert drift.counts["membership"] == 0 and drift.counts["iam"] == 3


def test_a_widened_trust_is_named_even_when_its_subjects_change_too():
    import copy
    import json as json_
    refresh, md, _, widened = _cart_role_refreshed()
    statement = widened["Statement"][0]
    for operator in statement["Condition"].values():
        for key, values in operator.items():
            if key.endswith(":sub"):
                operator[key] = [*(values if isinstance(values, list) else [values]),
                                 "project_path:shop/cart:ref_type:branch:ref:dev"]
    md.new = copy.deepcopy(md.old)
    md.new.outputs = dict(md.old.outputs, assumeRolePolicy=json_.dumps(widened))
    md.op = type(md.op)("update")
    lines = item(classify(collect(refresh), []).iam, "shop/cart").lines
    assert any("now also admits" in line for line in lines)
    assert any("beyond its GitLab subjects" in line for line in lines)


SUB_CLAIM = "pulumi-python:dynamic/fleet:SubClaimComponents"


def test_sub_claim_components_edited_in_gitlab_are_gitlab_drift():
    """With protectedRefsOnly on self-managed, someone drops ref_protected from a project's components by hand."""
    ours = ["project_id", "ref_type", "ref", "ref_protected"]
    old = ev.state(SUB_CLAIM, "project-1-sub-claim", id="1", parents=[ev.urn("gitlab-aws-oidc-fleet:index:ProjectAccess",
                                                                              "project-1")][:0],
                   inputs={"projectId": 1, "components": ours, "original": ["project_path", "ref_type", "ref"]})
    now = dict(old, outputs=dict(old["outputs"], components=["project_id", "ref_type", "ref"]))
    events = ev.numbered([ev.pre(ev.step("refresh", old, old)), ev.outputs(ev.step("update", old, now)),
                          ev.summary({"update": 1})])
    drift = classify(collect(ev.parse(events)), [])
    [item_] = drift.gitlab
    assert item_.project_id == 1 and "sub claim components were edited in GitLab" in item_.lines[0]
    assert "ref\\_protected" in item_.lines[0]


def _cart_role_refreshed():
    """A clean refresh, and the refresh step of shop/cart's role with its trust policy as a document to edit."""
    import copy
    import json as json_
    refresh = ev.parse(ev.clean_refresh_events())
    role = next(e for e in refresh if e.res_outputs_event and e.res_outputs_event.metadata.urn.endswith("project-1-role"))
    md = role.res_outputs_event.metadata
    document = json_.loads(md.old.outputs["assumeRolePolicy"])
    widened = copy.deepcopy(document)
    widened["Statement"].append({"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::999999999999:root"},
                                 "Action": "sts:AssumeRole"})
    return refresh, md, document, widened
