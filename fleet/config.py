"""Stack configuration: the `fleet:*` keys, validated once into typed values.

Every error names the key (as written in the stack file), the bad value and what is allowed.
All problems are collected and reported together; nothing is planned from invalid config.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping
from urllib.parse import urlsplit

from .errors import ConfigError

DEFAULT_BRANCH = "{default_branch}"
REF_TYPES = ("branch", "tag")
ALLOWED_REFS = "'branch:<name or glob>', 'tag:<name or glob>' or 'branch:{default_branch}'"

_ACCOUNT_RE = re.compile(r"^\d{12}$")
_GROUP_PATH_RE = re.compile(r"^[A-Za-z0-9_.][A-Za-z0-9_.\-]*(/[A-Za-z0-9_.][A-Za-z0-9_.\-]*)*$")
_ROLE_PATH_RE = re.compile(r"^/([\x21-\x7e]+/)?$")
_POLICY_ARN_RE = re.compile(r"^arn:aws[a-z-]*:iam::(\d{12}|aws):policy/[\x21-\x7e]+$")
_PROVIDER_ARN_RE = re.compile(r"^arn:aws[a-z-]*:iam::(\d{12}):oidc-provider/(.+)$")
# git check-ref-format forbids these anywhere in a ref; `*` and `?` are kept as globs here.
_REF_FORBIDDEN_RE = re.compile(r"[\x00-\x20\x7f~^:\\\[]|\.\.|@\{|//")


@dataclass(frozen=True)
class RefRule:
    """One allowed ref: a branch or tag name, a glob of them, or the project's default branch."""

    ref_type: str  # "branch" | "tag"
    pattern: str  # a name, a glob, or DEFAULT_BRANCH

    @property
    def is_default_branch(self) -> bool:
        return self.pattern == DEFAULT_BRANCH

    @property
    def text(self) -> str:
        return f"{self.ref_type}:{self.pattern}"


@dataclass(frozen=True)
class GitLabConfig:
    url: str  # the instance: OIDC issuer, no trailing slash
    api_url: str  # where the REST API is reached (instance base, without /api/v4)
    group: str  # full path or numeric id, as configured
    include_subgroups: bool = True
    include_shared: bool = False
    include_archived: bool = False
    exclude: tuple[str, ...] = ()


@dataclass(frozen=True)
class OidcConfig:
    audience: str
    provider_arn: str | None  # adopt this provider instead of creating one


@dataclass(frozen=True)
class RoleConfig:
    path: str = "/"
    max_session_duration: int = 3600
    permissions_boundary: str | None = None


@dataclass(frozen=True)
class VariablesConfig:
    environment_scope: str = "*"
    protected: bool = False


@dataclass(frozen=True)
class FleetConfig:
    account_id: str
    gitlab: GitLabConfig
    oidc: OidcConfig
    refs: tuple[RefRule, ...]
    role: RoleConfig
    variables: VariablesConfig

    @property
    def issuer(self) -> str:
        return self.gitlab.url


# Keys of each object and their defaults; a key not listed here is a typo and an error.
_GITLAB_KEYS = {
    "url": None, "apiUrl": None, "group": None, "includeSubgroups": True,
    "includeShared": False, "includeArchived": False, "exclude": [],
}
_OIDC_KEYS = {"audience": None, "providerArn": None}
_TRUST_KEYS = {"refs": ["branch:main"]}
_ROLE_KEYS = {"path": "/", "maxSessionDuration": 3600, "permissionsBoundary": None}
_VARIABLES_KEYS = {"environmentScope": "*", "protected": False}
SECTIONS = {"gitlab": _GITLAB_KEYS, "oidc": _OIDC_KEYS, "trust": _TRUST_KEYS,
            "role": _ROLE_KEYS, "variables": _VARIABLES_KEYS}
TOP_LEVEL_KEYS = ("accountId", *SECTIONS)


class _Problems:
    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, key: str, value: Any, allowed: str) -> None:
        self.items.append(f"fleet:{key}: {value!r} is not allowed; {allowed}")


