"""The engine-backed commands: preview (and its merge-request note), drift (and its issue), guarded up, reconcile.

Thin shell: the engine runs Pulumi and hands back its events; changes/report/drift read them; guard decides;
gitlab_notes publishes. What each command checks cheaply (flags, environment, config) it checks before Pulumi runs.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from . import guard
from .changes import ResourceChange, collect
from .config import FleetConfig
from .drift import classify, render_drift
from .engine import Engine
from .errors import UsageError
from .gitlab_notes import NOTE_LIMIT, issue_target, marker, note_target, sync_issue, upsert_note
from .report import render_preview


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _ask(question: str) -> str:
    """A question on the terminal (stderr, so that stdout stays the report); the end of input answers no."""
    print(question, end="", file=sys.stderr, flush=True)
    return sys.stdin.readline()


@dataclass
class Context:
    """Where a command runs: the project, the environment it reads (CI variables), and how it talks to people."""

    project_dir: Path
    env: Mapping[str, str]
    out: TextIO
    interactive: bool  # a person at a terminal who can answer a question
    ask: Callable[[str], str] = field(default=lambda question: _ask(question))

    def open(self, stack: str) -> Engine:
        return Engine(self.project_dir, stack, log=_stderr)


def _limit(kind: str, stack: str) -> int:
    """The report's room in a note or issue: GitLab's limit less the marker line."""
    return NOTE_LIMIT - len(marker(kind, stack)) - 2


def role_steps(changes: Sequence[ResourceChange]) -> list[guard.RoleStep]:
    """What the run does to each role, for the guard."""
    return [guard.RoleStep(c.role_name or c.name, c.project_path or str(c.project_id or "?"), c.guard_op)
            for c in changes if c.kind == "role"]


def _stamp(env: Mapping[str, str]) -> str:
    """Which commit and pipeline a note describes, so that a reviewer sees whether it is the latest."""
    sha, pipeline = env.get("CI_COMMIT_SHA", ""), env.get("CI_PIPELINE_ID", "")
    if not re.fullmatch(r"[0-9a-f]{7,64}", sha):
        return ""
    return f"_Preview of commit `{sha[:12]}`" + (f", pipeline #{pipeline}" if pipeline.isascii() and pipeline.isdigit() else "") + "._\n\n"


def preview(ctx: Context, stack: str, *, mr_note: bool) -> int:
    target = note_target(ctx.env) if mr_note else None  # a missing variable or token fails before the long preview
    run = ctx.open(stack).preview()
    stamp = _stamp(ctx.env)
    report = stamp + render_preview(collect(run.events), stack=stack, limit=_limit("preview", stack) - len(stamp))
    ctx.out.write(report if report.endswith("\n") else report + "\n")
    if target is not None:
        result = upsert_note(target, stack, report)
        _stderr(f"merge request !{target.mr_iid}: note for stack {stack} {result}")
    return 0


def drift(ctx: Context, stack: str, *, issue: bool) -> int:
    """0 = no drift, 2 = drift; writes nothing to the stack."""
    target = issue_target(ctx.env) if issue else None
    engine = ctx.open(stack)
    refreshed = engine.refresh_preview()
    previewed = engine.preview(expect_no_changes=True)
    found = classify(collect(refreshed.events), collect(previewed.events))
    clean = found.clean and not previewed.changes_unexpected
    body = render_drift(found, stack=stack, limit=_limit("drift", stack))
    if found.clean and not clean:  # Pulumi proposed changes none of the events explained: still drift
        body = (f"### Drift in stack `{stack}`\n\nPulumi's preview proposes changes that its events did not describe; "
                "run `python -m fleet preview` to see them.\n")
    ctx.out.write(body if body.endswith("\n") else body + "\n")
    if target is not None:
        result = sync_issue(target, stack, None if clean else body)
        _stderr(f"drift issue for stack {stack}: {result}")
    return 0 if clean else 2


def up(ctx: Context, config: FleetConfig, stack: str, *, max_deletes: int | None, yes: bool) -> int:
    """Refresh and preview, refuse past the guard, ask (or need --yes), then update under the program's own guard."""
    if not yes and not ctx.interactive:
        raise UsageError("up: not on a terminal, so nobody can confirm: pass --yes (in CI, after a reviewed preview).")
    explicit = max_deletes is not None
    limit = max_deletes if max_deletes is not None else config.guard.max_deletes
    engine = ctx.open(stack)
    planned = collect(engine.preview().events)
    steps = role_steps(planned)
    provider = next((c.guard_op for c in planned if c.kind == "oidc-provider" and c.guard_op in ("delete", "replace")), None)
    guard.check(steps, stack=stack, max_deletes=limit, explicit=explicit, provider_op=provider)
    ctx.out.write(render_preview(planned, stack=stack, limit=_limit("preview", stack)) + "\n")
    if not yes:
        answer = ctx.ask(f"Apply these changes to stack {stack}? Type yes to continue: ")
        if answer.strip().lower() not in ("y", "yes"):  # an empty answer, or the end of input, is a no
            _stderr("up: not confirmed; nothing was changed.")
            return 1
    before = sum(1 for s in steps if s.op != "create")
    engine.up({guard.ENV: str(guard.allowed(limit, before, explicit=explicit))})  # the same workspace: no second select
    _stderr(f"stack {stack} updated.")
    return 0


def reconcile(ctx: Context, config: FleetConfig, stack: str, *, issue: bool) -> int:
    """The scheduled job: drift, and with fleet:reconcile auto an `up` under the same guard when drift is found.
    0 = clean or reconciled, 2 = drift left for a person (reconcile: report), 1 = error."""
    found = drift(ctx, stack, issue=issue)
    if found == 0:
        return 0
    if config.reconcile != "auto":
        _stderr(f"stack {stack} has drifted; fleet:reconcile is {config.reconcile}, so nothing was changed.")
        return 2
    _stderr(f"stack {stack} has drifted; fleet:reconcile is auto: running up under the guard.")
    up(ctx, config, stack, max_deletes=None, yes=True)
    if issue:
        sync_issue(issue_target(ctx.env), stack, None)
    return 0
