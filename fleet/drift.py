"""Drift, in three kinds: IAM edited outside Pulumi, GitLab variables edited outside Pulumi, and fleet membership changed.

IAM and variables come from a refresh preview (`pulumi refresh --preview-only`): its steps say what the cloud holds
now against the stack's state. Membership comes from a normal preview: projects that join, leave or move.
Item texts are GitLab Markdown with every value escaped (see fleet/report.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from .changes import (
    Changes,
    ResourceChange,
    State,
    project_paths,
    skipped_projects,
    trust_conditions,
)
from .report import (
    SHOWN_VARIABLES,
    code,
    fit,
    keyword,
    plural,
    trust_change_lines,
    value_words,
    variable_value,
)
from .trust import canonical_policy

Category = Literal["iam", "gitlab", "membership"]
CATEGORIES: tuple[Category, ...] = ("iam", "gitlab", "membership")
TITLES: dict[Category, str] = {"iam": "IAM edited outside Pulumi", "gitlab": "GitLab variables edited outside Pulumi",
                               "membership": "Fleet membership changed"}
IAM_KINDS = frozenset({"role", "inline-policy", "attachment", "inline-exclusive", "attachments-exclusive",
                       "managed-policy", "oidc-provider"})
_SKIP_WORDS = {"archived": "it was archived", "pending-deletion": "it is pending deletion",
               "shared-in": "it is shared into the group from outside", "outside-group": "it is outside the group",
               "excluded": "the stack's exclude rules now match it", "subgroup": "subgroups are not included",
               "no-refs": "its repository is empty", "bad-default-branch": "its default branch cannot be trusted"}
_VARIABLE_SETTINGS = ("value", "protected", "masked", "raw", "environmentScope", "description", "variableType", "hidden")
_ROLE_SETTINGS = {"description": "description", "maxSessionDuration": "maximum session duration",
                  "permissionsBoundary": "permissions boundary", "path": "path"}


@dataclass(frozen=True)
class DriftItem:
    """One project's (or one stack-wide resource's) drift of one kind. `lines` are Markdown, values escaped."""

    category: Category
    project_id: int | None
    project_path: str | None
    lines: tuple[str, ...]
    subject: str = ""  # for a stack-wide item: what it is about, Markdown

    def markdown(self) -> str:
        if self.project_id is not None:
            who = f"{code(self.project_path) if self.project_path else 'a project'} (project {self.project_id})"
        else:
            who = self.subject or "the stack"
        if len(self.lines) == 1:
            return f"- {who}: {self.lines[0]}\n"
        return f"- {who}:\n" + "".join(f"  - {line}\n" for line in self.lines)


@dataclass(frozen=True)
class Drift:
    iam: tuple[DriftItem, ...] = ()
    gitlab: tuple[DriftItem, ...] = ()
    membership: tuple[DriftItem, ...] = ()

    @property
    def clean(self) -> bool:
        return not (self.iam or self.gitlab or self.membership)

    @property
    def counts(self) -> dict[str, int]:
        """Items of each kind: a project (or a stack-wide resource) counts once per kind."""
        return {"iam": len(self.iam), "gitlab": len(self.gitlab), "membership": len(self.membership)}

    def items(self, category: Category) -> tuple[DriftItem, ...]:
        return {"iam": self.iam, "gitlab": self.gitlab, "membership": self.membership}[category]


def _outputs(state: State | None) -> Mapping[str, Any]:
    return state.outputs if state is not None else {}


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _names(value: Any) -> set[str]:
    return {str(v) for v in value} if isinstance(value, list) else set()


# --- (a) IAM ---

def _role_lines(c: ResourceChange, path: str | None, *, exclusives_known: bool) -> list[str]:
    old, new = _outputs(c.old), _outputs(c.new)
    name = value_words(old.get("name") or c.name)
    if c.op == "delete":
        return [f"role {name} was deleted outside Pulumi; the next `up` creates it again"]
    lines = []
    if old.get("uniqueId") != new.get("uniqueId") and old.get("uniqueId") and new.get("uniqueId"):
        lines.append(f"role {name} was deleted and created again outside Pulumi (its unique id changed)")
    old_trust, new_trust = trust_conditions(old.get("assumeRolePolicy")), trust_conditions(new.get("assumeRolePolicy"))
    if old_trust != new_trust:
        changed = trust_change_lines(old_trust, new_trust, project_path=path,
                                     old_known=old_trust is not None, new_known=new_trust is not None)
        lines += [f"trust policy edited: {line}" for line in changed] or ["trust policy edited"]
    if _without_subjects(canonical_policy(old.get("assumeRolePolicy"))) != \
            _without_subjects(canonical_policy(new.get("assumeRolePolicy"))):
        # Same subjects and audiences, yet another document: a statement, principal, action or condition was added or
        # changed (e.g. another account or provider allowed). Never read as clean.
        lines.append("trust policy edited outside Pulumi beyond its GitLab subjects and audience (another statement, "
                     "principal, action or condition): the next `up` puts the stack's back")
    for key, words in _ROLE_SETTINGS.items():
        if old.get(key) != new.get(key):
            lines.append(f"{words} changed from {value_words(old.get(key))} to {value_words(new.get(key))}")
    old_tags, new_tags = _mapping(old.get("tags")), _mapping(new.get("tags"))
    for k in sorted(set(old_tags) | set(new_tags)):
        if old_tags.get(k) != new_tags.get(k):
            lines.append(f"tag {code(k)} changed from {value_words(old_tags.get(k))} to {value_words(new_tags.get(k))}")
    seen = {"assumeRolePolicy", "tags", "tagsAll", "uniqueId", "createDate", "inlinePolicies", "managedPolicyArns",
            *_ROLE_SETTINGS}
    other = sorted(k for k in set(old) | set(new) if k not in seen and old.get(k) != new.get(k))
    if other:
        lines.append("also changed outside Pulumi: " + ", ".join(code(k) for k in other))
    if not exclusives_known:  # without the exclusive resources, the role's own lists are the only witness
        inline_old = {p.get("name") for p in old.get("inlinePolicies") or [] if isinstance(p, Mapping)}
        inline_new = {p.get("name") for p in new.get("inlinePolicies") or [] if isinstance(p, Mapping)}
        lines += _added_removed("inline policy", {str(n) for n in inline_old if n}, {str(n) for n in inline_new if n})
        lines += _added_removed("attached policy", _names(old.get("managedPolicyArns")),
                                _names(new.get("managedPolicyArns")))
    return lines


def _without_subjects(document: Any) -> Any:
    """The trust policy with its GitLab `sub` and `aud` values left out (they are compared, in words, on their own)."""
    if isinstance(document, Mapping):
        return {k: _without_subjects(v) for k, v in document.items() if not k.endswith((":sub", ":aud"))}
    if isinstance(document, list):
        return [_without_subjects(v) for v in document]
    return document

def _added_removed(what: str, before: set[str], after: set[str]) -> list[str]:
    lines = []
    if after - before:
        lines.append(f"{what} added outside Pulumi: " + ", ".join(code(v) for v in sorted(after - before)))
    if before - after:
        lines.append(f"{what} removed outside Pulumi: " + ", ".join(code(v) for v in sorted(before - after)))
    return lines


def _iam_lines(c: ResourceChange, path: str | None, *, exclusives_known: bool) -> list[str]:
    entry = code(c.entry or c.name)
    old, new = _outputs(c.old), _outputs(c.new)
    if c.kind == "role":
        return _role_lines(c, path, exclusives_known=exclusives_known)
    if c.kind == "inline-policy":
        return [f"inline policy {entry} was deleted outside Pulumi" if c.op == "delete"
                else f"inline policy {entry} was edited outside Pulumi"]
    if c.kind == "attachment":
        return [f"policy {entry} was detached outside Pulumi" if c.op == "delete"
                else f"attachment of {entry} was changed outside Pulumi"]
    if c.kind == "inline-exclusive":
        if c.op == "delete":
            return []  # the role is gone: said by the role's own line
        added = _names(new.get("policyNames")) - _names(old.get("policyNames"))
        return [f"inline policy added outside Pulumi: {code(n)}" for n in sorted(added)]
    if c.kind == "attachments-exclusive":
        if c.op == "delete":
            return []
        added = _names(new.get("policyArns")) - _names(old.get("policyArns"))
        return [f"policy attached outside Pulumi: {code(a)}" for a in sorted(added)]
    if c.kind == "managed-policy":
        return ["was deleted outside Pulumi; the next `up` creates it again" if c.op == "delete"
                else "its document was edited outside Pulumi" if old.get("policy") != new.get("policy")
                else "its settings were changed outside Pulumi"]
    if c.kind == "oidc-provider":
        if c.op == "delete":
            return ["was deleted outside Pulumi: no role can be assumed until the next `up` creates it again"]
        lines = []
        for key, words in (("clientIdLists", "audiences"), ("thumbprintLists", "thumbprints"), ("url", "URL")):
            if old.get(key) != new.get(key):
                lines.append(f"{words} changed from {value_words(old.get(key))} to {value_words(new.get(key))}")
        return lines or ["its settings were changed outside Pulumi"]
    return [f"{code(c.type)} {code(c.name)}: {keyword(c.op)} outside Pulumi"]


# --- (b) GitLab variables ---

def _variable_lines(c: ResourceChange) -> list[str]:
    key = c.entry or c.name
    if c.op == "delete":
        return [f"variable {code(key)} was deleted in GitLab; the next `up` sets it again"]
    old, new = _outputs(c.old), _outputs(c.new)
    parts = []
    for k in _VARIABLE_SETTINGS:
        if old.get(k) == new.get(k):
            continue
        if k == "value":
            masked = old.get("masked") or new.get("masked")
            parts.append(f"value {variable_value(key, old.get(k), masked=masked)} → "
                         f"{variable_value(key, new.get(k), masked=masked)}" if key in SHOWN_VARIABLES
                         else "value changed (not shown)")
        else:
            parts.append(f"{code(k)} {value_words(old.get(k))} → {value_words(new.get(k))}")
    return [f"variable {code(key)} was edited in GitLab" + (f": {'; '.join(parts)}" if parts else "")]


def _sub_claim_line(c: ResourceChange) -> str:
    """A project's sub claim components edited in GitLab: its tokens' `sub` no longer has the form the role trusts
    (or, if `ref_protected` was dropped, pipelines on unprotected refs get tokens of the trusted shape minus it)."""
    if c.op == "delete":
        return "its sub claim components are no longer readable (project gone, or the token lost Maintainer)"
    before, after = _outputs(c.old).get("components"), _outputs(c.new).get("components")
    return (f"its sub claim components were edited in GitLab: {value_words(before)} → {value_words(after)}; the next "
            "`up` sets the stack's again")


# --- (c) membership ---

def _membership_lines(resources: Sequence[ResourceChange], path: tuple[str | None, str | None],
                      skipped_reason: str | None) -> list[str]:
    old_path, new_path = path
    lines = []
    component = next((c for c in resources if c.kind == "project"), None)
    if component is not None and component.op == "create":
        lines.append("new in the group: the next `up` gives it a role and its variables")
    elif component is not None and component.op == "delete":
        why = _SKIP_WORDS.get(skipped_reason or "", f"it is skipped ({keyword(skipped_reason)})") if skipped_reason \
            else "the group no longer lists it (deleted, moved out or made inaccessible)"
        lines.append(f"left the fleet because {why}: the next `up` deletes its role and variables")
    elif old_path is not None and new_path is not None and old_path != new_path:
        lines.append(f"renamed or moved from {code(old_path)} to {code(new_path)}")
    for c in resources:
        if c.kind != "role" or c.op != "replace":
            continue
        old_name = (c.old.inputs.get("name") if c.old else None) or (c.old.outputs.get("name") if c.old else None)
        new_name = c.new.inputs.get("name") if c.new else None
        if old_name != new_name:
            lines.append(f"its role is renamed from {value_words(old_name)} to {value_words(new_name)} (replaced)")
    return lines


def classify(refresh_changes: Changes | Sequence[ResourceChange], preview_changes: Changes | Sequence[ResourceChange]
             ) -> Drift:
    """Sort drift into its three kinds. Each item names the project (or the stack-wide resource) and what changed."""
    refresh_changes, preview_changes = Changes.of(refresh_changes), Changes.of(preview_changes)
    refreshed = refresh_changes.resources
    previewed = preview_changes.resources
    paths = {**project_paths(refreshed), **project_paths(previewed)}
    exclusive_projects = {c.project_id for c in refreshed if c.kind in ("inline-exclusive", "attachments-exclusive")}

    def shown_path(pid: int | None) -> str | None:
        old, new = paths.get(pid, (None, None)) if pid is not None else (None, None)
        return new or old

    iam: dict[int | str, list[str]] = {}
    gitlab: dict[int, list[str]] = {}
    subjects: dict[int | str, str] = {}
    for c in refreshed:
        if c.op not in ("update", "delete"):
            continue
        if c.kind == "variable" and c.project_id is not None:
            gitlab.setdefault(c.project_id, []).extend(_variable_lines(c))
        elif c.kind == "sub-claim" and c.project_id is not None:
            gitlab.setdefault(c.project_id, []).append(_sub_claim_line(c))
        elif c.kind in IAM_KINDS or (c.kind == "other" and c.type.startswith("aws:")):
            lines = _iam_lines(c, shown_path(c.project_id), exclusives_known=c.project_id in exclusive_projects)
            if not lines:
                continue
            key: int | str = c.project_id if c.project_id is not None else c.urn
            if c.project_id is None:
                subjects[key] = _stack_subject(c)
            iam.setdefault(key, []).extend(lines)
        elif c.kind == "other" and c.type.startswith("gitlab:") and c.project_id is None:
            gitlab.setdefault(-1, []).append(f"{code(c.type)} {code(c.name)}: {keyword(c.op)} in GitLab")

    skipped = {s.id: s.reason for s in skipped_projects(preview_changes.stack_outputs) or ()}
    by_project: dict[int, list[ResourceChange]] = {}
    for c in previewed:
        if c.project_id is not None and c.kind in ("project", "role") and c.changed:
            by_project.setdefault(c.project_id, []).append(c)
    membership: dict[int | str, list[str]] = {}
    for pid, rs in by_project.items():
        lines = _membership_lines(rs, paths.get(pid, (None, None)), skipped.get(pid))
        if lines:
            membership[pid] = lines
    # Whatever else the preview would change: a project changed in GitLab (e.g. its default branch, so its trust),
    # or a program or library not applied yet. Pulumi proposed it, so it is drift too, never "clean".
    undone = {c.urn for c in refreshed if c.op in ("update", "delete")}  # reported above: the preview only puts them back
    for c in previewed:
        if not c.changed or c.refresh or c.kind in ("stack", "stack-reference") or c.urn in undone:
            continue
        if c.kind == "provider":  # a provider's own settings (e.g. after an upgrade): its inputs are never shown
            subjects[c.urn] = f"the Pulumi provider {code(c.name)}"
            membership.setdefault(c.urn, []).append("its settings change (e.g. after an upgrade of this program); the next "
                                                   "`up` records them, no resource changes")
            continue
        key = c.project_id if c.project_id is not None else c.urn
        if c.project_id is not None and c.project_id in by_project and c.project_id in membership:
            continue
        if c.project_id is None:
            subjects[key] = _stack_subject(c)
        what = f"{c.kind} {code(c.entry or c.name)}" + (f" ({', '.join(code(d) for d in c.diffs)})" if c.diffs else "")
        membership.setdefault(key, []).append(f"the next `up` would {keyword(c.op)} its {what}: changed in GitLab, or "
                                              "a change of the program not applied yet")

    def items(category: Category, found: Mapping[Any, list[str]]) -> tuple[DriftItem, ...]:
        out = [DriftItem(category, key if isinstance(key, int) and key >= 0 else None,
                         shown_path(key) if isinstance(key, int) else None, tuple(lines), subjects.get(key, ""))
               for key, lines in found.items()]
        return tuple(sorted(out, key=lambda i: (i.project_id is not None, i.project_path or "", i.project_id or 0,
                                                i.subject)))

    return Drift(items("iam", iam), items("gitlab", gitlab), items("membership", membership))


def _stack_subject(c: ResourceChange) -> str:
    if c.kind == "managed-policy":
        return f"managed policy {code(c.entry or c.name)}"
    if c.kind == "oidc-provider":
        return "the account's OIDC provider"
    return f"{code(c.type)} {code(c.name)}"


def render_drift(drift: Drift, *, stack: str, limit: int = 1_000_000) -> str:
    """Markdown for the drift issue and the terminal (at most `limit` characters)."""
    if drift.clean:
        text_ = (f"**No drift** in stack {code(stack)}: IAM and the GitLab variables match the stack's state, and the "
                 "group's projects match the fleet.\n")
        return text_ if len(text_) <= limit else text_[: max(0, limit - 1)] + "…"
    counts = " · ".join(f"**{TITLES[c]}**: {plural(len(drift.items(c)), 'item')}" for c in CATEGORIES)
    head = f"### Drift in stack {code(stack)}\n\n{counts}\n"
    if drift.iam or drift.gitlab:
        head += ("\nThe next `pulumi up` puts IAM and the variables back as the program declares them; change the "
                 "program first if an edit should stay.\n")
    units = []
    for category in CATEGORIES:
        for i, item in enumerate(drift.items(category)):
            heading = f"\n#### {TITLES[category]}\n\n" if i == 0 else ""
            units.append(heading + item.markdown())
    return fit(head, units, total=len(units), limit=limit, omitted=_omitted_items)


def _omitted_items(n: int) -> str:
    return (f"\n_{plural(n, 'more item')} left out to keep this text within GitLab's size limit; the counts above "
            "include them._\n")