def _section(raw: Mapping[str, Any], name: str, problems: _Problems) -> dict[str, Any]:
    keys = SECTIONS[name]
    value = raw.get(name)
    if value is None:
        value = {}
    if not isinstance(value, Mapping):
        problems.add(name, value, f"expected an object with keys {', '.join(keys)}")
        return dict(keys)
    out = dict(keys)
    for key, item in value.items():
        if key not in keys:
            problems.add(f"{name}.{key}", item, f"unknown key; known keys of fleet:{name} are {', '.join(keys)}")
        elif item is not None:
            out[key] = item
    return out


def _bool(section: dict[str, Any], name: str, key: str, problems: _Problems) -> bool:
    value = section[key]
    if not isinstance(value, bool):
        problems.add(f"{name}.{key}", value, "expected true or false")
        return bool(SECTIONS[name][key])
    return value


def _https_url(value: Any, key: str, problems: _Problems, *, allow_http: bool = False) -> str | None:
    schemes = ("https", "http") if allow_http else ("https",)
    allowed = f"expected an absolute {' or '.join(s + '://' for s in schemes)} URL with a host, no query or fragment"
    if not isinstance(value, str) or not value:
        problems.add(key, value, allowed)
        return None
    parts = urlsplit(value)
    if parts.scheme not in schemes or not parts.hostname or parts.query or parts.fragment or parts.username:
        problems.add(key, value, allowed)
        return None
    return value.rstrip("/")


def parse_ref(text: Any) -> RefRule | None:
    """A ref rule from its text, or None when the text is not one."""
    if not isinstance(text, str) or ":" not in text:
        return None
    ref_type, _, pattern = text.partition(":")
    if ref_type not in REF_TYPES or not pattern:
        return None
    if pattern == DEFAULT_BRANCH:
        return RefRule(ref_type, pattern) if ref_type == "branch" else None
    if "{" in pattern or "}" in pattern or "$" in pattern:
        return None
    if _REF_FORBIDDEN_RE.search(pattern) or pattern.startswith(("/", "-", ".")) or pattern.endswith(("/", ".", ".lock")):
        return None
    return RefRule(ref_type, pattern)


