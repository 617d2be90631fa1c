"""A preview as GitLab-flavoured Markdown for a merge-request note: the counts, then what changes per project, in words.

Every value from the events is escaped for Markdown and HTML and shown inside <code> (GitLab makes no references or
mentions there). The text never exceeds `limit`: whole project sections are left out, and the last line says so.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from .changes import (
    SECRET,
    UNKNOWN,
    Changes,
    OpCounts,
    ResourceChange,
    State,
    Summary,
    TrustConditions,
    describe_sub,
    project_paths,
    summarize,
    trust_conditions,
)
from .plan import ACCOUNT_VARIABLE, ROLE_VARIABLE

SHOWN_VARIABLES = frozenset({ROLE_VARIABLE, ACCOUNT_VARIABLE})  # their values are no secret: shown in full
PROJECT_KINDS = frozenset({"project", "role", "inline-policy", "attachment", "inline-exclusive", "attachments-exclusive",
                           "variable", "sub-claim"})
# Inline Markdown that could act inside <code>: emphasis, code spans, links, tables, strikethrough, math.
_MD_SPECIAL = re.compile(r"([\\`*_\[\]|~$])")
_KEYWORD = re.compile(r"[a-z][a-z0-9-]*")
_ROLE_SETTINGS = {"description": "description", "maxSessionDuration": "maximum session duration",
                  "permissionsBoundary": "permissions boundary", "path": "path", "name": "name"}


# --- escaping ---

def text(value: object) -> str:
    """A value as literal text in GitLab Markdown: Markdown punctuation backslash-escaped, then HTML-escaped."""
    s = str(value).replace("\r", " ").replace("\n", " ")
    return html.escape(_MD_SPECIAL.sub(r"\\\1", s), quote=True)


def code(value: object) -> str:
    """A value from the events or GitLab, inside <code>: GitLab makes no mentions, references or emoji there."""
    return f"<code>{text(value)}</code>"


def html_code(value: object) -> str:
    """A value inside <code> on an HTML block's line (e.g. <summary>): Markdown is not read there, so only HTML-escaped."""
    return f"<code>{html.escape(str(value).replace(chr(13), ' ').replace(chr(10), ' '), quote=True)}</code>"


def keyword(value: str) -> str:
    """A keyword of ours (a skip reason, an op) as plain text, or in <code> when it is anything else."""
    return value if _KEYWORD.fullmatch(value) else code(value)


def number(n: int) -> str:
    return f"{n:,}"


def value_words(value: Any) -> str:
    """A value for a reader: unknown and secret values in words, anything else in <code>."""
    if value == UNKNOWN:
        return "(known after apply)"
    if value == SECRET:
        return "(secret)"
    if value is None:
        return "(none)"
    return code(value if isinstance(value, str) else _compact(value))


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def plural(n: int, word: str) -> str:
    return f"{number(n)} {word}{'' if n == 1 else 's'}"


# --- the summary ---

def op_counts(counts: OpCounts) -> str:
    parts = [f"+{number(counts.created)}", f"~{number(counts.updated)}", f"\N{MINUS SIGN}{number(counts.deleted)}",
             f"\N{PLUS-MINUS SIGN}{number(counts.replaced)}"]
    if counts.imported:
        parts.append(f"={number(counts.imported)} imported")
    return " ".join(parts)


def summary_lines(summary: Summary) -> list[str]:
    projects = [f"{number(len(summary.projects_new))} newly found", f"{number(len(summary.projects_gone))} gone"]
    if summary.skipped is None:
        projects.append("skipped: not known from this preview")
    else:
        reasons: dict[str, int] = {}
        for s in summary.skipped:
            reasons[s.reason] = reasons.get(s.reason, 0) + 1
        detail = ", ".join(f"{number(n)} {keyword(r)}" for r, n in sorted(reasons.items()))
        projects.append(f"{number(len(summary.skipped))} skipped" + (f" ({detail})" if detail else ""))
    return [f"**Roles** {op_counts(summary.roles)} · **Policies** {op_counts(summary.policies)} · "
            f"**Variables** {op_counts(summary.variables)}",
            "",
            f"**Projects** {', '.join(projects)}"]


