"""Role names a stack has deployed: its `roleNames` output (project id -> role name), validated.

`pulumi up` reads them from the stack's own previous outputs; `plan --deployed FILE` from
`pulumi stack output --json` saved to a file. Names already deployed win over the naming rule, so
that no project's role is renamed because another project came, went or was skipped.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from .errors import FleetError
from .jsonfile import read_json

OUTPUT = "roleNames"
_ROLE_NAME_RE = re.compile(r"[A-Za-z0-9+=,.@_-]{1,64}")
_PROJECT_ID_RE = re.compile(r"[1-9][0-9]{0,18}")


def parse_deployed(value: Any, source: str) -> dict[int, str]:
    """The `roleNames` map (`{"<project id>": "<role name>"}`); None (never deployed) is empty."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise FleetError(f"{source}: {OUTPUT} is {type(value).__name__}; expected a map of project id to role name")
    names: dict[int, str] = {}
    for key, name in value.items():
        if not isinstance(key, str) or not _PROJECT_ID_RE.fullmatch(key):
            raise FleetError(f"{source}: {OUTPUT} key {key!r} is not a project id")
        if not isinstance(name, str) or not _ROLE_NAME_RE.fullmatch(name):
            raise FleetError(f"{source}: {OUTPUT}[{key}] is {name!r}; expected an IAM role name")
        names[int(key)] = name
    return names


def load_deployed(path: str) -> dict[int, str]:
    """Names from a file holding the stack's outputs (`pulumi stack output --json > FILE`)."""
    outputs = read_json(path, "stack outputs")
    if not isinstance(outputs, Mapping):
        raise FleetError(f"{path}: expected the stack's outputs as a JSON object (pulumi stack output --json)")
    if OUTPUT not in outputs:
        raise FleetError(f"{path} has no {OUTPUT} output: give the outputs of a stack this version has deployed, "
                         "or leave --deployed out for a stack that has none")
    return parse_deployed(outputs[OUTPUT], path)


def deployed_output(names: Mapping[int, str]) -> dict[str, str]:
    """The `roleNames` output for these names."""
    return {str(project_id): name for project_id, name in sorted(names.items())}
