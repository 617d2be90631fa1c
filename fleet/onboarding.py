"""Onboarding: the projects created since a stack's last run, and the URNs that limit an `up` to them.

The functional core of `python -m fleet up --new-only`. The stack's last outputs say which project ids it knows
(`roleNames` keys and the `skipped` entries). GitLab lists the group newest first (`order_by=id`, `sort=desc`,
`id_before` the last id received), and the listing stops at the first id the stack knows: projects are numbered in
creation order, so everything above it was created since. What is listed is narrowed as the plan narrows it
(`select_projects`, the shard), and each remaining project becomes two URN globs, its component and its children:
Pulumi then changes only those resources, while the program still lists, names and guards the whole group.

A glob, unlike a literal URN, may match nothing (a project the plan skips for a reason only the program sees); a
literal target the program does not register fails the whole run. Pulumi rewrites the root stack's outputs even in
a targeted run, so the program of a --new-only run (FLEET_NEW_ONLY) exports the previous run's outputs plus what it
gives the targeted projects (`outputs_of_targeted_run`), never the whole plan.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .changes import ResourceChange
from .config import FleetConfig
from .deployed import OUTPUT as ROLE_NAMES_OUTPUT
from .deployed import POLICIES_OUTPUT, ROLES_OUTPUT, SUB_CLAIMS_OUTPUT, parse_deployed
from .errors import DiscoveryError, FleetError
from .guard import GuardError
from .inventory import Inventory, PathClash, Project, parse_inventory
from .plan import Skipped
from .resources import COMPONENT_TYPE
from .selection import in_shard, select_projects
from .spelling import spell

PER_PAGE = 100
SKIPPED_OUTPUT = "skipped"
COUNTS_OUTPUT = "counts"
NEW_ONLY_ENV = "FLEET_NEW_ONLY"  # for the program of a --new-only run: the targeted project ids, comma-separated

# One page of the group's projects with ids below the cursor (None: from the newest), newest first, and whether
# GitLab says it is the last page.
Fetch = Callable[[int | None], tuple[list[Any], bool]]


class OnboardingError(FleetError):
    """A --new-only run cannot tell which projects are new, or would do more than create them."""


def known_ids(outputs: Mapping[str, Any], stack: str) -> frozenset[int]:
    """The project ids the stack's last run listed: those it holds a role for (`roleNames`) and those it skipped.

    Refused, with what to do, when the stack has no `roleNames` output: it was never updated (or only by a release
    that did not record role names), so nothing says which projects are new."""
    source = f"the outputs of stack {stack}"
    if outputs.get(ROLE_NAMES_OUTPUT) is None:
        raise OnboardingError(f"stack {stack} has no {ROLE_NAMES_OUTPUT} output, so no project can be told new: run a "
                              f"full `python -m fleet up --stack {stack}` first; --new-only works from its outputs.")
    ids = set(parse_deployed(outputs[ROLE_NAMES_OUTPUT], source))
    skipped = outputs.get(SKIPPED_OUTPUT)
    if skipped is None:
        return frozenset(ids)
    if not isinstance(skipped, list):
        raise OnboardingError(f"{source}: {SKIPPED_OUTPUT} is {spell(skipped)[:120]}; expected a list of "
                              "{id, path, reason, detail}")
    for entry in skipped:
        value = entry.get("id") if isinstance(entry, Mapping) else None
        # Numbers cross Pulumi's RPC as floats: 5.0 is project 5.
        if (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
                or value != int(value) or value <= 0):
            raise OnboardingError(f"{source}: {SKIPPED_OUTPUT} entry {spell(entry)[:120]} has no project id")
        ids.add(int(value))
    return frozenset(ids)


def _listed_id(item: Any, below: int | None, source: str) -> int:
    project_id = item.get("id") if isinstance(item, Mapping) else None
    if isinstance(project_id, bool) or not isinstance(project_id, int) or project_id <= 0:
        raise DiscoveryError(f"{source} listed a project without a positive integer id ({spell(item)[:200]}); "
                             "nothing was changed.")
    if below is not None and project_id >= below:
        raise DiscoveryError(
            f"{source} answered a request for projects newest first below id {below} with project {project_id}: it "
            "ignores id_before or does not sort by id, so the new projects cannot be told; nothing was changed.")
    return project_id


def newest_first(fetch: Fetch, known: Collection[int], *, source: str) -> list[dict[str, Any]]:
    """The projects listed above the first known id, newest first: pages of `fetch`, each below the last id received.

    Stops at the first id the stack knows (when the newest project is known, that is one request). An answer that is
    not strictly descending below the cursor is refused: a server that ignores id_before or the sort would repeat
    projects or hide some."""
    found: list[dict[str, Any]] = []
    below: int | None = None
    while True:
        page, last = fetch(below)
        for item in page:
            below = _listed_id(item, below, source)
            if below in known:
                return found
            found.append(item)
        if not page or (last and len(page) < PER_PAGE):
            return found


@dataclass(frozen=True)
class NewProjects:
    """The new projects as the plan will see them: those to onboard, and the others with the reason."""

    onboard: tuple[Project, ...]
    skipped: tuple[Skipped, ...]
    other_shards: int = 0


def select_new(config: FleetConfig, group_path: str, listed: Sequence[Mapping[str, Any]]) -> NewProjects:
    """The new projects narrowed as the plan narrows its listing: `select_projects` (shared-in, subgroups, pending
    deletion, archived, exclusions) and the stack's shard. The program can still skip one for a reason only the
    whole listing shows; its URNs then match nothing."""
    try:
        inventory: Inventory = parse_inventory({"group": {"full_path": group_path}, "projects": list(listed)})
    except PathClash as err:
        raise DiscoveryError(f"The new projects of '{group_path}' changed while they were read: {'; '.join(err.clashes)} "
                             "(renamed meanwhile); nothing was changed, run again.") from err
    selected, skipped, _ = select_projects(config, inventory)
    mine = [p for p in selected if in_shard(p.id, config.shard)]
    skipped_here = [s for s in skipped if in_shard(s.id, config.shard)]
    newest = sorted(mine, key=lambda p: -p.id)
    return NewProjects(tuple(newest), tuple(sorted(skipped_here, key=lambda s: -s.id)),
                       other_shards=len(listed) - len(mine) - len(skipped_here))


def project_targets(stack: str, project: str, project_id: int) -> tuple[str, str]:
    """The URN globs of one project's resources: its ProjectAccess component (`project-<id>`) and every child
    (`project-<id>-...`: role, policies, attachments, exclusives, variables, sub claim). `**` stands for the child's
    type, `*` for the rest of its name within one URN segment; the `-` after the id keeps project 1 from matching
    project 12."""
    base = f"urn:pulumi:{stack}::{project}::{COMPONENT_TYPE}"
    return f"{base}**::project-{project_id}", f"{base}$**::project-{project_id}-*"


def targets(stack: str, project: str, project_ids: Iterable[int]) -> list[str]:
    """The `--target` list for these projects, in the order given."""
    return [urn for project_id in project_ids for urn in project_targets(stack, project, project_id)]


def check_creates_only(changes: Sequence[ResourceChange], stack: str) -> None:
    """A --new-only run only adds: any step that deletes or replaces a resource is refused, naming it."""
    refused = sorted((c for c in changes if c.guard_op in ("delete", "replace")), key=lambda c: c.urn)
    if refused:
        listing = "; ".join(f"{c.guard_op} {c.role_name or c.name} ({c.project_path or c.project_id or c.kind})"
                            for c in refused)
        raise GuardError(f"stack {stack}: a --new-only run may only create, and this one would {listing}. Nothing was "
                         f"changed. Review it with `python -m fleet preview --stack {stack}` and apply it with a full "
                         f"`python -m fleet up --stack {stack}`.")


def created_projects(changes: Sequence[ResourceChange]) -> list[int]:
    """The ids of the projects whose component the run creates, in id order."""
    return sorted({c.project_id for c in changes if c.kind == "project" and c.guard_op == "create" and c.project_id})


def new_only_ids(env: Mapping[str, str]) -> frozenset[int] | None:
    """The project ids a --new-only run targets (FLEET_NEW_ONLY), None in a full run."""
    value = env.get(NEW_ONLY_ENV)
    if value is None:
        return None
    if not re.fullmatch(r"[0-9]{1,19}(,[0-9]{1,19})*", value):
        raise OnboardingError(f"{NEW_ONLY_ENV} is {spell(value)}: expected project ids separated by commas "
                              "(python -m fleet up --new-only sets it; unset it for a full run).")
    return frozenset(int(i) for i in value.split(","))


def outputs_of_targeted_run(previous: Mapping[str, Any], current: Mapping[str, Any], paths: Mapping[int, str],
                            ids: Collection[int]) -> dict[str, Any]:
    """The stack outputs of a run limited to the projects `ids` (paths: their paths in this run's plan).

    The previous run's outputs, plus what this run gives those projects. Exporting the whole plan would record as
    deployed the projects the engine did not touch (new ones it skipped: later runs would skip their collision
    checks, and their role ARNs would be unknown values), and changes still pending for the others."""
    out = dict(current)
    for key in (ROLE_NAMES_OUTPUT, POLICIES_OUTPUT, SUB_CLAIMS_OUTPUT):
        merged = dict(previous.get(key) or {})
        now = current.get(key) or {}
        merged.update({str(i): now[str(i)] for i in ids if str(i) in now})
        out[key] = merged
    roles = dict(previous.get(ROLES_OUTPUT) or {})
    now_roles = current.get(ROLES_OUTPUT) or {}
    roles.update({paths[i]: now_roles[paths[i]] for i in ids if i in paths and paths[i] in now_roles})
    out[ROLES_OUTPUT] = roles
    for key in (SKIPPED_OUTPUT, COUNTS_OUTPUT):  # the whole group's, as the last full run saw it
        if previous.get(key) is not None:
            out[key] = previous[key]
    return out