# --- trust ---

def trust_change_lines(old: TrustConditions | None, new: TrustConditions | None, *, project_path: str | None,
                       old_known: bool = True, new_known: bool = True) -> list[str]:
    """What changes in who may assume the role, in words. `*_known` False: that side's policy is secret or unknown."""
    if not old_known or not new_known:
        return ["its trust policy changes (the new policy is not known until apply)" if not new_known
                else "its trust policy changes (the old policy could not be read)"]
    if old is None or new is None:
        return []
    lines = []
    if old.audiences != new.audiences:
        lines.append(f"audience changes from {_joined(old.audiences)} to {_joined(new.audiences)}")
    old_refs = {describe_sub(s) for s in old.subs}
    new_refs = {describe_sub(s) for s in new.subs}
    old_paths = {p for p, _ in old_refs}
    new_paths = {p for p, _ in new_refs}
    # "Follows the project" only for one path that became another; a second project added is listed as such below.
    if len(old_paths) == len(new_paths) == 1 and old_paths != new_paths and {r for _, r in old_refs} == {r for _, r in new_refs}:
        lines.append(f"trust follows the project to {_joined(new_paths)} (was {_joined(old_paths)}), same refs")
        return lines
    added = sorted(new_refs - old_refs, key=_sub_key)
    removed = sorted(old_refs - new_refs, key=_sub_key)
    if added:
        lines.append("now also admits " + ", ".join(_sub_words(s, project_path) for s in added))
    if removed:
        lines.append("no longer admits " + ", ".join(_sub_words(s, project_path) for s in removed))
    return lines


def trust_words(t: TrustConditions | None, project_path: str | None) -> str:
    if t is None:
        return "a trust policy known after apply"
    refs = sorted({describe_sub(s) for s in t.subs}, key=_sub_key)
    return "admitting " + (", ".join(_sub_words(s, project_path) for s in refs) or "no subject") + \
        f" (audience {_joined(t.audiences)})"


def _sub_key(s: tuple[str | None, str]) -> tuple[str, str]:
    return (s[0] or "", s[1])


def _sub_words(s: tuple[str | None, str], project_path: str | None) -> str:
    path, ref = s
    if path is None:
        return f"sub {code(ref)}"
    kind, _, name = ref.partition(" ")
    words = f"{keyword(kind)} {code(name)}"
    return words if path == project_path else f"{words} of {code(path)}"


def _joined(values: Iterable[str | None]) -> str:
    shown = [code(v) for v in sorted(v for v in values if v is not None)]
    return ", ".join(shown) if shown else "(none)"


def _trust_value(state: State | None) -> Any:
    if state is None:
        return None
    value = state.inputs.get("assumeRolePolicy")
    return value if value is not None else state.outputs.get("assumeRolePolicy")


def _read_trust(state: State | None) -> tuple[TrustConditions | None, bool]:
    value = _trust_value(state)
    return trust_conditions(value), value not in (SECRET, UNKNOWN)


# --- one project ---

def _prop(state: State | None, key: str, *, outputs_first: bool = False) -> Any:
    if state is None:
        return None
    first, second = (state.outputs, state.inputs) if outputs_first else (state.inputs, state.outputs)
    return first.get(key, second.get(key))


