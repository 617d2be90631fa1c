"""Stack files `stacks/Pulumi.<stack>.yaml`: reading them as `pulumi up` does, and refusing stacks that overlap.

Two stacks overlap when some project could get its CI/CD variables from both: same GitLab instance,
same environment scope, and groups that are equal or nested (when the outer one includes
subgroups), or a project shared into one stack's group that lies in the other's.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import SECTIONS, FleetConfig, is_numeric_id, normalise_url, parse_config
from .errors import ConfigError, FleetError
from .inventory import Inventory, Project
from .selection import is_under
from .stackyaml import Secret, read_stack_config

PROJECT_DIR = Path(__file__).resolve().parent.parent
DEFAULT_STACKS_DIR = PROJECT_DIR / "stacks"


@dataclass(frozen=True)
class StackFile:
    name: str
    path: Path
    config: Mapping[str, str | Secret]  # the `config:` map as Pulumi hands it to the program: strings


def stack_path(stacks_dir: Path, name: str) -> Path:
    return stacks_dir / f"Pulumi.{name}.yaml"


def read_stack(stacks_dir: Path, name: str) -> StackFile:
    path = stack_path(stacks_dir, name)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as err:
        known = ", ".join(list_stacks(stacks_dir)) or "none"
        raise FleetError(f"no stack file {path} (stacks in {stacks_dir}: {known})") from err
    except (OSError, UnicodeDecodeError) as err:
        raise FleetError(f"cannot read {path}: {err}") from err
    return StackFile(name=name, path=path, config=read_stack_config(text, str(path)))


def list_stacks(stacks_dir: Path) -> list[str]:
    if not stacks_dir.is_dir():
        return []
    return sorted(p.name[len("Pulumi."):-len(".yaml")] for p in stacks_dir.glob("Pulumi.*.yaml"))


def fleet_values(config: Mapping[str, str | Secret], secret_keys: Iterable[str] = ()) -> dict[str, Any]:
    """The `fleet:*` values, keys without the prefix, decoded as the program decodes Pulumi's strings.

    Pulumi hands every value over as a string (objects as JSON text); the sections are JSON-decoded,
    everything else stays a string. `pulumi up` and `plan` both read config through this function.
    A secret (`{secure: ...}` in the file, or a key Pulumi marks secret) is refused: `plan` cannot read it.
    """
    values: dict[str, Any] = {}
    secrets = [key for key, text in config.items()
               if key.startswith("fleet:") and (isinstance(text, Secret) or key in set(secret_keys))]
    if secrets:
        raise ConfigError([f"{key}: is a secret; fleet settings are plain values (set them without --secret)"
                           for key in sorted(secrets)])
    for key, text in config.items():
        if not key.startswith("fleet:"):
            continue
        name = key.split(":", 1)[1]
        assert isinstance(text, str)  # secrets were refused above
        if name in SECTIONS:
            try:
                values[name] = json.loads(text)
            except json.JSONDecodeError:
                values[name] = text  # not an object: the validation says what is expected
        else:
            values[name] = text
    return values


def stack_config(stack: StackFile, overrides: Mapping[str, Any] | None = None) -> FleetConfig:
    """Validate a stack file's fleet config; `overrides` replaces keys (e.g. from command-line flags)."""
    try:
        raw = fleet_values(stack.config)
        for dotted, value in (overrides or {}).items():
            section, _, key = dotted.partition(".")
            if key:
                current = raw.get(section)
                raw[section] = {**(current if isinstance(current, Mapping) else {}), key: value}
            else:
                raw[section] = value
        return parse_config(raw)
    except ConfigError as err:
        raise ConfigError([f"{stack.path.name}: {p}" for p in err.problems]) from err


@dataclass(frozen=True)
class Target:
    """Where a stack's variables land: instance, group, environment scope, and what of the group it takes."""

    stack: str
    instance: str  # normalised issuer URL, casefolded
    group: str  # full path (casefolded) or numeric id
    scope: str
    include_subgroups: bool
    include_shared: bool

    def describe(self) -> str:
        return f"stack {self.stack} (group {self.group}{' and its subgroups' if self.include_subgroups else ''})"


def config_target(stack: str, config: FleetConfig) -> Target:
    gl = config.gitlab
    return Target(stack, gl.url.casefold(), gl.group.casefold(), config.variables.environment_scope,
                  gl.include_subgroups, gl.include_shared)


