"""The merge-request note: counts, each changed project's trust/policies/variables in words, escaping, the size cap."""

from __future__ import annotations

import re
from dataclasses import replace

from fleet.changes import collect
from fleet.report import code, render_preview, text, trust_change_lines
from tests import engine_events as ev


def note(scenario: ev.Scenario | None = None, **kw: int) -> str:
    return render_preview(collect(ev.parse(ev.preview_events(scenario or ev.Scenario()))), stack="dev", **kw)


def section(md: str, path_html: str) -> str:
    """The <details> section whose summary starts with that project's path."""
    m = re.search(rf"<details><summary><code>{re.escape(path_html)}</code>.*?</details>", md, re.DOTALL)
    assert m is not None, path_html
    return m.group(0)


def test_no_changes_is_one_clear_line():
    md = render_preview(collect(ev.parse(ev.clean_preview_events())), stack="dev")
    assert md == "**No changes** in stack <code>dev</code>: every role, policy and variable matches the program.\n"


def test_summary_counts_every_kind_by_op():
    md = note()
    assert "**Roles** +1 ~1 \N{MINUS SIGN}1 \N{PLUS-MINUS SIGN}1" in md
    assert "**Policies** +2 ~1 \N{MINUS SIGN}1 \N{PLUS-MINUS SIGN}0" in md
    assert "**Variables** +2 ~3 \N{MINUS SIGN}2 \N{PLUS-MINUS SIGN}0" in md
    assert "**Projects** 1 newly found, 1 gone, 2 skipped (1 archived, 1 excluded)" in md


def test_one_collapsed_section_per_changed_project_sorted_by_path():
    md = note()
    summaries = re.findall(r"<details><summary><code>(.*?)</code>", md)
    assert summaries == ["shop/gone", "shop/new-name", "shop/new-thing", "shop/payments"]
    assert "shop/cart" not in md  # unchanged: no section
    assert md.count("<details>") == md.count("</details>") == 4


def test_trust_changes_are_said_in_refs():
    md = note()
    payments = section(md, "shop/payments")
    assert "trust: now also admits tag <code>v\\*</code>" in payments
    renamed = section(md, text("shop/new-name"))
    assert f"renamed or moved from {code('shop/old-name')}" in renamed
    assert f"role renamed: {code('gitlab-shop-old-name')} → {code('gitlab-shop-new-name')}" in renamed
    assert (f"trust: trust follows the project to {code('shop/new-name')} (was {code('shop/old-name')}), same refs"
            in renamed)


def test_policies_and_variables_by_name():
    md = note()
    assert f"inline policy {code('s3-artifacts')} added" in section(md, "shop/payments")
    new = section(md, text("shop/new-thing"))
    assert f"policy {code('s3-read')} attached" in new
    assert f"variable {code('GITLAB_AWS_ACCOUNT_ID')} created = {code(ev.ACCOUNT)}" in new
    assert f"variable {code('ROLE_ARN')} created = (known after apply)" in new
    gone = section(md, "shop/gone")
    assert f"role {code('gitlab-shop-gone')} deleted" in gone
    assert f"inline policy {code('logs')} removed" in gone
    assert f"variable {code('ROLE_ARN')} deleted" in gone
    assert "gone from the fleet" in gone


def test_stack_wide_changes_have_their_own_section():
    md = note()
    stack_wide = md[md.index("**Stack-wide**"):md.index("<details>")]
    assert f"managed policy {code('s3-read')} changes" in stack_wide


def test_secret_values_and_the_token_never_appear():
    md = note()
    assert ev.TOKEN not in md
    assert ev.SECRET_VALUE not in md
    payments = section(md, "shop/payments")
    assert f"variable {code('GITLAB_AWS_ACCOUNT_ID')} changes: value {code(ev.ACCOUNT)} → (secret)" in payments


def test_other_variables_show_no_value():
    odd = ev.Project(7, "shop/odd", "gitlab-shop-odd")
    events = ev.preview_events(ev.Scenario(same=(), created=(), renamed=(), gone=(), trust_and_policy_update=(
        (odd, replace(odd, account_value="999999999999")),)))
    # rename the variable's key to one whose value is not ours to show
    for e in events:
        for k in ("resourcePreEvent", "resOutputsEvent"):
            md_ = e.get(k, {}).get("metadata")
            if md_ and md_["urn"].endswith("project-7-GITLAB_AWS_ACCOUNT_ID"):
                md_["urn"] = md_["urn"].replace("GITLAB_AWS_ACCOUNT_ID", "DEPLOY_KEY")
    md = render_preview(collect(ev.parse(events)), stack="dev")
    assert f"variable {code('DEPLOY_KEY')} changes: changes {code('value')}" in md
    assert "999999999999" not in md