def role_lines(c: ResourceChange, project_path: str | None) -> list[str]:
    old_name, new_name = _prop(c.old, "name"), _prop(c.new, "name")
    if c.op == "create":
        trust, _ = _read_trust(c.new)
        return [f"role {value_words(new_name)} created, {trust_words(trust, project_path)}"]
    if c.op == "delete":
        return [f"role {value_words(old_name)} deleted"]
    if c.op == "import":
        return [f"role {value_words(new_name)} adopted (imported)"]
    lines = []
    if c.op == "replace":
        if old_name != new_name:
            lines.append(f"role renamed: {value_words(old_name)} → {value_words(new_name)} (replaced: a new role is "
                         "created and the old one deleted)")
        else:
            keys = ", ".join(code(k) for k in c.replace_keys) or "its settings"
            lines.append(f"role {value_words(new_name)} replaced (because of {keys})")
    old_trust, old_known = _read_trust(c.old)
    new_trust, new_known = _read_trust(c.new)
    if _trust_value(c.old) != _trust_value(c.new) or "assumeRolePolicy" in c.diffs:
        lines += [f"trust: {line}" for line in trust_change_lines(old_trust, new_trust, project_path=project_path,
                                                                   old_known=old_known, new_known=new_known)]
    for key, words in _ROLE_SETTINGS.items():
        if key == "name" and c.op == "replace":
            continue
        before, after = _prop(c.old, key), _prop(c.new, key)
        if before != after or key in c.diffs:
            lines.append(f"{words} changes from {value_words(before)} to {value_words(after)}")
    lines += _tag_lines(_prop(c.old, "tags"), _prop(c.new, "tags"))
    if c.op == "update" and not lines:
        lines.append("role settings change" + (f" ({', '.join(code(d) for d in c.diffs)})" if c.diffs else ""))
    return lines


def _tag_lines(old: Any, new: Any) -> list[str]:
    old = old if isinstance(old, Mapping) else {}
    new = new if isinstance(new, Mapping) else {}
    return [f"tag {code(k)} changes from {value_words(old.get(k))} to {value_words(new.get(k))}"
            for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]


def policy_lines(c: ResourceChange) -> list[str]:
    entry = code(c.entry or c.name)
    inline = c.kind == "inline-policy"
    words = {
        "create": f"inline policy {entry} added" if inline else f"policy {entry} attached",
        "delete": f"inline policy {entry} removed" if inline else f"policy {entry} detached",
        "update": f"inline policy {entry} changes (its document)" if inline else f"attachment of {entry} changes",
        "replace": f"inline policy {entry} replaced" if inline else f"policy {entry} re-attached (its ARN changes)",
        "import": f"inline policy {entry} adopted (imported)" if inline else f"attachment of {entry} adopted (imported)",
    }
    return [words[c.op]] if c.op in words else []


def exclusive_lines(c: ResourceChange, removed_by_program: set[str]) -> list[str]:
    """What `up` removes because it was added outside Pulumi (the exclusive resources' refreshed lists)."""
    if c.op != "update":
        return []
    key = "policyNames" if c.kind == "inline-exclusive" else "policyArns"
    held, declared = _prop(c.old, key, outputs_first=True), _prop(c.new, key)
    if not isinstance(held, list) or not isinstance(declared, list):
        return []
    extra = sorted(str(v) for v in set(map(str, held)) - set(map(str, declared)) - removed_by_program)
    if not extra:
        return []
    what = "inline policies" if c.kind == "inline-exclusive" else "attached policies"
    return [f"{what} added outside Pulumi are removed: {', '.join(code(v) for v in extra)}"]


# The shapes the two variables' values have when the program sets them; anything else someone typed is not shown.
_SHOWN_SHAPES = {ROLE_VARIABLE: re.compile(r"arn:aws[a-z-]*:iam::[0-9]{12}:role/[A-Za-z0-9_+=,.@/-]{1,576}"),
                 ACCOUNT_VARIABLE: re.compile(r"[0-9]{12}")}


def variable_value(key: str, value: Any, *, masked: Any = False) -> str:
    """A variable's value as the note may show it: only ROLE_ARN and GITLAB_AWS_ACCOUNT_ID, unmasked, in the shape the
    program gives them (a hand-edited value could be anything, even a secret); else "(not shown)"."""
    if value in (UNKNOWN, SECRET):
        return value_words(value)
    shape = _SHOWN_SHAPES.get(key)
    if shape is not None and masked is not True and isinstance(value, str) and shape.fullmatch(value):
        return value_words(value)
    return "(not shown)"


