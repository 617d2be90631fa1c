"""IAM's evaluation of a role trust policy for one `sts:AssumeRoleWithWebIdentity` request. Pure, no I/O.

Modelled (AWS IAM User Guide, "Condition operators", "Single-valued vs. multivalued context keys",
"Policy variables"):

- statements are ORed and an explicit Deny wins; `Principal` is `"*"` or a map whose `Federated`
  (or `AWS`) list holds the provider ARN or `"*"`; `Action`/`NotAction` are matched ignoring case with
  `*`/`?` wildcards;
- operators in one Condition block, and keys under one operator, are ANDed; the values of one key are
  ORed; condition key names ignore case, values do not;
- String operators: StringEquals, StringNotEquals, StringEqualsIgnoreCase, StringNotEqualsIgnoreCase,
  StringLike, StringNotLike; each with `...IfExists`, and with a `ForAnyValue:`/`ForAllValues:` prefix
  (the request's values are single-valued here: a set of one); `Null`;
- a key missing from the request: a positive operator fails, a negated one holds, `...IfExists` holds,
  `ForAnyValue:` fails and `ForAllValues:` holds;
- policy variables (only under `"Version": "2012-10-17"`) in the values of every string operator:
  `${key}` and `${key, 'default'}` (`''` is one quote; spaces around both ignored), `${*}`, `${?}`,
  `${$}` for a literal `*`, `?`, `$`; one left-to-right pass; a value naming a missing key without a
  default matches nothing; `*`/`?` are wildcards only where the policy text itself has them, in
  StringLike/StringNotLike.

A caller that cannot give the request's value of some keys (`unknown`) gets an over-approximation of
admission: a condition that tests such a key, or names it in a variable, is taken to hold in an Allow
statement and to fail in a Deny statement.

Anything else (another operator, NotPrincipal, a malformed statement) raises `Unsupported`: the
caller reports that the policy could not be judged rather than guessing.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

WEB_IDENTITY_ACTION = "sts:AssumeRoleWithWebIdentity"
VARIABLES_VERSION = "2012-10-17"

ALLOW, DENY, NO_MATCH = "allow", "deny", "no-match"


class Unsupported(ValueError):
    """The policy uses something this evaluator does not model; the message names it."""


# --- condition values: literal text, wildcards, variables ------------------------------------------

@dataclass(frozen=True)
class _Text:
    text: str
    wild: bool  # True: copied from the policy, so StringLike's `*`/`?` keep their meaning


@dataclass(frozen=True)
class _Var:
    key: str  # lowercased
    default: str | None


_Piece = _Text | _Var
_ESCAPES = {"${*}": "*", "${?}": "?", "${$}": "$"}
_VAR_RE = re.compile(r"\$\{\s*([A-Za-z0-9_.:/\-]+)\s*(?:,\s*'((?:[^']|'')*)'\s*)?\}", re.ASCII)


def _parse_value(value: str, variables: bool) -> tuple[_Piece, ...]:
    """One condition value as text and variable pieces (one left-to-right pass)."""
    if not variables or "${" not in value:
        return (_Text(value, True),)
    pieces: list[_Piece] = []
    start = i = 0
    while True:
        i = value.find("${", i)
        if i < 0:
            break
        escape = _ESCAPES.get(value[i:i + 4])
        match = None if escape else _VAR_RE.match(value, i)
        if escape is None and match is None:
            i += 1  # a `$` that opens nothing: literal, scanning resumes after it
            continue
        if i > start:
            pieces.append(_Text(value[start:i], True))
        if escape is not None:
            pieces.append(_Text(escape, False))
            i += 4
        else:
            assert match is not None
            default = match.group(2)
            pieces.append(_Var(match.group(1).lower(), None if default is None else default.replace("''", "'")))
            i = match.end()
        start = i
    if start < len(value):
        pieces.append(_Text(value[start:], True))
    return tuple(pieces)


def _resolve(pieces: tuple[_Piece, ...], context: Mapping[str, str]) -> tuple[_Text, ...] | None:
    """Variables replaced by the request's values (literal text); None when one cannot be."""
    out: list[_Text] = []
    for piece in pieces:
        if isinstance(piece, _Text):
            out.append(piece)
            continue
        actual = context.get(piece.key, piece.default)
        if actual is None:
            return None
        out.append(_Text(actual, False))
    return tuple(out)


@functools.lru_cache(maxsize=65536)
def _like_regex(texts: tuple[_Text, ...], ignore_case: bool = False) -> re.Pattern[str]:
    parts: list[str] = []
    for t in texts:
        if not t.wild:
            parts.append(re.escape(t.text))
            continue
        parts.extend(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in t.text)
    return re.compile("".join(parts), re.DOTALL | (re.IGNORECASE if ignore_case else 0))


