"""A group's project listing as GitLab returns it, and its validation into typed projects.

The saved form is the contract of `fleet inventory` and `plan --inventory`:
`{"group": <group object>, "projects": [<project objects as GitLab's API returns them>], "gitlab_version": "18.7.1"}`
(`gitlab_version` optional: listings saved before it was recorded still load).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TextIO

from .errors import InventoryError
from .gitref import ref_problem
from .jsonfile import read_json
from .spelling import MISSING, spell

_PATH_RE = re.compile(r"[A-Za-z0-9_.][A-Za-z0-9_.\-]*(/[A-Za-z0-9_.][A-Za-z0-9_.\-]*)+")


def is_project_path(value: str) -> bool:
    """A project's full path as GitLab writes it: group/…/project, letters, digits, '_', '.', '-'."""
    return _PATH_RE.fullmatch(value) is not None


@dataclass(frozen=True)
class Group:
    id: int | None
    full_path: str


@dataclass(frozen=True)
class Project:
    id: int
    path: str  # path_with_namespace, case as GitLab stores it
    default_branch: str | None  # None for an empty repository, or a name git would not accept (see below)
    archived: bool
    pending_deletion: bool
    shared_with: frozenset[str]  # full paths (casefolded) of the groups it is shared with
    namespace_id: int | None = None  # the id of the group (or user) that holds it, when the listing says
    shared_with_ids: frozenset[int] = frozenset()  # ids of the groups it is shared with, where the listing says
    default_branch_problem: str | None = None  # why the listed default branch is not a git branch name
    topics: tuple[str, ...] = ()  # GitLab topics, as listed (`topics`; `tag_list` before GitLab 14)
    # `ci_id_token_sub_claim_components`: what its tokens' `sub` is made of. None: not listed (GitLab shows it
    # to Maintainers only, and before 17.10 not at all).
    sub_claim_components: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Inventory:
    group: Group
    projects: tuple[Project, ...]
    raw: Mapping[str, Any]  # what GitLab returned, kept for `fleet inventory`
    gitlab_version: str | None = None  # GET /version's `version` (e.g. "18.7.1-ee"); None in older saved listings


def _fail(where: str, field: str, value: Any, expected: str) -> InventoryError:
    return InventoryError(f"{where}: field {field} is {spell(value)}; expected {expected}")


def parse_group(value: Any) -> Group:
    if isinstance(value, str) and value:
        return Group(id=None, full_path=value)
    if not isinstance(value, Mapping):
        raise _fail("inventory", "group", value, "a group object with 'full_path' (and 'id')")
    full_path = value.get("full_path", MISSING)
    group_id = value.get("id")
    if not isinstance(full_path, str) or not full_path:
        raise _fail("inventory group", "full_path", full_path, "the group's full path")
    if group_id is not None and (isinstance(group_id, bool) or not isinstance(group_id, int)):
        raise _fail("inventory group", "id", group_id, "an integer")
    return Group(id=group_id, full_path=full_path)


def parse_project(value: Any, index: int) -> Project:
    if not isinstance(value, Mapping):
        raise _fail(f"project #{index}", "(whole object)", value, "a project object")
    project_id = value.get("id", MISSING)
    if isinstance(project_id, bool) or not isinstance(project_id, int) or project_id <= 0:
        raise _fail(f"project #{index}", "id", project_id, "a positive integer")
    where = f"project {project_id}"
    path = value.get("path_with_namespace", MISSING)
    if not isinstance(path, str) or not _PATH_RE.fullmatch(path):
        raise _fail(where, "path_with_namespace", path, "a GitLab path such as group/sub/project")
    branch = value.get("default_branch")
    if branch is not None and not isinstance(branch, str):
        raise _fail(where, "default_branch", branch, "null or a branch name")
    # One project's odd branch must not stop the fleet: it is set aside and the project skipped where it matters.
    branch_problem = ref_problem(branch) if branch is not None else None
    archived = value.get("archived", False)
    if not isinstance(archived, bool):
        raise _fail(where, "archived", archived, "true or false")
    # GitLab 16+ sends marked_for_deletion_on; older versions marked_for_deletion_at.
    pending = bool(value.get("marked_for_deletion_on") or value.get("marked_for_deletion_at"))
    shared = value.get("shared_with_groups") or []
    if not isinstance(shared, list) or not all(isinstance(s, Mapping) and isinstance(s.get("group_full_path"), str) for s in shared):
        raise _fail(where, "shared_with_groups", shared, "a list of objects with a group_full_path")
    namespace = value.get("namespace")
    namespace_id = namespace.get("id") if isinstance(namespace, Mapping) else None
    if namespace_id is not None and (isinstance(namespace_id, bool) or not isinstance(namespace_id, int)):
        raise _fail(where, "namespace.id", namespace_id, "an integer")
    shared_ids = [s.get("group_id") for s in shared if s.get("group_id") is not None]
    if not all(isinstance(i, int) and not isinstance(i, bool) for i in shared_ids):
        raise _fail(where, "shared_with_groups", shared, "group ids that are integers")
    topics = value.get("topics", value.get("tag_list")) or []
    if not isinstance(topics, list) or not all(isinstance(t, str) for t in topics):
        raise _fail(where, "topics", topics, "a list of topic names")
    components = value.get("ci_id_token_sub_claim_components")
    if components is not None and (not isinstance(components, list) or not components
                                   or not all(isinstance(c, str) for c in components)):
        raise _fail(where, "ci_id_token_sub_claim_components", components, "a non-empty list of claim names")
    return Project(
        sub_claim_components=tuple(components) if components is not None else None,
        id=project_id, path=path, default_branch=None if branch_problem else branch, archived=archived,
        pending_deletion=pending, default_branch_problem=branch_problem and f"{spell(branch)}: {branch_problem}",
        shared_with=frozenset(s["group_full_path"].casefold() for s in shared), namespace_id=namespace_id,
        shared_with_ids=frozenset(shared_ids), topics=tuple(topics),
    )


