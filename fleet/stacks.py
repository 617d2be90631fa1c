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


def _target(config: Mapping[str, Any]) -> tuple[str, str, str] | None:
    """(instance, group, environment scope) a stack file's variables land in, compared ignoring case."""
    raw = fleet_values(config)
    gl = raw.get("gitlab") if isinstance(raw.get("gitlab"), Mapping) else {}
    va = raw.get("variables") if isinstance(raw.get("variables"), Mapping) else {}
    url, group = gl.get("url"), gl.get("group")
    if not isinstance(url, str) or group is None:
        return None
    scope = va.get("environmentScope") or "*"
    return url.rstrip("/").casefold(), str(group).casefold(), str(scope)


def check_conflicts(stacks_dir: Path, name: str) -> None:
    """Refuse when another stack file targets the same group and environment scope as stack `name`.

    The files are compared as written: they are what `pulumi up` deploys.
    """
    mine = _target(read_stack(stacks_dir, name).config)
    if mine is None:
        return  # its missing url or group is reported by the config validation
    clashes = []
    for other in list_stacks(stacks_dir):
        if other == name:
            continue
        try:
            target = _target(read_stack(stacks_dir, other).config)
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
