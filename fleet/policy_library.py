"""The policy library: YAML entries (an IAM policy document with placeholders, or an AWS managed policy ARN).

An entry is `<name>.yaml` in the bundled library (`fleet/policy_library/`) or in a folder the stack names
(`fleet:policies.libraries`); a folder named later overrides an entry of the same name. Placeholders
`${project_path}`, `${project_slug}`, `${project_id}`, `${role_name}` make an entry per project (an inline
policy on each role); `${account_id}`, `${region}`, `${partition}`, `${stack}` alone keep it one document
per stack (a customer managed policy). IAM's own policy variables are written `$${aws:username}`.
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError
from .spelling import did_you_mean, spell

BUNDLED = Path(__file__).resolve().parent / "policy_library"
PER_PROJECT = ("project_path", "project_slug", "project_id", "role_name")
PER_STACK = ("account_id", "region", "partition", "stack")
PLACEHOLDERS = PER_PROJECT + PER_STACK
ENTRY_KEYS = ("description", "document", "arn", "accept")

_NAME_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
_AWS_MANAGED_RE = re.compile(r"arn:aws:iam::aws:policy/([\w+=,.@-]+/)*[\w+=,.@-]{1,128}")
_PLACEHOLDER_RE = re.compile(r"\$\$\{|\$\{([^}]*)\}")
_FINDING_RE = re.compile(r"[A-Z][A-Z0-9_]*")


@dataclass(frozen=True)
class Accepted:
    finding: str  # a lint finding code, e.g. RESOURCE_STAR
    reason: str


@dataclass(frozen=True)
class Entry:
    name: str
    description: str
    source: str  # the file it came from, for messages
    document: Mapping[str, Any] | None = None
    arn: str | None = None
    accept: tuple[Accepted, ...] = ()
    placeholders: frozenset[str] = field(default_factory=frozenset)

    @property
    def per_project(self) -> bool:
        """Whether the rendered document differs per project (an inline policy) or is one per stack."""
        return any(p in self.placeholders for p in PER_PROJECT)

    def accepts(self, finding: str) -> bool:
        return any(a.finding == finding for a in self.accept)


@dataclass(frozen=True)
class RenderContext:
    """The values of the placeholders for one role (the per-project ones are empty for a shared entry)."""

    account_id: str
    region: str
    partition: str
    stack: str
    project_path: str = ""
    project_slug: str = ""
    project_id: str = ""
    role_name: str = ""


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML keeps the last of two equal keys; in a policy that silently drops a condition a reviewer reads."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, Hashable):  # refused by SafeLoader below, with its own message
                continue
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"the key {spell(key)} appears twice in one map",
                                                        key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _strings(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield str(key)
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def placeholders_in(document: Any) -> tuple[set[str], set[str]]:
    """(known placeholders used, unknown `${...}` names) in every string of a document."""
    used: set[str] = set()
    unknown: set[str] = set()
    for text in _strings(document):
        for match in _PLACEHOLDER_RE.finditer(text):
            name = match.group(1)
            if name is None:  # `$${`: IAM's own policy variable, kept
                continue
            (used if name in PLACEHOLDERS else unknown).add(name)
    return used, unknown


def render(entry: Entry, context: RenderContext) -> dict[str, Any]:
    """The entry's document with its placeholders filled in (and `$${` turned into IAM's `${`)."""
    assert entry.document is not None
    values = {name: str(getattr(context, name)) for name in PLACEHOLDERS}

    def fill(value: Any) -> Any:
        if isinstance(value, str):
            return _PLACEHOLDER_RE.sub(lambda m: "${" if m.group(1) is None else values[m.group(1)], value)
        if isinstance(value, Mapping):
            return {fill(k): fill(v) for k, v in value.items()}
        if isinstance(value, list):
            return [fill(v) for v in value]
        return value

    rendered = fill(entry.document)
    assert isinstance(rendered, dict)
    return rendered


def _entry(name: str, path: Path, data: Any) -> Entry | list[str]:
    """An entry from its decoded YAML, or the problems with it (each naming the file and key)."""
    where = f"{path}"
    if not isinstance(data, Mapping):
        return [f"{where}: expected a map with description and document (or arn), found {spell(data)[:80]}"]
    problems = []
    for key in data:
        if key not in ENTRY_KEYS:
            near = did_you_mean(str(key), list(ENTRY_KEYS))
            problems.append(f"{where}: unknown key {spell(key)}; " + (f"did you mean {near}?" if near else
                                                                      f"an entry has {', '.join(ENTRY_KEYS)}"))
    description = data.get("description")
    if not isinstance(description, str) or not description.strip():
        problems.append(f"{where}: description is {spell(description) if 'description' in data else 'missing'}; "
                        "expected a sentence saying what the entry allows")
    document, arn = data.get("document"), data.get("arn")
    if (document is None) == (arn is None):
        problems.append(f"{where}: expected exactly one of document (an IAM policy document) or arn (an AWS managed policy)")
    if document is not None and not isinstance(document, Mapping):
        problems.append(f"{where}: document is {spell(document)[:80]}; expected an IAM policy document (a map)")
    if arn is not None and not (isinstance(arn, str) and _AWS_MANAGED_RE.fullmatch(arn)):
        problems.append(f"{where}: arn is {spell(arn)}; expected an AWS managed policy ARN, arn:aws:iam::aws:policy/<name>")
    accepted: list[Accepted] = []
    raw_accept = data.get("accept") or []
    if not isinstance(raw_accept, list):
        raw_accept = [raw_accept]
    for i, item in enumerate(raw_accept):
        finding = item.get("finding") if isinstance(item, Mapping) else None
        reason = item.get("reason") if isinstance(item, Mapping) else None
        if not isinstance(finding, str) or not _FINDING_RE.fullmatch(finding) or not isinstance(reason, str) or not reason.strip():
            problems.append(f"{where}: accept[{i}] is {spell(item)[:80]}; expected {{finding: <CODE>, reason: <why it is right here>}}")
        else:
            accepted.append(Accepted(finding, reason.strip()))
    used: set[str] = set()
    if isinstance(document, Mapping):
        used, unknown = placeholders_in(document)
        for name_ in sorted(unknown):
            near = did_you_mean(name_, list(PLACEHOLDERS))
            problems.append(f"{where}: unknown placeholder ${{{name_}}}; " + (f"did you mean ${{{near}}}? " if near else "")
                            + f"placeholders are {', '.join('${' + p + '}' for p in PLACEHOLDERS)}; write IAM's own "
                            "policy variables as $${aws:username}")
    if problems or not isinstance(description, str):
        return problems
    return Entry(name=name, description=description.strip(), source=str(path),
                 document=document if isinstance(document, Mapping) else None, arn=arn,
                 accept=tuple(accepted), placeholders=frozenset(used))


def load_library(folders: Sequence[Path] = ()) -> dict[str, Entry]:
    """Every entry of the bundled library and of `folders` (later ones override), or a ConfigError listing each problem."""
    entries: dict[str, Entry] = {}
    problems: list[str] = []
    for folder in (BUNDLED, *folders):
        if not folder.is_dir():
            problems.append(f"fleet:policies.libraries: {folder} is not a directory")
            continue
        for path in sorted(folder.iterdir()):
            if path.suffix == ".yml":
                problems.append(f"{path}: name library entries <name>.yaml (not .yml)")
            if path.suffix != ".yaml":
                continue
            name = path.stem
            if not _NAME_RE.fullmatch(name):
                problems.append(f"{path}: entry names are lowercase letters, digits and '-', at most 63 characters")
                continue
            try:
                data = yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)
            except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
                problems.append(f"{path}: cannot be read as YAML: {err}")
                continue
            entry = _entry(name, path, data)
            if isinstance(entry, list):
                problems.extend(entry)
            else:
                entries[name] = entry
    if problems:
        raise ConfigError(problems)
    return entries


def library_for(folders: Iterable[str], project_dir: Path) -> dict[str, Entry]:
    """The bundled library and the stack's `fleet:policies.libraries` folders (relative to the project directory)."""
    return load_library([project_dir / folder for folder in folders])


def unknown_names(names: Iterable[str], library: Mapping[str, Entry]) -> list[str]:
    """A problem for each name the library does not hold, with the closest known name."""
    problems = []
    for name in names:
        if name not in library:
            near = did_you_mean(name, sorted(library))
            problems.append(f"{spell(name)} is not in the policy library" + (f" (did you mean {near}?)" if near else "")
                            + f"; known entries: {', '.join(sorted(library))}")
    return problems