def variable_lines(c: ResourceChange) -> list[str]:
    key = c.entry or c.name
    shown = key in SHOWN_VARIABLES
    old_value, new_value = _prop(c.old, "value"), _prop(c.new, "value")

    def value(v: Any) -> str:
        return variable_value(key, v, masked=_prop(c.new, "masked") or _prop(c.old, "masked"))

    if c.op == "create":
        return [f"variable {code(key)} created" + (f" = {value(new_value)}" if shown else "")]
    if c.op == "delete":
        return [f"variable {code(key)} deleted"]
    if c.op == "import":
        return [f"variable {code(key)} adopted (imported)"]
    if c.op not in ("update", "replace"):
        return []
    changed = sorted(set(c.diffs) | {k for k in ("value", "protected", "masked", "environmentScope", "description")
                                     if _prop(c.old, k) != _prop(c.new, k)})
    parts = []
    if "value" in changed and shown:
        parts.append(f"value {value(old_value)} → {value(new_value)}")
    other = [code(k) for k in changed if k != "value" or not shown]
    if other:
        parts.append("changes " + ", ".join(other))
    verb = "replaced" if c.op == "replace" else "changes"
    return [f"variable {code(key)} {verb}" + (f": {'; '.join(parts)}" if parts else "")]


def sub_claim_lines(c: ResourceChange) -> list[str]:
    """The project's `ci_id_token_sub_claim_components` the stack sets (fleet:trust.subject / protectedRefsOnly)."""
    components = _prop(c.new, "components")
    if c.op == "create":
        return [f"its tokens' sub claim components set to {value_words(components)} (the role trusts both forms this run)"]
    if c.op == "delete":
        return [f"its sub claim components given back: {value_words(_prop(c.old, 'original'))}"]
    if c.op in ("update", "replace"):
        return [f"its sub claim components change from {value_words(_prop(c.old, 'components'))} to {value_words(components)}"]
    return []


def project_section(project_id: int, path: tuple[str | None, str | None], resources: Sequence[ResourceChange]) -> str:
    old_path, new_path = path
    shown_path = new_path or old_path
    component = next((c for c in resources if c.kind == "project"), None)
    if component is not None and component.op == "create":
        status = "new project"
    elif component is not None and component.op == "delete":
        status = "gone from the fleet: its role, policies and variables are deleted"
    elif old_path is not None and new_path is not None and old_path != new_path:
        status = f"renamed or moved from {html_code(old_path)}"
    else:
        status = "changes"
    lines: list[str] = []
    order = ("role", "inline-policy", "attachment", "inline-exclusive", "attachments-exclusive", "variable", "sub-claim")
    removed = {c.entry or "" for c in resources if c.kind == "inline-policy" and c.op == "delete"}
    for kind in order:
        for c in sorted((r for r in resources if r.kind == kind), key=lambda r: r.name):
            if kind == "role":
                lines += role_lines(c, shown_path)
            elif kind in ("inline-policy", "attachment"):
                lines += policy_lines(c)
            elif kind in ("inline-exclusive", "attachments-exclusive"):
                lines += exclusive_lines(c, removed)
            elif kind == "sub-claim":
                lines += sub_claim_lines(c)
            else:
                lines += variable_lines(c)
            if c.failed:
                lines.append(f"the engine reported an error for {code(c.name)}")
    summary = f"{html_code(shown_path) if shown_path else 'a project'} (project {project_id}): {status}"
    body = "\n".join(f"- {line}" for line in lines) or "- no change a reviewer needs to see"
    return f"<details><summary>{summary}</summary>\n\n{body}\n\n</details>\n"


# --- stack-wide ---

def stack_lines(changes: Sequence[ResourceChange]) -> list[str]:
    lines = []
    for c in changes:
        if not c.changed or c.kind in PROJECT_KINDS or c.kind in ("stack", "stack-reference"):
            continue
        if c.kind == "oidc-provider":
            lines.append(_oidc_line(c))
        elif c.kind == "managed-policy":
            entry = code(c.entry or c.name)
            lines.append({"create": f"managed policy {entry} created", "delete": f"managed policy {entry} deleted",
                          "update": f"managed policy {entry} changes (its document or settings)",
                          "replace": f"managed policy {entry} replaced"}.get(c.op, f"managed policy {entry}: {keyword(c.op)}"))
        elif c.kind == "provider":
            lines.append(f"provider {code(c.name)} ({code(c.type)}): {keyword(c.op)} (its settings are not shown)")
        else:
            lines.append(f"{code(c.type)} {code(c.name)}: {keyword(c.op)}")
    return lines


