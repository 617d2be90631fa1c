"""Stack files `stacks/Pulumi.<stack>.yaml`: reading them as `pulumi up` does, and refusing stacks that overlap.

Two stacks overlap when some project could get its CI/CD variables from both: same GitLab instance,
same environment scope, and groups that are equal or nested (when the outer one includes
subgroups), or a project shared into one stack's group that lies in the other's. Whatever their
scopes, one stack owns a project's sub claim components: two stacks that could both take a project
are refused when either sets them. Stacks that shard one group (`fleet:shard`) with the same count and
different indexes never share a project (a project's shard depends on its id alone), so they never overlap.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import SECTIONS, SHARD_COUNT_MAX, FleetConfig, ShardConfig, is_numeric_id, normalise_url, parse_config
from .errors import ConfigError, FleetError
from .globs import path_glob
from .inventory import Inventory, Project
from .selection import is_under
from .spelling import spell
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


def region_of(stack: StackFile) -> str:
    """The stack's `aws:region` (where ${region} in policy documents points), or "" when it sets none."""
    region = stack.config.get("aws:region")
    return region if isinstance(region, str) else ""


def display_path(path: Path) -> str:
    """A path as a user at the current directory would type it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


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


def stack_config(stack: StackFile, overrides: Mapping[str, Any] | None = None, flags: Mapping[str, str] | None = None) -> FleetConfig:
    """Validate a stack file's fleet config; `overrides` replaces keys, `flags` names the flag that gave each."""
    try:
        raw = fleet_values(stack.config)
        for dotted, value in (overrides or {}).items():
            section, _, key = dotted.partition(".")
            if key:
                current = raw.get(section)
                raw[section] = {**(current if isinstance(current, Mapping) else {}), key: value}
            else:
                raw[section] = value
        return parse_config(raw, flags)
    except ConfigError as err:
        raise err.in_file(display_path(stack.path)) from err


@dataclass(frozen=True)
class Target:
    """Where a stack's variables land: instance, group, environment scope, and what of the group it takes."""

    stack: str
    instance: str  # normalised issuer URL, casefolded
    group: str  # full path (casefolded) or numeric id
    scope: str
    include_subgroups: bool
    include_shared: bool
    exclude: tuple[str, ...] = ()
    subject: str = "path"  # fleet:trust.subject
    protected_refs_only: bool = False  # fleet:trust.protectedRefsOnly
    shard: ShardConfig | None = None  # fleet:shard

    @property
    def sets_sub_claims(self) -> bool:
        """Whether the stack sets its projects' sub claim components (gitlab.com pins protected refs by a key)."""
        return self.subject == "id" or (self.protected_refs_only and self.instance != "https://gitlab.com")

    def describe(self) -> str:
        shard = f", shard {self.shard.index} of {self.shard.count}" if self.shard else ""
        return f"stack {self.stack} (group {self.group}{' and its subgroups' if self.include_subgroups else ''}{shard})"

    def disjoint_shard(self, other: Target) -> bool:
        """True when both stacks shard with one count and different indexes: no project is in both."""
        return (self.shard is not None and other.shard is not None and self.shard.count == other.shard.count
                and self.shard.index != other.shard.index)


def config_target(stack: str, config: FleetConfig) -> Target:
    gl = config.gitlab
    return Target(stack, gl.url.casefold(), gl.group.casefold(), config.variables.environment_scope,
                  gl.include_subgroups, gl.include_shared, gl.exclude, config.subject, config.protected_refs_only,
                  config.shard)


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
    subgroups, shared, exclude = gl.get("includeSubgroups"), gl.get("includeShared"), gl.get("exclude")
    tr = raw["trust"] if isinstance(raw.get("trust"), Mapping) else {}
    subject, protected = tr.get("subject"), tr.get("protectedRefsOnly")
    return Target(stack.name, url.casefold(), str(group).casefold(), scope if isinstance(scope, str) else "*",
                  subgroups if isinstance(subgroups, bool) else True, shared if isinstance(shared, bool) else False,
                  tuple(g for g in exclude if isinstance(g, str)) if isinstance(exclude, list) else (),
                  subject if isinstance(subject, str) else "path", protected is True, _file_shard(raw.get("shard")))


def _file_shard(value: Any) -> ShardConfig | None:
    """A stack file's fleet:shard as written; None where it is absent or invalid (counted as unsharded, which
    overlaps every shard: the stack's own validation says what is wrong)."""
    if not isinstance(value, Mapping):
        return None
    count, index = value.get("count"), value.get("index")
    if not isinstance(count, int) or not isinstance(index, int) or isinstance(count, bool) or isinstance(index, bool):
        return None
    return ShardConfig(count, index) if 1 <= count <= SHARD_COUNT_MAX and 0 <= index < count else None


