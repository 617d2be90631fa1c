"""An independent evaluator of IAM trust policies for web identity, written from AWS's documented
rules and sharing no code with `fleet` (do not import it here).

Modelled rules:

- statements are ORed, an explicit Deny wins; Principal.Federated and Action must match (Action
  case-insensitively, `*`/`?` wildcards, no policy variables);
- condition operators in one block are ANDed, keys within an operator are ANDed, the values
  listed for one key are ORed; condition keys are case-insensitive, values are not; a key missing
  from the request fails the operator (no IfExists operators are modelled; an unknown operator
  raises ValueError);
- policy variables (only in policies with "Version": "2012-10-17"; under any other or no Version
  every condition value is plain text) are substituted in each listed value of StringEquals and
  StringLike before comparing:
  - `${key}` becomes the request-context value of `key` (looked up case-insensitively); a key
    is `[A-Za-z0-9_.:/-]+`;
  - if `key` is absent from the request context and no default is given, that listed value
    matches nothing (the other listed values of the key are still tried);
  - `${key, 'default'}` uses `default` when `key` is absent: the default is single-quoted, a
    doubled `''` inside it is one literal `'`; spaces around the key and around the quoted
    default are ignored;
  - `${*}`, `${?}` and `${$}` (written exactly so) stand for a literal `*`, `?` and `$`;
  - substitution is one left-to-right pass: a substituted value is never scanned again, so
    `${$}{aws:username}` is the literal text `${aws:username}`;
  - a `$` not followed by `{`, and a `${` that does not open one of the forms above (e.g. an
    unterminated `${`), is literal text; scanning resumes right after that `$`;
- StringEquals compares the substituted value exactly and case-sensitively;
- StringLike matches case-sensitively with `*` (any run, also empty) and `?` (exactly one
  character) -- but only where `*`/`?` appear literally in the policy text: the `*`/`?` produced
  by `${*}`/`${?}` or contained in a substituted context value or default are literal.

Stricter reading (for reviewers who suspect StringEquals is read literally): with
`equals_reads_variables=False` (keyword of `allows`/`token_allowed`, or the module-level default
`EQUALS_READS_VARIABLES`), StringEquals compares each listed value character for character, with no
variable processing at all (`${$}` stays four characters). StringLike is unaffected.
"""

from __future__ import annotations

import re
from typing import Any, Mapping, Optional

# Module-level default for `equals_reads_variables` when a caller passes None / nothing.
EQUALS_READS_VARIABLES = True

VARIABLES_VERSION = "2012-10-17"

_LITERALS = {"${*}": "*", "${?}": "?", "${$}": "$"}
# `${ key }` or `${ key , 'default' }`, matched at a `$`
_VARIABLE_RE = re.compile(r"\$\{\s*([A-Za-z0-9_.:/\-]+)\s*(?:,\s*'((?:[^']|'')*)'\s*)?\}")

# A resolved condition value: (text, wildcards) pieces; `wildcards` is True only for text copied
# from the policy, where StringLike's `*` and `?` keep their meaning.
_Pieces = list[tuple[str, bool]]


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _lookup(context: Mapping[str, str], key: str) -> Optional[str]:
    return next((v for k, v in context.items() if k.lower() == key.lower()), None)


def _resolve(value: str, context: Mapping[str, str], substitute: bool) -> Optional[_Pieces]:
    """Split a condition value into pieces after one pass of variable substitution;
    None when it names an absent key without a default (the value matches nothing)."""
    if not substitute:
        return [(value, True)]
    pieces: _Pieces = []
    text: list[str] = []  # pending policy text
    i = 0

    def flush() -> None:
        if text:
            pieces.append(("".join(text), True))
            text.clear()

    while i < len(value):
        if value.startswith("${", i):
            special = value[i:i + 4]
            if special in _LITERALS:
                flush()
                pieces.append((_LITERALS[special], False))
                i += 4
                continue
            match = _VARIABLE_RE.match(value, i)
            if match:
                key, default = match.group(1), match.group(2)
                actual = _lookup(context, key)
                if actual is None:
                    if default is None:
                        return None
                    actual = default.replace("''", "'")
                flush()
                pieces.append((actual, False))
                i = match.end()
                continue
        text.append(value[i])
        i += 1
    flush()
    return pieces


def _pattern(pieces: _Pieces) -> str:
    parts = []
    for text, wildcards in pieces:
        if not wildcards:
            parts.append(re.escape(text))
            continue
        for char in text:
            parts.append(".*" if char == "*" else "." if char == "?" else re.escape(char))
    return "".join(parts)


def _string_like(pieces: _Pieces, actual: str) -> bool:
    return re.fullmatch(_pattern(pieces), actual, flags=re.DOTALL) is not None


def _string_equals(pieces: _Pieces, actual: str) -> bool:
    return "".join(text for text, _ in pieces) == actual


_OPERATORS = {"StringEquals": _string_equals, "StringLike": _string_like}


def _condition_holds(condition: Mapping[str, Any], context: Mapping[str, str], *,
                     variables: bool, equals_reads_variables: bool) -> bool:
    for operator, keys in condition.items():
        test = _OPERATORS.get(operator)
        if test is None:
            raise ValueError(f"evaluator does not know operator {operator}")
        substitute = variables and (operator != "StringEquals" or equals_reads_variables)
        for key, expected in keys.items():
            actual = _lookup(context, key)
            if actual is None:
                return False
            resolved = (_resolve(e, context, substitute) for e in _as_list(expected))
            if not any(pieces is not None and test(pieces, actual) for pieces in resolved):
                return False
    return True


def _action_matches(patterns: Any, action: str) -> bool:
    return any(_string_like([(p.lower(), True)], action.lower()) for p in _as_list(patterns))


def allows(policy: Mapping[str, Any], *, federated: str, action: str, context: Mapping[str, str],
           equals_reads_variables: Optional[bool] = None) -> bool:
    """Whether `policy` lets `federated` perform `action` with request `context`.
    `equals_reads_variables=False` is the stricter, literal reading of StringEquals;
    None means the module-level EQUALS_READS_VARIABLES."""
    if equals_reads_variables is None:
        equals_reads_variables = EQUALS_READS_VARIABLES
    variables = policy.get("Version") == VARIABLES_VERSION
    allowed = False
    for statement in _as_list(policy["Statement"]):
        principal = statement.get("Principal", {})
        if federated not in _as_list(principal.get("Federated", [])):
            continue
        if not _action_matches(statement["Action"], action):
            continue
        if not _condition_holds(statement.get("Condition", {}), context, variables=variables,
                                equals_reads_variables=equals_reads_variables):
            continue
        if statement["Effect"] == "Deny":
            return False
        allowed = True
    return allowed


def gitlab_token(*, issuer_host: str, path: str, project_id: int, ref_type: str, ref: str, aud: str) -> dict[str, str]:
    """The request context AWS builds from a GitLab id_token (default sub claim)."""
    context = {f"{issuer_host}:sub": f"project_path:{path}:ref_type:{ref_type}:ref:{ref}", f"{issuer_host}:aud": aud}
    if issuer_host == "gitlab.com":
        context["gitlab.com:project_id"] = str(project_id)
    return context


def token_allowed(policy: Mapping[str, Any], *, account: str, issuer_host: str,
                  equals_reads_variables: Optional[bool] = None, **claims: Any) -> bool:
    return allows(policy, federated=f"arn:aws:iam::{account}:oidc-provider/{issuer_host}",
                  action="sts:AssumeRoleWithWebIdentity",
                  context=gitlab_token(issuer_host=issuer_host, **claims),
                  equals_reads_variables=equals_reads_variables)