# --- operators ----------------------------------------------------------------------------------

_Test = Callable[[tuple[_Text, ...], str], bool]


def _equals(texts: tuple[_Text, ...], actual: str) -> bool:
    return "".join(t.text for t in texts) == actual


def _equals_ignore_case(texts: tuple[_Text, ...], actual: str) -> bool:
    return "".join(t.text for t in texts).casefold() == actual.casefold()


def _like(texts: tuple[_Text, ...], actual: str) -> bool:
    return _like_regex(texts).fullmatch(actual) is not None


# base operator -> (test, negated)
_STRING_OPERATORS: dict[str, tuple[_Test, bool]] = {
    "StringEquals": (_equals, False), "StringNotEquals": (_equals, True),
    "StringEqualsIgnoreCase": (_equals_ignore_case, False), "StringNotEqualsIgnoreCase": (_equals_ignore_case, True),
    "StringLike": (_like, False), "StringNotLike": (_like, True),
}


@dataclass(frozen=True)
class Operator:
    """A condition operator, split: `ForAnyValue:StringLikeIfExists` -> set_op, base, if_exists."""

    name: str
    base: str
    set_op: str | None  # "ForAnyValue" | "ForAllValues" | None
    if_exists: bool

    @property
    def negated(self) -> bool:
        return self.base in _STRING_OPERATORS and _STRING_OPERATORS[self.base][1]

    @property
    def positive_string(self) -> bool:
        return self.base in _STRING_OPERATORS and not self.negated


def parse_operator(name: str) -> Operator:
    """The parts of a condition operator's name; Unsupported for one this module does not evaluate."""
    set_op, _, base = name.rpartition(":")
    if set_op not in ("", "ForAnyValue", "ForAllValues"):
        raise Unsupported(f"condition operator {name}")
    if_exists = base.endswith("IfExists") and base != "IfExists"
    base = base.removesuffix("IfExists") if if_exists else base
    if base == "Null" and not set_op and not if_exists:
        return Operator(name, base, None, False)
    if base not in _STRING_OPERATORS:
        raise Unsupported(f"condition operator {name}")
    return Operator(name, base, set_op or None, if_exists)


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _as_text(value: Any, where: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int)):
        return str(value)
    raise Unsupported(f"{where}: value {value!r} is not a string")


@dataclass(frozen=True)
class Condition:
    operator: Operator
    key: str  # lowercased
    values: tuple[tuple[_Piece, ...], ...]
    raw_values: tuple[str, ...]  # as the policy writes them

    @property
    def variable_keys(self) -> frozenset[str]:
        """The keys its values name in policy variables (lowercased)."""
        return frozenset(p.key for pieces in self.values for p in pieces if isinstance(p, _Var))

    @property
    def keys(self) -> frozenset[str]:
        """Every request key it reads: its own and those of its variables (lowercased)."""
        return self.variable_keys | {self.key}

    def holds(self, context: Mapping[str, str]) -> bool:
        op = self.operator
        actual = context.get(self.key)
        if op.base == "Null":
            return any((v == (_Text("true", True),)) == (actual is None) for v in self.values)
        if actual is None:
            if op.if_exists:
                return True
            if op.set_op == "ForAnyValue":
                return False
            if op.set_op == "ForAllValues":
                return True
            return op.negated
        test, negated = _STRING_OPERATORS[op.base]
        matched = False
        for pieces in self.values:
            texts = _resolve(pieces, context)
            if texts is not None and test(texts, actual):
                matched = True
                break
        # A single-valued key is a set of one: ForAnyValue/ForAllValues of it is the test itself.
        return matched != negated


def _conditions(block: Any, variables: bool) -> tuple[Condition, ...]:
    if block is None:
        return ()
    if not isinstance(block, Mapping):
        raise Unsupported("a Condition that is not a map")
    out = []
    for name, keys in block.items():
        operator = parse_operator(name)
        if not isinstance(keys, Mapping):
            raise Unsupported(f"{name}: not a map of condition keys")
        for key, values in keys.items():
            texts = [_as_text(v, f"{name} {key}") for v in _as_list(values)]
            if operator.base == "Null":
                if any(t not in ("true", "false") for t in texts):
                    raise Unsupported(f"Null {key}: values other than true/false")
                parsed: tuple[tuple[_Piece, ...], ...] = tuple((_Text(t, True),) for t in texts)
            else:
                parsed = tuple(_parse_value(t, variables) for t in texts)
            out.append(Condition(operator, str(key).lower(), parsed, tuple(texts)))
    return tuple(out)


# --- statements and policies ----------------------------------------------------------------------