def other_targets(stacks_dir: Path, name: str) -> list[Target]:
    """The targets of every other stack file in `stacks_dir`."""
    targets = []
    for other in list_stacks(stacks_dir):
        if other == name:
            continue
        try:
            target = file_target(read_stack(stacks_dir, other))
        except FleetError as err:
            wrapped = FleetError(f"cannot check stack {other} for an overlap with stack {name}: {err}")
            wrapped.exit_code = err.exit_code  # an invalid stack file stays a configuration error
            raise wrapped from err
        if target is not None:
            targets.append(target)
    return targets


def _known_groups(inventory: Inventory) -> dict[str, str]:
    """Group id -> full path (casefolded) for every group the listing names: the group and each project's namespace."""
    known = {str(p.namespace_id): p.path.rsplit("/", 1)[0].casefold() for p in inventory.projects if p.namespace_id}
    if inventory.group.id is not None:
        known[str(inventory.group.id)] = inventory.group.full_path.casefold()
    return known


def _takes(target: Target, group_path: str | None, project: Project) -> bool:
    """Whether `target` would give `project` a role, as far as its stack file tells: the project lies in its
    group (subgroups only when it takes them) or is shared into it (when it takes shared projects), and
    none of its exclude globs matches. `group_path` is its group resolved through this listing, if known."""
    namespace = project.path.rsplit("/", 1)[0].casefold()
    if group_path is not None:
        inside = namespace == group_path or is_under(project.path, group_path)
        taken = (namespace == group_path or target.include_subgroups) if inside else (
            target.include_shared and any(g == group_path or (target.include_subgroups and is_under(g, group_path))
                                          for g in project.shared_with))
    else:  # a group id this listing does not place; the caller refuses it where it could hide projects
        group_id = int(target.group)
        taken = project.namespace_id == group_id or (target.include_shared and group_id in project.shared_with_ids)
    return taken and not any(path_glob(g).fullmatch(project.path) for g in target.exclude)


def check_overlaps(mine: Target, others: Iterable[Target], inventory: Inventory, planned: Iterable[int]) -> None:
    """Refuse when another stack on this instance with this environment scope could write the variables of a
    project this stack plans, or another stack on this instance could take it and either sets sub claim
    components (the second would record the first's value as the one to give back, and the first, when it
    goes, would give back what the second's roles no longer trust).

    `inventory` is this stack's listing (it resolves numeric group ids and says where projects are shared);
    `planned` the ids of the projects given roles.
    """
    known = _known_groups(inventory)
    ids = set(planned)
    projects = [p for p in inventory.projects if p.id in ids]
    problems: list[str] = []
    claims: list[str] = []
    shard_problems: list[str] = []
    for other in others:
        if other.instance != mine.instance or mine.disjoint_shard(other):
            continue
        if other.scope != mine.scope and not (other.sets_sub_claims or mine.sets_sub_claims):
            continue
        other_path = known.get(other.group) if is_numeric_id(other.group) else other.group
        unplaceable = other.include_subgroups or any(p.namespace_id is None for p in projects)
        if other_path is None and unplaceable and projects:
            problems.append(f"{other.describe()} names its group by an id this listing cannot place, so it may "
                            f"hold projects of this stack: write fleet:gitlab.group of stack {other.stack} as a full path")
            continue
        both = [p.path for p in projects if _takes(other, other_path, p)]
        if both:
            listed = ", ".join(both[:5]) + (f" and {len(both) - 5} more" if len(both) > 5 else "")
            if mine.shard and other.shard and mine.shard.count != other.shard.count:
                shard_problems.append(f"{other.describe()} shares the group's projects {listed} with it")
            elif other.scope == mine.scope:
                problems.append(f"{other.describe()} could also take {listed}")
            else:
                claims.append(f"stack {mine.stack} and {other.describe()} could both take {listed}")
    if shard_problems:
        assert mine.shard is not None
        raise FleetError(
            f"stack {mine.stack} is shard {mine.shard.index} of {mine.shard.count}, and shards of another count overlap "
            f"it: {'; '.join(shard_problems)}. A project's shard depends on the count, so shards of different counts "
            "share projects: give every shard stack of the group the same fleet:shard.count.")
    if claims:
        raise FleetError(
            f"{'; '.join(claims)}, and one stack owns a project's sub claim components, which at least one of them "
            "sets (fleet:trust.subject id, or protectedRefsOnly on a self-managed instance): let one of them leave those "
            "projects out (fleet:gitlab.exclude, includeSubgroups, includeShared), or have neither set them.")
    if problems:
        raise FleetError(
            f"stack {mine.stack} targets {mine.instance} with environment scope {spell(mine.scope)}, and so do other stacks "
            f"that could write the CI/CD variables of projects it plans: {'; '.join(problems)}. Give each stack its own "
            "fleet:variables.environmentScope, or let one of them leave those projects out (fleet:gitlab.exclude, "
            "includeSubgroups, includeShared).")