def test_values_are_escaped_for_markdown_and_html():
    weird = ev.Project(8, "we<b>ird|`grp`/@all_[x](y)", "gitlab-weird")
    md = note(ev.Scenario(same=(), created=(weird,), trust_and_policy_update=(), renamed=(), gone=(), skipped=()))
    assert "<b>" not in md
    # In <summary> (an HTML block: Markdown is not read there) the path is HTML-escaped only, so it shows as written;
    # in Markdown lines its Markdown punctuation is backslash-escaped too.
    assert "<details><summary><code>we&lt;b&gt;ird|`grp`/@all_[x](y)</code> (project 8)" in md
    markdown_lines = "\n".join(line for line in md.splitlines() if not line.startswith("<details>"))
    assert "`grp`" not in markdown_lines and "|`" not in markdown_lines
    # every value sits inside <code>, where GitLab makes no mention or reference
    outside = re.sub(r"<code>.*?</code>", "", md)
    assert "@all" not in outside and "we&lt;" not in outside


def test_stack_name_is_escaped():
    md = render_preview(collect(ev.parse(ev.clean_preview_events())), stack="a_b*c")
    assert "<code>a\\_b\\*c</code>" in md


def test_size_cap_cuts_whole_project_sections_and_says_how_many():
    changes = collect(ev.parse(ev.created_fleet_events(20_000), via_json=False))
    limit = 50_000
    md = render_preview(changes, stack="big", limit=limit)
    assert len(md) <= limit
    assert "**Roles** +20,000" in md and "20,000 newly found" in md
    shown = md.count("<details>")
    assert md.count("</details>") == shown and 0 < shown < 20_000
    m = re.search(r"The details of ([0-9,]+) more projects were left out.*the counts above include them", md)
    assert m is not None and int(m.group(1).replace(",", "")) + shown == 20_000
    tiny = render_preview(changes, stack="big", limit=300)
    assert len(tiny) <= 300


def test_the_cap_keeps_everything_when_it_fits():
    md = note()
    assert render_preview(collect(ev.parse(ev.preview_events())), stack="dev", limit=len(md)) == md
    cut = render_preview(collect(ev.parse(ev.preview_events())), stack="dev", limit=len(md) - 1)
    assert len(cut) <= len(md) - 1 and "left out" in cut


def test_a_trust_written_in_iam_cannot_inject_markdown_through_its_ref_type():
    from fleet.changes import TrustConditions
    evil = "project_path:shop/cart:ref_type:branch\n/close\n@all <img src=x> </details>:ref:main"
    old = TrustConditions(subs=frozenset({"project_path:shop/cart:ref_type:branch:ref:main"}), audiences=frozenset({"a"}))
    new = TrustConditions(subs=frozenset({"project_path:shop/cart:ref_type:branch:ref:main", evil}), audiences=frozenset({"a"}))
    text = "\n".join(trust_change_lines(old, new, project_path="shop/cart"))
    assert "\n/close" not in text and "<img" not in text and "</details>" not in text
    assert "@all" not in text.replace("<code>", "").split("</code>")[-1]  # outside <code> GitLab would mention everyone


def test_another_project_added_to_a_trust_is_never_worded_as_a_rename():
    from fleet.changes import TrustConditions
    old = TrustConditions(subs=frozenset({"project_path:shop/cart:ref_type:branch:ref:main"}), audiences=frozenset({"a"}))
    new = TrustConditions(subs=frozenset({"project_path:shop/cart:ref_type:branch:ref:main",
                                          "project_path:attacker/x:ref_type:branch:ref:main"}), audiences=frozenset({"a"}))
    [line] = trust_change_lines(old, new, project_path="shop/cart")
    assert "follows the project" not in line and line.startswith("now also admits") and "attacker/x" in line


def test_the_preview_says_when_a_projects_sub_claim_components_are_set():
    new = ev.state("pulumi-python:dynamic/fleet:SubClaimComponents", "project-1-sub-claim",
                   inputs={"projectId": 1, "components": ["project_id", "ref_type", "ref"]})
    md = render_preview(collect(ev.parse(ev.numbered([ev.pre(ev.step("create", None, new)), ev.summary({"create": 1})]))),
                        stack="dev")
    assert "sub claim components set to" in md and "project\\_id" in md
