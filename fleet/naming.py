"""Role names: the credential helper's name from the project path, made unique across the fleet."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

ROLE_PREFIX = "gitlab-"
ROLE_NAME_MAX = 64
_SLUG_RE = re.compile(r"[^a-z0-9]")


def path_slug(path: str) -> str:
    """GitLab's CI_PROJECT_PATH_SLUG: lowercase, non [a-z0-9] to '-', cut to 63, '-' stripped at both ends."""
    return _SLUG_RE.sub("-", path.lower())[:63].strip("-")


def helper_role_name(path: str) -> str:
    """The role name gitlab-aws-credential-helper derives: 'gitlab-' + the first 57 slug characters."""
    return ROLE_PREFIX + path_slug(path)[:57]


def suffixed_role_name(path: str, project_id: int) -> str:
    """The name for a project whose helper name another project (with a lower id) already holds.

    The suffix starts with '_', which no slug contains, so it never equals any project's plain
    name, and it depends only on the project's own id.
    """
    suffix = f"_{project_id}"
    return helper_role_name(path)[: ROLE_NAME_MAX - len(suffix)] + suffix


def assign_role_names(projects: Iterable[tuple[int, str]], deployed: Mapping[int, str] | None = None,
                      reserved: Iterable[str] = ()) -> dict[int, str]:
    """Map project id -> role name for (id, path) pairs: every project GitLab lists, not only those planned.

    A name already deployed (`deployed`: project id -> role name, from the stack's previous outputs)
    stays with its project while it is still a name of that project's path, and is never given to
    another project, even when its own project is gone: its role is deleted only after new roles are
    created, and IAM refuses a second role of that name meanwhile. Otherwise the lowest id among the
    projects whose helper name is equal (ignoring case, as IAM compares) keeps the plain name and the
    others get `suffixed_role_name`. So a project's name changes only when its own path does.
    `reserved` names belong to deployed roles whose project is unknown: nobody gets them.
    """
    pairs = dict(projects)
    deployed = dict(deployed or {})
    taken: dict[str, int] = {}
    for project_id, name in deployed.items():
        owner = taken.setdefault(name.casefold(), project_id)
        if owner != project_id:
            raise ValueError(f"deployed role name {name} is recorded for projects {owner} and {project_id}")
    for name in reserved:
        taken.setdefault(name.casefold(), 0)
    names: dict[int, str] = {}
    for project_id, path in pairs.items():
        kept = deployed.get(project_id)
        if kept is not None and kept in (helper_role_name(path), suffixed_role_name(path, project_id)):
            names[project_id] = kept
    wanting: dict[str, list[tuple[int, str]]] = {}
    for project_id, path in pairs.items():
        if project_id not in names:
            wanting.setdefault(helper_role_name(path).casefold(), []).append((project_id, path))
    for key, group in wanting.items():
        group.sort()
        for project_id, path in group:
            plain = helper_role_name(path)
            if key not in taken:
                names[project_id] = plain
                taken[key] = project_id
            else:
                names[project_id] = suffixed_role_name(path, project_id)
                if taken.setdefault(names[project_id].casefold(), project_id) != project_id:
                    raise ValueError(f"role name {names[project_id]} is recorded for another project")
    return names
