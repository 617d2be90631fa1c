"""Showing a plan: JSON for scripts, a rich table for people."""

from __future__ import annotations

import json
from typing import TextIO

from rich.console import Console
from rich.table import Table
from rich.text import Text

from .plan import Plan


def render_json(plan: Plan, out: TextIO) -> None:
    json.dump(plan.to_json(), out, indent=2)
    out.write("\n")


def summary(plan: Plan) -> str:
    counts = plan.counts()
    reasons = ", ".join(f"{v} {k.removeprefix('skipped_').replace('_', '-')}" for k, v in counts.items() if k.startswith("skipped_"))
    provider = "create" if plan.create_provider else "adopt"
    return (f"stack {plan.stack}: {counts['roles']} roles for {plan.group} in account {plan.account_id}, "
            f"{counts['skipped']} skipped{f' ({reasons})' if reasons else ''}; OIDC provider: {provider} {plan.provider_arn}")


def render_table(plan: Plan, out: TextIO) -> None:
    """Every value from GitLab or the config is a `Text`, so brackets in it print as written, never as markup."""
    console = Console(file=out, width=max(100, Console(file=out).width), soft_wrap=False, highlight=False)
    roles = Table(title=Text(f"Roles planned for stack {plan.stack}"), title_justify="left")
    for column in ("id", "project", "role", "refs"):
        roles.add_column(column, overflow="fold")
    for p in plan.projects:
        name = Text(p.role_name)
        if not p.helper_compatible:
            name.append(" (suffixed)", style="yellow")
        roles.add_row(Text(str(p.id)), Text(p.path), name, Text(", ".join(p.refs)))
    console.print(roles)
    if plan.skipped:
        skipped = Table(title="Skipped projects", title_justify="left")
        for column in ("id", "project", "reason", "detail"):
            skipped.add_column(column, overflow="fold")
        for s in plan.skipped:
            skipped.add_row(Text(str(s.id)), Text(s.path), Text(s.reason), Text(s.detail))
        console.print(skipped)
    for warning in plan.warnings:
        console.print(Text.assemble(("warning:", "yellow"), " ", warning))
    console.print(Text(summary(plan)))
