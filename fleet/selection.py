"""Selection: which listed projects get a role, and why each other one is skipped."""

from __future__ import annotations

import hashlib

from .config import FleetConfig, ShardConfig, is_numeric_id
from .errors import PlanError
from .globs import path_glob
from .inventory import Inventory, Project
from .plan import Skipped
from .spelling import spell


def is_under(path: str, group_path: str) -> bool:
    """True when `path` lies inside group `group_path` (at any depth), compared ignoring case as GitLab does."""
    return path.casefold().startswith(group_path.casefold() + "/")


def shard_of(project_id: int, count: int) -> int:
    """The shard (0..count-1) of a project: the first 8 bytes of SHA-256 of its decimal id, big-endian, modulo
    `count`. It depends on the project's id alone, so adding or removing other projects never moves it."""
    digest = hashlib.sha256(str(project_id).encode("ascii")).digest()
    return int.from_bytes(digest[:8], "big") % count


def in_shard(project_id: int, shard: ShardConfig | None) -> bool:
    """True when the project belongs to this stack's shard (always, for an unsharded stack)."""
    return shard is None or shard_of(project_id, shard.count) == shard.index


def check_group(config: FleetConfig, inventory: Inventory, key: str = "fleet:gitlab.group") -> None:
    """The listing must be of the configured group (a saved inventory can be of any group). `key` names the setting."""
    configured = config.gitlab.group
    group = inventory.group
    if is_numeric_id(configured):
        if group.id is None:
            raise PlanError(f"{key} is the id {configured}, but the listing of {group.full_path} does not "
                            "say the group's id: list it again, or configure the group by its path")
        if group.id != int(configured):
            raise PlanError(f"the listing is of group {group.full_path} (id {group.id}), but {key} is {configured}")
    elif configured.casefold() != group.full_path.casefold():
        raise PlanError(f"the listing is of group {group.full_path}, but {key} is {configured}")


def select_projects(config: FleetConfig, inventory: Inventory) -> tuple[list[Project], list[Skipped], list[str]]:
    """Split the listing into projects to plan and projects skipped with a reason; plus warnings."""
    gl = config.gitlab
    group_path = inventory.group.full_path
    excludes = [(g, path_glob(g)) for g in gl.exclude]
    used_excludes: set[str] = set()
    selected: list[Project] = []
    skipped: list[Skipped] = []

    def skip(p: Project, reason: str, detail: str) -> None:
        skipped.append(Skipped(p.id, p.path, reason, detail))

    def in_scope(shared_with: str) -> bool:
        """A group the project is shared with counts when it is the group, or a subgroup when those are included."""
        return shared_with == group_path.casefold() or (gl.include_subgroups and is_under(shared_with, group_path))

    for p in sorted(inventory.projects, key=lambda p: p.id):
        namespace = p.path.rsplit("/", 1)[0]
        if not is_under(p.path, group_path):
            # GitLab lists a project from outside the group only when it is shared into it.
            if not gl.include_shared:
                skip(p, "shared-in", f"shared into {group_path} from {namespace} (fleet:gitlab.includeShared is false)")
                continue
            if not any(in_scope(g) for g in p.shared_with):
                skip(p, "outside-group", f"{namespace} is not inside group {group_path}, and its shared_with_groups "
                                         f"does not name it{'' if gl.include_subgroups else ' (subgroups are not included)'}")
                continue
        elif not gl.include_subgroups and namespace.casefold() != group_path.casefold():
            skip(p, "subgroup", f"in subgroup {namespace} (fleet:gitlab.includeSubgroups is false)")
            continue
        if p.pending_deletion:
            skip(p, "pending-deletion", "marked for deletion")
            continue
        if p.archived and not gl.include_archived:
            skip(p, "archived", "archived (fleet:gitlab.includeArchived is false)")
            continue
        matched = next((g for g, rx in excludes if rx.fullmatch(p.path)), None)
        if matched is not None:
            used_excludes.add(matched)
            skip(p, "excluded", f"matches fleet:gitlab.exclude {spell(matched)}")
            continue
        selected.append(p)
    warnings = [f"fleet:gitlab.exclude {spell(g)} matches no project of {group_path}" for g in gl.exclude if g not in used_excludes]
    return selected, skipped, warnings
