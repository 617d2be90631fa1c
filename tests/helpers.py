"""Small builders shared by the tests."""

from __future__ import annotations

import copy
from typing import Any

from fleet.config import FleetConfig, parse_config

BASE_RAW: dict[str, Any] = {
    "accountId": "111111111111",
    "gitlab": {"url": "https://gitlab.example.com", "group": "shop"},
    "trust": {"refs": ["branch:main"]},
}


def raw_config(**sections: Any) -> dict[str, Any]:
    """BASE_RAW with whole sections or top-level keys replaced (gitlab=..., trust=..., accountId=...)."""
    raw = copy.deepcopy(BASE_RAW)
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(raw.get(key), dict):
            raw[key] = {**raw[key], **value}
        else:
            raw[key] = value
    return raw


def make_config(**sections: Any) -> FleetConfig:
    return parse_config(raw_config(**sections))
