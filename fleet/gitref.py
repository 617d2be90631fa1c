"""git's rules for branch and tag names (`git check-ref-format --branch`), in one place.

Used for the refs the stack allows (where `*` and `?` are globs) and for default branches GitLab
lists (where they cannot occur). Names may hold any other Unicode character, as git allows.
"""

from __future__ import annotations

import re

from .spelling import spell

_FORBIDDEN = re.compile(r"[\x00-\x20\x7f~^:\\\[]")  # ASCII controls, space, ~ ^ : \ [


def ref_problem(name: str, *, globs: bool = False) -> str | None:
    """What makes `name` not a git branch or tag name, or None when it is one. `globs` allows `*` and `?`."""
    if not name:
        return "it is empty"
    bad = _FORBIDDEN.search(name)
    if bad:
        char = bad.group()
        return "it holds a space" if char == " " else f"it holds {spell(char)}, which git does not allow in a ref"
    if not globs and ("*" in name or "?" in name):
        return "it holds '*' or '?', which git does not allow in a ref"
    for part, why in (("..", "'..'"), ("@{", "'@{'"), ("//", "'//'")):
        if part in name:
            return f"it holds {why}, which git does not allow in a ref"
    if name == "@":
        return "'@' alone is not a ref name"
    if name.startswith(("/", "-")) or name.endswith(("/", ".", ".lock")):
        return "it starts with '/' or '-', or ends with '/', '.' or '.lock'"
    if any(part.startswith(".") for part in name.split("/")):
        return "a part of it starts with '.'"
    return None