def file_target(stack: StackFile) -> Target | None:
    """The target of a stack file as written; None where its url or group cannot be read (validation reports it)."""
    raw = fleet_values(stack.config)
    gl = raw["gitlab"] if isinstance(raw.get("gitlab"), Mapping) else {}
    va = raw["variables"] if isinstance(raw.get("variables"), Mapping) else {}
    url, _ = normalise_url(gl.get("url"), issuer=True)
    group = gl.get("group")
    if url is None or isinstance(group, bool) or not isinstance(group, (str, int)) or group == "":
        return None
    scope = va.get("environmentScope")
    subgroups, shared = gl.get("includeSubgroups"), gl.get("includeShared")
    return Target(stack.name, url.casefold(), str(group).casefold(), scope if isinstance(scope, str) else "*",
                  subgroups if isinstance(subgroups, bool) else True, shared if isinstance(shared, bool) else False)


def other_targets(stacks_dir: Path, name: str) -> list[Target]:
    """The targets of every other stack file in `stacks_dir`."""
    targets = []
    for other in list_stacks(stacks_dir):
        if other == name:
            continue
        try:
            target = file_target(read_stack(stacks_dir, other))
        except FleetError as err:
            raise FleetError(f"cannot check stack {other} for an overlap with stack {name}: {err}") from err
        if target is not None:
            targets.append(target)
    return targets


def _known_groups(inventory: Inventory) -> dict[str, str]:
    """Group id -> full path (casefolded) for every group the listing names: the group and each project's namespace."""
    known = {str(p.namespace_id): p.path.rsplit("/", 1)[0].casefold() for p in inventory.projects if p.namespace_id}
    if inventory.group.id is not None:
        known[str(inventory.group.id)] = inventory.group.full_path.casefold()
    return known


def _covers(target: Target, group_path: str | None, path: str) -> bool:
    """Whether `target` (its group resolved to `group_path`) holds a project at `path`."""
    if group_path is None:
        return False
    namespace = path.rsplit("/", 1)[0].casefold()
    return namespace == group_path or (target.include_subgroups and is_under(path, group_path))


def _shared_into(target: Target, group_path: str | None, project: Project) -> bool:
    """Whether `project` is shared into `target`'s group (or a subgroup of it, when the target takes subgroups)."""
    if is_numeric_id(target.group) and int(target.group) in project.shared_with_ids:
        return True
    return group_path is not None and any(
        g == group_path or (target.include_subgroups and is_under(g, group_path)) for g in project.shared_with)


def check_overlaps(mine: Target, others: Iterable[Target], inventory: Inventory, planned: Iterable[int]) -> None:
    """Refuse when another stack on this instance with this environment scope could write the same variables.

    `inventory` is this stack's listing (it resolves numeric group ids and says where projects are shared);
    `planned` the ids of the projects given roles.
    """
    known = _known_groups(inventory)
    my_path = inventory.group.full_path.casefold()
    ids = set(planned)
    projects = [p for p in inventory.projects if p.id in ids]
    problems = []
    for other in others:
        if other.instance != mine.instance or other.scope != mine.scope:
            continue
        other_path = known.get(other.group) if is_numeric_id(other.group) else other.group
        if other_path is None and other.include_subgroups:
            problems.append(f"{other.describe()} names its group by an id this listing cannot place, so it may "
                            f"contain group {my_path}: write fleet:gitlab.group of stack {other.stack} as a full path")
            continue
        if other_path is not None and (other_path == my_path or (mine.include_subgroups and is_under(other_path, my_path))
                                       or (other.include_subgroups and is_under(my_path, other_path))):
            problems.append(f"{other.describe()} overlaps group {my_path}")
            continue
        # a project of theirs that this stack takes as shared in, or one this stack plans that they take as shared in
        both = [p.path for p in projects
                if (not is_under(p.path, my_path) and _covers(other, other_path, p.path))
                or (other.include_shared and _shared_into(other, other_path, p))]
        if both:
            problems.append(f"{other.describe()} could also take {', '.join(both)}")
    if problems:
        raise FleetError(
            f"stack {mine.stack} targets {mine.instance} with environment scope {mine.scope!r}, and so do other stacks "
            f"that could write the same projects' CI/CD variables: {'; '.join(problems)}. Give each stack its own "
            "fleet:variables.environmentScope, or groups that do not overlap (fleet:gitlab.exclude, includeSubgroups, "
            "includeShared).")
