"""Reading the JSON files users hand the command line (saved listings, stack outputs)."""

from __future__ import annotations

import json
from typing import Any

from .errors import FleetError


def read_json(path: str, what: str, error: type[FleetError] = FleetError) -> Any:
    """The decoded file, or `error` saying in one sentence why it cannot be read (`what` names the file's role)."""
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except OSError as err:
        raise error(f"cannot read {what} {path}: {err.strerror}") from err
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise error(f"{what} {path} is not valid JSON: {err}") from err