def _oidc_line(c: ResourceChange) -> str:
    url = value_words(_prop(c.new, "url") or _prop(c.old, "url"))
    if c.op in ("create", "delete"):
        return f"the account's OIDC provider for {url} is {'created' if c.op == 'create' else 'deleted'}"
    before, after = _prop(c.old, "clientIdLists"), _prop(c.new, "clientIdLists")
    parts = []
    if before != after:
        parts.append(f"audiences {value_words(before)} → {value_words(after)}")
    if _prop(c.old, "url") != _prop(c.new, "url"):
        parts.append(f"URL {value_words(_prop(c.old, 'url'))} → {value_words(_prop(c.new, 'url'))}")
    verb = "is replaced" if c.op == "replace" else "changes"
    return f"the OIDC provider {verb}" + (f": {'; '.join(parts)}" if parts else "")


# --- the note ---

def group_by_project(changes: Sequence[ResourceChange]) -> dict[int, list[ResourceChange]]:
    by_project: dict[int, list[ResourceChange]] = {}
    for c in changes:
        if c.kind in PROJECT_KINDS and c.project_id is not None:
            by_project.setdefault(c.project_id, []).append(c)
    return by_project


def fit(head: str, sections: Iterable[str], *, total: int, limit: int, omitted: Callable[[int], str]) -> str:
    """`head` and as many whole sections (of `total`, made as needed) as fit in `limit` characters, then `omitted(n)`
    naming how many were left out. Everything, without that line, when everything fits."""
    reserve = len(omitted(total))  # the longest the closing line can be
    kept: list[str] = [head]
    size = len(head)
    rest: list[str] = []
    rest_size = 0
    for section in sections:
        if not rest and size + len(section) + reserve <= limit:
            kept.append(section)
            size += len(section)
            continue
        rest.append(section)  # kept only while everything might still fit without the closing line
        rest_size += len(section)
        if size + rest_size > limit:
            break
    else:
        if size + rest_size <= limit:
            return "".join(kept + rest)
    return _capped("".join(kept) + omitted(total - (len(kept) - 1)), limit)


def _omitted_projects(n: int) -> str:
    return (f"\n_The details of {plural(n, 'more project')} were left out to keep this note within GitLab's size "
            "limit; the counts above include them._\n")


def render_preview(changes: Changes | Sequence[ResourceChange], *, stack: str, limit: int = 1_000_000) -> str:
    """The merge-request note for one stack's preview (at most `limit` characters)."""
    changes = Changes.of(changes)
    resources = changes.resources
    summary = summarize(changes)
    title = f"### Preview of stack {code(stack)}\n\n"
    paths = project_paths(resources)
    by_project = {pid: rs for pid, rs in group_by_project(resources).items() if any(r.changed for r in rs)}
    stack_wide = stack_lines(resources)
    if not by_project and not stack_wide and not summary.changed:
        return _capped(f"**No changes** in stack {code(stack)}: every role, policy and variable matches the program.\n",
                       limit)
    head = title + "\n".join(summary_lines(summary)) + "\n\n"
    if changes.errors:
        head += f"**The preview reported {plural(len(changes.errors), 'error')}**: see the job log.\n\n"
    if stack_wide:
        head += "**Stack-wide**\n\n" + "\n".join(f"- {line}" for line in stack_wide) + "\n\n"
    order = sorted(by_project, key=lambda pid: ((paths.get(pid, (None, None))[1] or paths.get(pid, (None, None))[0]
                                                 or ""), pid))
    sections = (project_section(pid, paths.get(pid, (None, None)), by_project[pid]) for pid in order)
    return fit(head, sections, total=len(order), limit=limit, omitted=_omitted_projects)


def _capped(s: str, limit: int) -> str:
    return s if len(s) <= limit else s[: max(0, limit - 1)] + "…"
