"""The plan table as a person reads it: fitted to the terminal, names whole, values printed literally."""

from __future__ import annotations

import dataclasses
import io

import pytest

from fleet.inventory import load_inventory
from fleet.planner import build_plan
from fleet.policy_library import load_library
from fleet.render import render_table, summary
from fleet.stacks import DEFAULT_STACKS_DIR, read_stack, stack_config

LONG = "shop/platform/tools/an-extraordinarily-long-project-name-for-the-terraform-state-eu"


@pytest.fixture(scope="module")
def plan():
    config = stack_config(read_stack(DEFAULT_STACKS_DIR, "demo"))
    return build_plan(config, load_inventory("samples/shop.inventory.json"), "demo", library=load_library(), region="eu-west-1")


def render(plan, width):
    out = io.StringIO()
    render_table(plan, out, width=width)
    return out.getvalue()


def roles_section(text):
    """The lines from the roles heading to the skipped table."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Roles planned"))
    end = next(i for i, line in enumerate(lines) if line.startswith("Skipped projects"))
    return lines[start:end]


def mark_column(lines):
    """Where the mark column is: the '!' of the header, the line(s) above the header rule."""
    rule = next(i for i, line in enumerate(lines) if line.startswith("─"))
    return next(line.index(" ! ") + 1 for line in lines[:rule] if " ! " in line)


@pytest.mark.parametrize("width", [80, 120, 200])
def test_lines_fit_and_ids_and_role_names_never_break(plan, width):
    lines = render(plan, width).splitlines()
    assert max(map(len, lines)) <= width
    for p in plan.projects:
        assert any(p.role_name in line for line in lines), p.role_name
        assert any(line.split()[:1] == [str(p.id)] for line in lines), p.id
    assert "(suffixed)" not in "\n".join(lines)


@pytest.mark.parametrize("width", [80, 200])
def test_suffixed_names_are_marked_in_their_own_column_with_a_legend(plan, width):
    lines = roles_section(render(plan, width))
    column = mark_column(lines)
    for p in plan.projects:
        line = next(line for line in lines if p.role_name in line.split())
        assert line[column] == ("!" if not p.helper_compatible else " "), p.role_name
    assert sum(not p.helper_compatible for p in plan.projects) == 3
    legend = [line for line in lines if line.startswith("! ")]
    assert len(legend) == 1 and "id suffix" in legend[0]
    assert lines.index(legend[0]) > max(i for i, line in enumerate(lines) if "gitlab-shop" in line)  # below the table


@pytest.mark.parametrize("width", [80, 200])
def test_refs_shared_by_every_role_are_shown_once_above_the_table(plan, width):
    text = render(plan, width)
    lines = roles_section(text)
    assert lines[1] == "refs for every role: branch:release/*, tag:v*"
    assert text.count("tag:v*") == 1 and text.count("branch:release/*") == 1
    # Each row keeps its own refs: the resolved default branch, none for an empty repository.
    for path, ref in (("shop/platform/terraform-modules", "branch:master"), ("shop/data/ml-features", "branch:develop"),
                      ("shop/cart", "branch:main")):
        assert any(f"{path} " in line and line.rstrip().endswith(ref) for line in lines), path
    assert not any("shop/empty-repo" in line and "branch:" in line for line in lines)


def test_identical_refs_drop_the_refs_column(plan):
    same = dataclasses.replace(plan, projects=tuple(dataclasses.replace(p, refs=("branch:main",)) for p in plan.projects))
    for width in (80, 200):
        lines = roles_section(render(same, width))
        assert lines[1] == "refs for every role: branch:main"
        assert "own refs" not in "\n".join(lines) and sum("branch:main" in line for line in lines) == 1


def test_a_long_path_is_elided_in_its_middle_at_80_columns(plan):
    lines = roles_section(render(plan, 80))
    assert not any(LONG in line for line in lines)
    (shown,) = [word for line in lines for word in line.split() if word.startswith("shop/platform/tools/an-") and word.endswith("-eu")]
    head, _, tail = shown.partition("…")
    assert tail and LONG.startswith(head) and LONG.endswith(tail) and len(head) > 10 and len(tail) > 10


def test_a_wide_terminal_shows_every_path_whole_one_role_per_line(plan):
    text = render(plan, 200)
    lines = roles_section(text)
    assert max(map(len, text.splitlines())) <= 200 and "…" not in "\n".join(lines)
    for p in plan.projects:
        assert any(p.path in line.split() and p.role_name in line.split() for line in lines), p.path
    for s in plan.skipped:
        assert any(s.path in line.split() for line in text.splitlines()), s.path


def test_skipped_table_fits_80_columns_wrapping_details_between_words(plan):
    long = dataclasses.replace(plan.skipped[0], path=LONG, id=123456789)
    text = render(dataclasses.replace(plan, skipped=(long, *plan.skipped[1:])), 80)
    lines = text.splitlines()
    skipped = lines[next(i for i, line in enumerate(lines) if line.startswith("Skipped projects")):]
    assert max(map(len, lines)) <= 80
    words = " ".join(skipped).split()
    for s in plan.skipped:
        assert all(word in words for word in s.detail.split()), s.detail
    row = next(line for line in skipped if line.split()[:1] == ["123456789"])
    head, _, tail = row.split()[1].partition("…")
    assert tail and LONG.startswith(head) and LONG.endswith(tail)


@pytest.mark.parametrize("width", [80, 200])
def test_values_from_gitlab_and_the_config_print_literally(plan, width):
    first, second = plan.projects[:2]
    odd = (dataclasses.replace(first, path="shop/[bold]cart[/bold]", role_name="gitlab-[i]x[/i]", refs=("tag:[u]v*[/u]", "branch:[red]main[/]")),
           dataclasses.replace(second, refs=("tag:[u]v*[/u]",)))
    skip = dataclasses.replace(plan.skipped[0], path="shop/[blink]old[/blink]", reason="[b]archived", detail="see [link=x]here[/link]")
    text = render(dataclasses.replace(plan, projects=odd, skipped=(skip,), warnings=("look [red]here[/red]",)), width)
    for value in ("shop/[bold]cart[/bold]", "gitlab-[i]x[/i]", "refs for every role: tag:[u]v*[/u]", "branch:[red]main[/]",
                  "shop/[blink]old[/blink]", "[b]archived", "see [link=x]here[/link]", "warning: look [red]here[/red]"):
        assert value in text, value


def test_no_roles_is_said_loudly_with_the_skip_reasons(plan):
    empty = dataclasses.replace(plan, projects=())
    text = render(empty, 80)
    joined = " ".join(text.split())
    assert "no roles planned for group shop: all 7 listed projects are skipped (2 archived, 2 excluded, 1 pending-deletion, 2 shared-in)" in joined
    assert "Roles planned" not in text and "Skipped projects" in text
    assert joined.endswith(" ".join(summary(empty).split()))


def test_colours_flag_the_empty_plan_and_warnings_and_the_summary_comes_last(plan, monkeypatch):
    monkeypatch.setenv("FORCE_COLOR", "1")
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    text = render(dataclasses.replace(plan, projects=()), 200)
    assert "\x1b[1;33mno roles planned for group shop" in text
    assert "\x1b[33mwarning:\x1b[0m" in render(plan, 200)
    assert " ".join(render(plan, 80).split()).endswith(" ".join(summary(plan).split()))