def _glob(pattern: str, text: str) -> bool:
    return _like_regex((_Text(pattern, True),), ignore_case=True).fullmatch(text) is not None


@dataclass(frozen=True)
class Statement:
    effect: str  # "Allow" | "Deny"
    principals: tuple[str, ...]  # provider ARNs (Federated) and "*" (any principal)
    other_principals: tuple[str, ...]  # "AWS:arn...", "Service:...", ... : never a web identity
    actions: tuple[str, ...]
    not_action: bool
    conditions: tuple[Condition, ...]
    sid: str = ""

    def names(self, principal: str) -> bool:
        return "*" in self.principals or principal in self.principals

    def covers(self, action: str) -> bool:
        hit = any(_glob(a, action) for a in self.actions)
        return hit != self.not_action

    def condition_holds(self, context: Mapping[str, str], unknown: frozenset[str] = frozenset()) -> bool:
        """Whether every condition holds; one reading an `unknown` key holds in an Allow, fails in a Deny."""
        if self.effect == "Deny":
            return all(c.holds(context) and not (c.keys & unknown) for c in self.conditions)
        return all(c.holds(context) or bool(c.keys & unknown) for c in self.conditions)


def _principals(value: Any, where: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    if value == "*":
        return ("*",), ()
    if not isinstance(value, Mapping):
        raise Unsupported(f"{where}: a Principal that is neither \"*\" nor a map")
    web: list[str] = []
    other: list[str] = []
    for kind, ids in value.items():
        for principal in _as_list(ids):
            if not isinstance(principal, str):
                raise Unsupported(f"{where}: a {kind} principal that is not a string")
            if kind == "Federated" or principal == "*":  # {"AWS": "*"} is everyone, as "*" is
                web.append(principal)
            else:
                other.append(f"{kind}:{principal}")
    return tuple(web), tuple(other)


def parse_statement(raw: Any, variables: bool, index: int) -> Statement:
    if not isinstance(raw, Mapping):
        raise Unsupported(f"statement {index + 1} is not a map")
    where = f"statement {raw.get('Sid') or index + 1}"
    if "NotPrincipal" in raw:
        raise Unsupported(f"{where}: NotPrincipal")
    effect = raw.get("Effect")
    if effect not in ("Allow", "Deny"):
        raise Unsupported(f"{where}: Effect {effect!r}")
    if ("Action" in raw) == ("NotAction" in raw):
        raise Unsupported(f"{where}: needs exactly one of Action and NotAction")
    actions = _as_list(raw.get("Action", raw.get("NotAction")))
    if not all(isinstance(a, str) for a in actions):
        raise Unsupported(f"{where}: an action that is not a string")
    web, other = _principals(raw.get("Principal"), where)
    return Statement(effect=effect, principals=web, other_principals=other, actions=tuple(actions),
                     not_action="NotAction" in raw, conditions=_conditions(raw.get("Condition"), variables),
                     sid=str(raw.get("Sid") or ""))


@dataclass(frozen=True)
class Policy:
    """A trust policy, parsed once and evaluated for many requests."""

    statements: tuple[Statement, ...]

    def decide(self, principal: str, context: Mapping[str, str], action: str = WEB_IDENTITY_ACTION,
               unknown: frozenset[str] = frozenset()) -> str:
        """ALLOW, DENY (an explicit Deny matched) or NO_MATCH (implicitly denied). Context keys ignore case;
        `unknown`: lowercased keys whose value the request is not known to have (see the module's docstring)."""
        lowered = {k.lower(): v for k, v in context.items()}
        allowed = False
        for s in self.statements:
            if s.names(principal) and s.covers(action) and s.condition_holds(lowered, unknown):
                if s.effect == "Deny":
                    return DENY
                allowed = True
        return ALLOW if allowed else NO_MATCH

    def allows(self, principal: str, context: Mapping[str, str], action: str = WEB_IDENTITY_ACTION) -> bool:
        return self.decide(principal, context, action) == ALLOW


def parse_policy(document: Any) -> Policy:
    """Parse a policy document (a dict as IAM returns it); Unsupported for what is not modelled."""
    if not isinstance(document, Mapping) or "Statement" not in document:
        raise Unsupported("a policy document without Statement")
    variables = document.get("Version") == VARIABLES_VERSION
    raw = _as_list(document["Statement"])
    return Policy(tuple(parse_statement(s, variables, i) for i, s in enumerate(raw)))


def allows(document: Any, principal: str, context: Mapping[str, str], action: str = WEB_IDENTITY_ACTION) -> bool:
    """Whether `document` lets a web identity of provider `principal` with request `context` do `action`."""
    return parse_policy(document).allows(principal, context, action)
