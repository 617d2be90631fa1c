"""How messages show values and suggest names: as YAML spells a value, and the name a typo was meant to be."""

from __future__ import annotations

import difflib
import json
from typing import Any


class Missing:
    """A key that is not set (told apart from one set to null)."""

    def __repr__(self) -> str:
        return "missing"


MISSING = Missing()


def spell(value: Any) -> str:
    """A value as YAML spells it (`null`, `true`, `"12"`, `["a"]`, `"acmé"`), or `missing`.

    Characters that do not print (line breaks, zero-width spaces) are shown as escapes.
    """
    if isinstance(value, Missing):
        return "missing"
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        return repr(value)
    return "".join(c if c.isprintable() else json.dumps(c)[1:-1] for c in text)


def did_you_mean(name: str, known: list[str]) -> str | None:
    """The known name a misspelt one was meant to be: same letters in another case, or a close spelling."""
    folded = [k for k in known if k.casefold() == name.casefold()]
    close = folded or difflib.get_close_matches(name, known, n=1, cutoff=0.75)
    return close[0] if close else None
