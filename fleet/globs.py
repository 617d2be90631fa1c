"""Path globs (`fleet:gitlab.exclude`): the one glob implementation for GitLab paths.

`*` and `?` stay within one path segment, `**` crosses segments, and `**/` also matches no
segment at all (`acme/**/secret` matches `acme/secret`). Matching is case-insensitive, as GitLab
compares paths, and always against the whole path.
"""

from __future__ import annotations

import re


def path_glob(pattern: str) -> re.Pattern[str]:
    """The compiled glob; use `.fullmatch(path)`."""
    out = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out), re.IGNORECASE | re.DOTALL)
