"""Showing a plan: JSON for scripts, a rich table for people."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TextIO

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from .audit import SEVERITIES, AuditReport, RoleAudit
from .plan import Plan
from .policy_library import BUNDLED, Entry, RenderContext, render
from .policy_lint import document_size, lint, privileged

GAP = 2  # spaces between two table columns (see _table)
MARK = "!"  # marks a suffixed role name
SWITCHING_MARK = "~"  # marks a project whose sub switches in this run (both forms trusted)
MIN_PATH = 24  # a path column narrower than this puts each role name on a line of its own
MAX_WORD = 30  # the skipped table keeps words of its details this long whole, eliding its paths first


def render_json(plan: Plan, out: TextIO) -> None:
    json.dump(plan.to_json(), out, indent=2)
    out.write("\n")


def summary(plan: Plan) -> str:
    counts = plan.counts()
    reasons = plan.skip_summary()
    provider = "create" if plan.create_provider else "use" if plan.shard and not plan.shard.owns_provider else "adopt"
    shard = f" ({plan.shard_text}, {counts['other_shards']} projects in other shards)" if plan.shard else ""
    return (f"stack {plan.stack}{shard}: {counts['roles']} roles for {plan.group} in account {plan.account_id}, "
            f"{counts['skipped']} skipped{f' ({reasons})' if reasons else ''}; OIDC provider: {provider} {plan.provider_arn}")


def elide(value: str, width: int) -> str:
    """`value` cut in its middle to `width` characters, keeping its start and end."""
    if len(value) <= width:
        return value
    tail = max(width - 1, 0) // 2
    return value[: max(width - 1 - tail, 0)] + "…" + value[len(value) - tail:]


def _table() -> Table:
    return Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, collapse_padding=True)


def _stacked(top: str, right: str, middle: str, width: int) -> Text:
    """`top` elided, with `right` at the end of its line if it fits there (else last), then `middle`."""
    room = width - len(right) - GAP
    if right and room >= min(len(top), MIN_PATH):
        top = elide(top, room)
        lines = [top + " " * (width - len(top) - len(right)) + right, middle]
    else:
        lines = [elide(top, width), middle, right]
    return Text("\n".join(line for line in lines if line))


def render_table(plan: Plan, out: TextIO, width: int | None = None) -> None:
    """The plan fitted to `width` (default: the terminal's): ids and role names never wrap, paths are elided
    in the middle. Every value from GitLab or the config is a `Text`, so brackets in it print as written, never as markup."""
    width = width or Console(file=out).width
    projects = plan.projects
    id_width = max([len("id"), *(len(str(p.id)) for p in projects)])
    role_width = max((len(p.role_name) for p in projects), default=0)
    # Narrower than one id, the mark and a role name, lines overflow the terminal rather than cut a name.
    console = Console(file=out, width=max(width, id_width + 1 + role_width + 2 * GAP), soft_wrap=False, highlight=False)
    width = console.width
    if projects:
        common = [r for r in projects[0].refs if all(r in p.refs for p in projects)]
        own = [", ".join(r for r in p.refs if r not in common) for p in projects]
        refs_width = min(max(len("own refs"), *map(len, own)), 30) if any(own) else 0  # 0: no refs column
        path_width = max(len(p.path) for p in projects)
        room = width - id_width - 1 - role_width - (refs_width + GAP if refs_width else 0) - 3 * GAP
        one_line = room >= min(path_width, MIN_PATH)  # else the role name goes under its project
        table = _table()
        table.add_column("id" if one_line else "id\n", justify="right", no_wrap=True)
        table.add_column(MARK, style="yellow", no_wrap=True)
        marks = [("" if p.helper_compatible else MARK) + (SWITCHING_MARK if p.sub_phase == "switching" else "")
                 for p in projects]
        if one_line:
            table.add_column("project", no_wrap=True)
            table.add_column("role", no_wrap=True)
            if refs_width:
                table.add_column("own refs")
            for p, mark, refs in zip(projects, marks, own, strict=True):
                table.add_row(Text(str(p.id)), Text(mark), Text(elide(p.path, room)), Text(p.role_name),
                              *([Text(refs)] if refs_width else []))
        else:  # the mark on the role name's line
            cell = width - id_width - 1 - 2 * GAP
            table.add_column(_stacked("project", "own refs" if refs_width else "", "role", cell))
            for p, mark, refs in zip(projects, marks, own, strict=True):
                table.add_row(Text(str(p.id)), Text("\n" + mark), _stacked(p.path, refs, p.role_name, cell))
        console.print(Text(f"Roles planned for stack {plan.stack}", style="bold"))
        if common:
            console.print(Text("refs for every role: " + ", ".join(common)))
        console.print(table)
        if any(MARK in m for m in marks):
            console.print(Text.assemble((MARK, "yellow"), " role name with an id suffix: another project's path gives the same name"))
        if any(SWITCHING_MARK in m for m in marks):
            console.print(Text.assemble((SWITCHING_MARK, "yellow"), " sub switches in this run: both forms trusted until "
                                                                   "the next run finds the new one applied"))
        forms: dict[tuple[str, ...], int] = {}
        for p in projects:
            forms[p.sub_components] = forms.get(p.sub_components, 0) + 1
        if any(p.manage_sub_claim or p.sub_phase != "applied" for p in projects):
            console.print(Text("sub: " + "; ".join(f"{':'.join(form)} ({n})" for form, n in forms.items())))
    else:
        console.print(Text(plan.no_roles_warning or "", style="bold yellow"))
    if plan.skipped:
        reason_width = max(len("reason"), *(len(s.reason) for s in plan.skipped))
        id_width = max([len("id"), *(len(str(s.id)) for s in plan.skipped)])
        word = min(max(len(w) for s in plan.skipped for w in [*s.detail.split(), ""]), MAX_WORD)
        room = max(width - id_width - reason_width - word - 3 * GAP, 12)
        skipped = _table()
        skipped.add_column("id", justify="right", no_wrap=True)
        skipped.add_column("project", no_wrap=True)
        skipped.add_column("reason", no_wrap=True)
        skipped.add_column("detail", overflow="fold")  # wraps between words, folds only a word too long for it
        for s in plan.skipped:
            skipped.add_row(Text(str(s.id)), Text(elide(s.path, room)), Text(s.reason), Text(s.detail))
        console.print(Text("Skipped projects", style="bold"))
        console.print(skipped)
    _render_policies(plan, console, width)
    for warning in plan.warnings:
        console.print(Text.assemble(("warning:", "yellow"), " ", warning))
    console.print(Text(summary(plan)))


def _render_policies(plan: Plan, console: Console, width: int) -> None:
    """Each project's policy library entries (inline ones marked `+`), and the stack's shared managed policies."""
    with_policies = [p for p in plan.projects if p.policies]
    if not with_policies:
        return
    id_width = max(len(str(p.id)) for p in with_policies)
    table = _table()
    table.add_column("id", justify="right", no_wrap=True)
    table.add_column("project", no_wrap=True)
    table.add_column("policies (+ inline)")
    room = max(width // 3, 24)
    for p in with_policies:
        names = ", ".join(("+" if pol.attachment == "inline" else "") + pol.name for pol in p.policies)
        table.add_row(Text(str(p.id).rjust(id_width)), Text(elide(p.path, room)), Text(names))
    console.print(Text("Policies", style="bold"))
    console.print(table)
    for m in plan.managed_policies:
        console.print(Text(f"managed policy {m.policy_name} (entry {m.name}): one for the stack, attached to {m.attached_to} role(s)"))


def render_library(library: Mapping[str, Entry], out: TextIO, width: int | None = None) -> None:
    """Every entry: its name, how it is attached, where it comes from and what it allows."""
    console = Console(file=out, width=width or Console(file=out).width, soft_wrap=False, highlight=False)
    table = _table()
    table.add_column("entry", no_wrap=True)
    table.add_column("attached as", no_wrap=True)
    table.add_column("allows")
    for name, entry in sorted(library.items()):
        kind = "aws-managed" if entry.arn else "inline" if entry.per_project else "managed"
        source = "" if Path(entry.source).parent == BUNDLED else f" ({entry.source})"
        first = re.split(r"(?<=\.)\s+(?=[A-Z])", entry.description, maxsplit=1)[0]  # `policies show NAME` prints the rest
        table.add_row(Text(name), Text(kind), Text(first + source))
    console.print(table)


def render_entry(entry: Entry, context: RenderContext, out: TextIO) -> None:
    """The entry rendered for one project as JSON on `out`; how it attaches and what the linter says, on stderr."""
    if entry.arn:
        out.write(json.dumps({"arn": entry.arn}, indent=2) + "\n")
        print(f"{entry.name}: the AWS managed policy {entry.arn}, attached as it is", file=sys.stderr)
        return
    document = render(entry, context)
    out.write(json.dumps(document, indent=2) + "\n")
    kind = "an inline policy on each role" if entry.per_project else "one customer managed policy of the stack"
    print(f"{entry.name} ({entry.source}): {kind}, {document_size(document)} characters", file=sys.stderr)
    for finding in lint(document):
        accepted = next((a.reason for a in entry.accept if a.finding == finding.code), None)
        state = f"accepted: {accepted}" if accepted and finding.acceptable else "refused"
        print(f"  {finding.code}: {finding.message} ({state})", file=sys.stderr)
    for why in privileged(document):
        print(f"  privileged: {why} (needs fleet:policies.allowPrivileged)", file=sys.stderr)


# --- audit ----------------------------------------------------------------------------------------

def render_audit_json(report: AuditReport, out: TextIO) -> None:
    json.dump(report.to_json(), out, indent=2)
    out.write("\n")


def _admits_text(role: RoleAudit) -> str:
    """Whom a role admits, in a few words: a path, "N projects", "any project"; with any-ref labels."""
    if role.admits is None:
        return "not evaluated"
    if role.admits_outside_group:
        who = "any project"
    elif not role.admits:
        who = "none of the group"
    elif len(role.admits) == 1:
        who = role.admits[0].path
    else:
        who = f"{len(role.admits)} projects"
    loose = sorted({r for a in role.admits for r in a.refs if r.startswith("any ")})
    return who + (f" ({', '.join(loose)})" if loose and not role.admits_outside_group else "")


def render_audit_table(report: AuditReport, out: TextIO, width: int | None = None) -> None:
    """The roles that trust the issuer (name, fleet, whom they admit), then each finding, fitted to `width`.
    Values from AWS and GitLab are `Text`, so brackets in them print as written."""
    width = width or Console(file=out).width
    console = Console(file=out, width=max(width, 40), soft_wrap=False, highlight=False)
    width = console.width
    counts = report.counts()
    console.print(Text(f"Roles trusting {report.issuer} in account {report.account_id} (stack {report.stack})", style="bold"))
    if report.roles:
        fleet = ["this stack" if r.managed else f"stack {r.managed_by_stack}" if r.managed_by_stack else "no"
                 for r in report.roles]
        fleet_width = max(len("fleet"), *map(len, fleet))
        room = width - fleet_width - 2 * GAP
        name_width = min(max(len(r.name) for r in report.roles), max(room // 2, 20))
        table = _table()
        table.add_column("role", no_wrap=True)
        table.add_column("fleet", no_wrap=True)
        table.add_column("admits", overflow="fold")
        for r, who in zip(report.roles, fleet, strict=True):
            table.add_row(Text(elide(r.name, name_width)), Text(who), Text(_admits_text(r)))
        console.print(table)
    else:
        console.print(Text("no role of the account trusts this issuer"))
    found = report.findings
    if found:
        sev_width = max(len(s) for s in SEVERITIES)
        name_width = min(max(len(r.name) for r, _ in found), max((width - sev_width - 2 * GAP) // 3, 16))
        table = _table()
        table.add_column("severity", no_wrap=True)
        table.add_column("role", no_wrap=True)
        table.add_column("finding", overflow="fold")
        styles = {"high": "bold red", "medium": "yellow", "low": ""}
        for role, item in found:
            table.add_row(Text(item.severity, style=styles[item.severity]), Text(elide(role.name, name_width)),
                          Text.assemble((item.code, "bold"), " ", item.message))
        console.print(Text("Findings", style="bold"))
        console.print(table)
    for note in report.notes:
        console.print(Text.assemble(("note:", "yellow"), " ", note))
    console.print(Text(f"audit of stack {report.stack}: {counts['roles']} of {counts['roles_read']} roles trust the issuer "
                       f"({counts['managed']} of this stack); "
                       + (f"{counts['findings']} findings ({counts['high']} high, {counts['medium']} medium, {counts['low']} low)"
                          if counts["findings"] else "no findings")))
