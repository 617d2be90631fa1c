"""The engine-backed commands: preview (and its merge-request note), drift (and its issue), guarded up (and its
--new-only onboarding), reconcile.

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

from . import guard, onboarding
from .changes import ResourceChange, collect
from .config import FleetConfig, is_numeric_id
from .discovery import explain_failure, open_api, resolve_token
from .drift import classify, render_drift
from .engine import Engine, EngineError
from .errors import DiscoveryError, UsageError
from .gitlab_api import GitLabError
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

    def open(self, stack: str, *, new_only: bool = False) -> Engine:
        if not new_only and onboarding.NEW_ONLY_ENV in self.env:  # the program would record only those projects
            raise UsageError(f"{onboarding.NEW_ONLY_ENV} is set in the environment: it is for the program of "
                             "`up --new-only` alone, which sets it itself; unset it and run again.")
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


def _confirmed(ctx: Context, stack: str, yes: bool) -> bool:
    """--yes, or a person who typed yes; an empty answer, or the end of input, is a no."""
    if yes:
        return True
    answer = ctx.ask(f"Apply these changes to stack {stack}? Type yes to continue: ")
    if answer.strip().lower() in ("y", "yes"):
        return True
    _stderr("up: not confirmed; nothing was changed.")
    return False


def up(ctx: Context, config: FleetConfig, stack: str, *, max_deletes: int | None, yes: bool,
       new_only: bool = False) -> int:
    """Refresh and preview, refuse past the guard, ask (or need --yes), then update under the program's own guard.
    `new_only`: only the projects created since the stack's last run (see `onboard`)."""
    if not yes and not ctx.interactive:
        raise UsageError("up: not on a terminal, so nobody can confirm: pass --yes (in CI, after a reviewed preview).")
    if new_only:
        if max_deletes is not None:
            raise UsageError("up: --max-deletes cannot be combined with --new-only, which never deletes or replaces "
                             "anything: leave one of them out.")
        return onboard(ctx, config, stack, yes=yes)
    explicit = max_deletes is not None
    limit = max_deletes if max_deletes is not None else config.guard.max_deletes
    engine = ctx.open(stack)
    planned = collect(engine.preview().events)
    steps = role_steps(planned)
    provider = next((c.guard_op for c in planned if c.kind == "oidc-provider" and c.guard_op in ("delete", "replace")), None)
    guard.check(steps, stack=stack, max_deletes=limit, explicit=explicit, provider_op=provider)
    ctx.out.write(render_preview(planned, stack=stack, limit=_limit("preview", stack)) + "\n")
    if not _confirmed(ctx, stack, yes):
        return 1
    before = sum(1 for s in steps if s.op != "create")
    engine.up({guard.ENV: str(guard.allowed(limit, before, explicit=explicit))})  # the same workspace: no second select
    _stderr(f"stack {stack} updated.")
    return 0


def new_projects(config: FleetConfig, token: str, known: frozenset[int]) -> onboarding.NewProjects:
    """The group's projects above the first id the stack knows, newest first, narrowed as the plan narrows them."""
    gl = config.gitlab
    api = open_api(gl, token, _stderr)
    what = f"listing the newest projects of '{gl.group}'"
    try:
        listed = onboarding.newest_first(
            lambda below: api.group_projects(gl.group, after=None, before=below, descending=True,
                                             include_subgroups=gl.include_subgroups, with_shared=gl.include_shared,
                                             per_page=onboarding.PER_PAGE),
            known, source=f"GitLab at {gl.api_url}")
        if not listed:
            return onboarding.NewProjects((), ())
        what = f"reading group '{gl.group}'"
        group_path = api.group(gl.group).get("full_path") if is_numeric_id(gl.group) else gl.group
    except GitLabError as err:
        raise explain_failure(err, gl, what, api) from err
    if not isinstance(group_path, str) or not group_path:
        raise DiscoveryError(f"GitLab at {gl.api_url} did not say the full path of group {gl.group}; nothing was changed.")
    return onboarding.select_new(config, group_path, listed)


# The engine's words when a targeted run needs something outside its targets: a resource that only a full run
# creates (diag 2013), or an ARN the plan expects from a role only a full run replaces (fleet/resources.py).
_NEEDS_FULL_UP = ("was not specified in --target list", "but the plan says")


def onboard(ctx: Context, config: FleetConfig, stack: str, *, yes: bool) -> int:
    """`up --new-only`: create the resources of the projects created since the stack's last run, and nothing else.

    The GitLab token is GITLAB_TOKEN or the stack secret gitlab:token, as for `pulumi up`; the stack's outputs say which project ids it knows; GitLab lists the group
    newest first down to the first known id. No new project: done, without running Pulumi's preview. Otherwise a
    preview and an update limited (Pulumi --target) to those projects' resources, refused when it would delete or
    replace anything; the program still lists, names and guards the whole group."""
    from_env = ctx.env.get("GITLAB_TOKEN")
    token = resolve_token(from_env) if from_env else None  # a malformed token is refused before Pulumi runs
    engine = ctx.open(stack, new_only=True)
    if token is None:  # as `pulumi up`: GITLAB_TOKEN, else the stack secret gitlab:token
        token = resolve_token(None, engine.config_value("gitlab:token"), secret_offered=True)
    known = onboarding.known_ids(engine.outputs(), stack)
    found = new_projects(config, token, known)
    if found.other_shards:
        _stderr(f"{found.other_shards} new project(s) belong to other shards of the group (fleet:shard).")
    for skip in found.skipped:
        _stderr(f"new project {skip.path} (id {skip.id}) gets no role: {skip.detail}")
    if not found.onboard:
        _stderr(f"stack {stack}: no new project to onboard since its last run; nothing was changed.")
        return 0
    ids = [p.id for p in found.onboard]
    _stderr(f"stack {stack}: {len(ids)} new project(s) since its last run: "
            f"{', '.join(f'{p.path} (id {p.id})' for p in found.onboard)}; only their resources are updated.")
    targets = onboarding.targets(stack, engine.project_name, ids)
    only = {onboarding.NEW_ONLY_ENV: ",".join(map(str, ids))}  # the program exports outputs for these alone
    try:
        planned = collect(engine.preview(target=targets, env=only).events)
    except EngineError as err:
        if any(words in str(err) for words in _NEEDS_FULL_UP):
            raise onboarding.OnboardingError(
                f"{err} A --new-only run changes only the new projects' resources, and this one needs a change outside "
                "them first (a managed policy of a library entry no role used before, or a role renamed or moved since "
                f"the last full run): run a full `python -m fleet up --stack {stack}`.") from err
        raise
    onboarding.check_creates_only(planned, stack)
    if not any(c.changed for c in planned if c.project_id in ids):
        _stderr(f"stack {stack}: the plan gives none of the new projects a role (`python -m fleet plan --stack {stack}` "
                "says why); nothing was changed.")
        return 0
    ctx.out.write(render_preview(planned, stack=stack, limit=_limit("preview", stack)) + "\n")
    if not _confirmed(ctx, stack, yes):
        return 1
    before = sum(1 for s in role_steps(planned) if s.op != "create")
    engine.up({guard.ENV: str(guard.allowed(config.guard.max_deletes, before, explicit=False)), **only}, target=targets)
    created = onboarding.created_projects(planned)
    _stderr(f"stack {stack} updated: {len(created)} new project(s) onboarded.")
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
