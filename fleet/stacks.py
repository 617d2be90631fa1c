"""Stack files `stacks/Pulumi.<stack>.yaml`: reading them, and refusing stacks that would collide."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import yaml

from .config import FleetConfig, fleet_values, parse_config
from .errors import ConfigError, FleetError

PROJECT_DIR = Path(__file__).resolve().parent.parent
DEFAULT_STACKS_DIR = PROJECT_DIR / "stacks"


@dataclass(frozen=True)
class StackFile:
    name: str
    path: Path
    config: Mapping[str, Any]  # the file's `config:` map, namespaced keys as written


def stack_path(stacks_dir: Path, name: str) -> Path:
    return stacks_dir / f"Pulumi.{name}.yaml"


def read_stack(stacks_dir: Path, name: str) -> StackFile:
    path = stack_path(stacks_dir, name)
    try:
        with open(path, encoding="utf-8") as handle:
            data = yaml.safe_load(handle) or {}
    except FileNotFoundError as err:
        known = ", ".join(list_stacks(stacks_dir)) or "none"
        raise FleetError(f"no stack file {path} (stacks in {stacks_dir}: {known})") from err
    except yaml.YAMLError as err:
        raise FleetError(f"{path} is not valid YAML: {err}") from err
    config = data.get("config") if isinstance(data, Mapping) else None
    if not isinstance(config, Mapping):
        raise FleetError(f"{path}: expected a top-level 'config:' map")
    return StackFile(name=name, path=path, config=config)


def list_stacks(stacks_dir: Path) -> list[str]:
    if not stacks_dir.is_dir():
        return []
    return sorted(p.name[len("Pulumi."):-len(".yaml")] for p in stacks_dir.glob("Pulumi.*.yaml"))


def stack_config(stack: StackFile, overrides: Mapping[str, Any] | None = None) -> FleetConfig:
    """Validate a stack file's fleet config; `overrides` replaces keys (e.g. from command-line flags)."""
    raw = fleet_values(stack.config)
    for dotted, value in (overrides or {}).items():
        section, _, key = dotted.partition(".")
        if key:
            raw[section] = {**(raw.get(section) or {}), key: value}
        else:
            raw[section] = value
    try:
        return parse_config(raw)
    except ConfigError as err:
        raise ConfigError([f"{stack.path.name}: {p}" for p in err.problems]) from err


Target = tuple[str, str, str]  # (instance, group, environment scope) a stack's variables land in


def _target(url: str, group: object, scope: str) -> Target:
    return url.rstrip("/").casefold(), str(group).casefold(), scope


def config_target(config: FleetConfig) -> Target:
    return _target(config.gitlab.url, config.gitlab.group, config.variables.environment_scope)


def file_target(stack: StackFile) -> Target | None:
    """The target of a stack file as written; None where its url or group is missing."""
    raw = fleet_values(stack.config)
    gl = raw.get("gitlab") if isinstance(raw.get("gitlab"), Mapping) else {}
    va = raw.get("variables") if isinstance(raw.get("variables"), Mapping) else {}
    url, group = gl.get("url"), gl.get("group")
    if not isinstance(url, str) or group is None:
        return None
    return _target(url, group, str(va.get("environmentScope") or "*"))


def check_conflicts(stacks_dir: Path, name: str, mine: Target | None) -> None:
    """Refuse when another stack file in `stacks_dir` has the same target as stack `name`.

    Callers pass their own target: the CLI its file as written (a --group override is a what-if),
    the Pulumi program the config it runs with.
    """
    if mine is None:
        return  # a missing url or group is reported by the config validation
    clashes = []
    for other in list_stacks(stacks_dir):
        if other == name:
            continue
        try:
            target = file_target(read_stack(stacks_dir, other))
        except FleetError as err:
            raise FleetError(f"cannot check stack {other} for a clash with stack {name}: {err}") from err
        if target == mine:
            clashes.append(other)
    if clashes:
        instance, group, scope = mine
        raise FleetError(
            f"stack {name} and stack(s) {', '.join(clashes)} both target group {group} on {instance} with "
            f"environment scope {scope!r}: their CI/CD variables would overwrite each other. Give each stack "
            f"its own fleet:variables.environmentScope.")