class PathClash(InventoryError):
    """Two project ids share one path (ignoring case): the listing changed while it was read."""

    def __init__(self, clashes: list[str]):
        self.clashes = clashes
        super().__init__(f"two projects share a path, so the listing changed while it was read (projects renamed "
                         f"meanwhile): {'; '.join(clashes)}. Two roles must never trust one path; list the group again.")


def path_clashes(projects: Iterable[Project]) -> list[str]:
    """'<path>: projects <id>, <id>' for each path (ignoring case, as GitLab compares) held by several ids."""
    by_path: dict[str, list[Project]] = {}
    for project in projects:
        by_path.setdefault(project.path.casefold(), []).append(project)
    return [f"{group[0].path}: projects {', '.join(str(p.id) for p in sorted(group, key=lambda p: p.id))}"
            for group in by_path.values() if len(group) > 1]


def parse_inventory(data: Any, parsed: Mapping[int, tuple[Any, Project]] | None = None) -> Inventory:
    """The listing `data` validated. `parsed`: projects already parsed while the listing was read, by id() of their
    item in `data["projects"]` (with the item, so a reused id() is never taken for another item)."""
    if not isinstance(data, Mapping) or "projects" not in data or "group" not in data:
        raise InventoryError("inventory: expected a JSON object with keys 'group' and 'projects'")
    projects = data["projects"]
    if not isinstance(projects, list):
        raise _fail("inventory", "projects", type(projects).__name__, "a list of project objects")
    known = parsed or {}
    seen: dict[int, Project] = {}
    for index, item in enumerate(projects):
        ready = known.get(id(item))
        project = ready[1] if ready is not None and ready[0] is item else parse_project(item, index)
        if project.id in seen and seen[project.id] != project:
            raise InventoryError(f"project {project.id}: listed twice with different contents ({seen[project.id].path}, {project.path})")
        seen.setdefault(project.id, project)
    clashes = path_clashes(seen.values())
    if clashes:
        raise PathClash(clashes)
    version = data.get("gitlab_version")
    if version is not None and (not isinstance(version, str) or not version):
        raise _fail("inventory", "gitlab_version", version, "the version GET /version answers, e.g. \"18.7.1-ee\"")
    return Inventory(group=parse_group(data["group"]), projects=tuple(seen.values()), raw=data, gitlab_version=version)


def dump_listing(raw: Mapping[str, Any], out: TextIO) -> None:
    """A listing as JSON that load_inventory reads back: one project per line (diffable, and written at once: 10,000
    projects take a twentieth of a second, where json.dump's indenting encoder takes seconds)."""
    head = json.dumps({k: v for k, v in raw.items() if k != "projects"})
    projects = ",\n".join(json.dumps(p) for p in raw["projects"])
    out.write(head[:-1] + (", " if head != "{}" else "") + '"projects": [\n' + projects + "\n]}\n")


def load_inventory(path: str) -> Inventory:
    data = read_json(path, "inventory", InventoryError)
    try:
        return parse_inventory(data)
    except InventoryError as err:
        raise InventoryError(f"{path}: {err}") from err
