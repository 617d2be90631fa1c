"""An independent evaluator of IAM trust policies for web identity, written from AWS's documented
rules and sharing no code with `fleet`:

- statements are ORed, an explicit Deny wins; Principal.Federated and Action must match;
- condition operators in one block are ANDed, keys within an operator are ANDed, the values
  listed for one key are ORed; a key missing from the request fails a (non-IfExists) operator;
- StringEquals compares exactly and case-sensitively; StringLike matches `*` (any run, also
  empty) and `?` (one character), case-sensitively;
- `${*}`, `${?}` and `${$}` stand for literal `*`, `?` and `$`.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

_LITERALS = {"${*}": "*", "${?}": "?", "${$}": "$"}
_TOKEN_RE = re.compile(r"\$\{[*?$]\}|[*?]|[^*?$]+|\$")


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _like(pattern: str, value: str) -> bool:
    parts = []
    for token in _TOKEN_RE.findall(pattern):
        if token in _LITERALS:
            parts.append(re.escape(_LITERALS[token]))
        elif token == "*":
            parts.append(".*")
        elif token == "?":
            parts.append(".")
        else:
            parts.append(re.escape(token))
    return re.fullmatch("".join(parts), value, flags=re.DOTALL) is not None


def _equals(expected: str, value: str) -> bool:
    for escaped, literal in _LITERALS.items():
        expected = expected.replace(escaped, literal)
    return expected == value


_OPERATORS = {"StringEquals": _equals, "StringLike": _like}


def _condition_holds(condition: Mapping[str, Any], context: Mapping[str, str]) -> bool:
    for operator, keys in condition.items():
        test = _OPERATORS.get(operator)
        if test is None:
            raise ValueError(f"evaluator does not know operator {operator}")
        for key, expected in keys.items():
            # condition keys are case-insensitive; values are not
            actual = next((v for k, v in context.items() if k.lower() == key.lower()), None)
            if actual is None or not any(test(e, actual) for e in _as_list(expected)):
                return False
    return True


def _action_matches(patterns: Any, action: str) -> bool:
    return any(_like(p.lower(), action.lower()) for p in _as_list(patterns))


def allows(policy: Mapping[str, Any], *, federated: str, action: str, context: Mapping[str, str]) -> bool:
    allowed = False
    for statement in _as_list(policy["Statement"]):
        principal = statement.get("Principal", {})
        if federated not in _as_list(principal.get("Federated", [])):
            continue
        if not _action_matches(statement["Action"], action):
            continue
        if not _condition_holds(statement.get("Condition", {}), context):
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


def token_allowed(policy: Mapping[str, Any], *, account: str, issuer_host: str, **claims: Any) -> bool:
    return allows(policy, federated=f"arn:aws:iam::{account}:oidc-provider/{issuer_host}",
                  action="sts:AssumeRoleWithWebIdentity",
                  context=gitlab_token(issuer_host=issuer_host, **claims))