def parse_config(raw: Mapping[str, Any]) -> FleetConfig:
    """Validate the `fleet:*` values (keys without the `fleet:` prefix) into a FleetConfig."""
    problems = _Problems()
    for key in raw:
        if key not in TOP_LEVEL_KEYS:
            problems.add(key, raw[key], f"unknown key; known keys are {', '.join('fleet:' + k for k in TOP_LEVEL_KEYS)}")

    account_id = raw.get("accountId")
    if isinstance(account_id, int) and not isinstance(account_id, bool):
        problems.add("accountId", account_id, 'quote it: a 12-digit string such as "012345678901" (YAML drops leading zeros of numbers)')
    elif not isinstance(account_id, str) or not _ACCOUNT_RE.match(account_id):
        problems.add("accountId", account_id, "expected the AWS account id, a string of 12 digits")

    gl = _section(raw, "gitlab", problems)
    url = _https_url(gl["url"], "gitlab.url", problems)
    api_url = url
    if gl["apiUrl"] is not None:
        api_url = _https_url(gl["apiUrl"], "gitlab.apiUrl", problems, allow_http=True)
        if api_url is not None:
            api_url = re.sub(r"/api/v4$", "", api_url)
    group = gl["group"]
    if isinstance(group, bool) or not (
        (isinstance(group, int) and group > 0) or (isinstance(group, str) and _GROUP_PATH_RE.match(group))
    ):
        problems.add("gitlab.group", group, "expected the group's full path (e.g. acme/platform) or its numeric id")
        group = ""
    exclude = gl["exclude"]
    if not isinstance(exclude, list) or not all(isinstance(e, str) and e.strip() for e in exclude):
        problems.add("gitlab.exclude", exclude, 'expected a list of path globs, e.g. ["acme/sandbox/**"]')
        exclude = []
    gitlab = GitLabConfig(
        url=url or "", api_url=api_url or "", group=str(group),
        include_subgroups=_bool(gl, "gitlab", "includeSubgroups", problems),
        include_shared=_bool(gl, "gitlab", "includeShared", problems),
        include_archived=_bool(gl, "gitlab", "includeArchived", problems),
        exclude=tuple(exclude),
    )

    oi = _section(raw, "oidc", problems)
    audience = oi["audience"] if oi["audience"] is not None else gitlab.url
    if not isinstance(audience, str) or not audience or any(c in audience for c in "*?$"):
        problems.add("oidc.audience", audience, "expected a non-empty string without *, ? or $ (default: the instance url)")
    provider_arn = oi["providerArn"]
    if provider_arn is not None:
        match = _PROVIDER_ARN_RE.match(provider_arn) if isinstance(provider_arn, str) else None
        expected_host = gitlab.url.removeprefix("https://")
        if not match:
            problems.add("oidc.providerArn", provider_arn, "expected arn:aws:iam::<account>:oidc-provider/<issuer without https://>")
        elif isinstance(account_id, str) and match.group(1) != account_id:
            problems.add("oidc.providerArn", provider_arn, f"the provider must be in this stack's account {account_id} (fleet:accountId)")
        elif url and match.group(2) != expected_host:
            problems.add("oidc.providerArn", provider_arn, f"it must be the provider for the issuer fleet:gitlab.url, i.e. end with oidc-provider/{expected_host}")

    tr = _section(raw, "trust", problems)
    refs: list[RefRule] = []
    if not isinstance(tr["refs"], list) or not tr["refs"]:
        problems.add("trust.refs", tr["refs"], f"expected a non-empty list of {ALLOWED_REFS}")
    else:
        for i, text in enumerate(tr["refs"]):
            rule = parse_ref(text)
            if rule is None:
                problems.add(f"trust.refs[{i}]", text, f"use {ALLOWED_REFS}; names follow git's ref rules (no spaces, ':', '..', '$', braces), '*' and '?' are globs")
            elif rule not in refs:
                refs.append(rule)

    ro = _section(raw, "role", problems)
    path = ro["path"]
    if not isinstance(path, str) or len(path) > 512 or not _ROLE_PATH_RE.match(path):
        problems.add("role.path", path, "expected '/' or '/<segments>/' (printable ASCII, at most 512 characters)")
    duration = ro["maxSessionDuration"]
    if isinstance(duration, bool) or not isinstance(duration, int) or not 3600 <= duration <= 43200:
        problems.add("role.maxSessionDuration", duration, "expected whole seconds from 3600 to 43200")
    boundary = ro["permissionsBoundary"]
    if boundary is not None and (not isinstance(boundary, str) or not _POLICY_ARN_RE.match(boundary)):
        problems.add("role.permissionsBoundary", boundary, "expected a managed policy ARN, e.g. arn:aws:iam::111111111111:policy/boundary")

    va = _section(raw, "variables", problems)
    scope = va["environmentScope"]
    if not isinstance(scope, str) or not scope.strip() or len(scope) > 255:
        problems.add("variables.environmentScope", scope, "expected a GitLab environment scope such as '*', 'production' or 'review/*'")
    protected = _bool(va, "variables", "protected", problems)

    if problems.items:
        raise ConfigError(problems.items)
    return FleetConfig(
        account_id=account_id,
        gitlab=gitlab,
        oidc=OidcConfig(audience=audience, provider_arn=provider_arn),
        refs=tuple(refs),
        role=RoleConfig(path=path, max_session_duration=duration, permissions_boundary=boundary),
        variables=VariablesConfig(environment_scope=scope, protected=protected),
    )


def fleet_values(stack_config: Mapping[str, Any]) -> dict[str, Any]:
    """The `fleet:*` entries of a stack file's `config:` map, keys without the prefix."""
    return {k.split(":", 1)[1]: v for k, v in stack_config.items() if k.startswith("fleet:")}
