"""Role names: the credential helper's name from the project path, made unique across the fleet."""

from __future__ import annotations

import re
from typing import Iterable

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


def assign_role_names(projects: Iterable[tuple[int, str]]) -> dict[int, str]:
    """Map project id -> role name for (id, path) pairs.

    The lowest id of each group of equal helper names (ignoring case, as IAM does) keeps the plain
    name; the others get `suffixed_role_name`. Adding projects with higher ids changes no name.
    """
    by_name: dict[str, list[tuple[int, str]]] = {}
    for project_id, path in projects:
        by_name.setdefault(helper_role_name(path).casefold(), []).append((project_id, path))
    names: dict[int, str] = {}
    for group in by_name.values():
        group.sort()
        first_id, first_path = group[0]
        names[first_id] = helper_role_name(first_path)
        for project_id, path in group[1:]:
            names[project_id] = suffixed_role_name(path, project_id)
    seen = {n.casefold() for n in names.values()}
    if len(seen) != len(names):  # cannot happen by construction; refuse rather than plan a shared role
        raise AssertionError("role names are not unique")
    return names
