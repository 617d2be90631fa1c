"""Stack configuration: the `fleet:*` keys, validated once into typed values.

Every error names the key (as written in the stack file), the bad value and what is allowed.
All problems are collected and reported together; nothing is planned from invalid config.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from .errors import ConfigError
from .gitref import ref_problem
from .spelling import MISSING, Missing, did_you_mean, spell

DEFAULT_BRANCH = "{default_branch}"
REF_TYPES = ("branch", "tag")
ALLOWED_REFS = "'branch:<name or glob>', 'tag:<name or glob>' or 'branch:{default_branch}'"
SUBJECTS = ("path", "id")  # fleet:trust.subject: what `sub` starts with (project_path or project_id)

# Identifiers are matched whole (fullmatch) and with ASCII classes: no trailing newline, no Unicode digits.
_ACCOUNT_RE = re.compile(r"[0-9]{12}")
_NUMERIC_ID_RE = re.compile(r"[1-9][0-9]{0,18}")
_GROUP_PATH_RE = re.compile(r"[A-Za-z0-9_.][A-Za-z0-9_.\-]*(/[A-Za-z0-9_.][A-Za-z0-9_.\-]*)*")
_ROLE_PATH_RE = re.compile(r"/([\x21-\x7e]+/)?")
_ARN_PARTITION_RE = re.compile(r"arn:([a-z-]*):.*")
_POLICY_ARN_RE = re.compile(r"arn:aws:iam::([0-9]{12}|aws):policy/[\x21-\x7e]+")
_PROVIDER_ARN_RE = re.compile(r"arn:aws:iam::([0-9]{12}):oidc-provider/([\x21-\x7e]+)")
_HOST_RE = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*")
_URL_PATH_RE = re.compile(r"(/[A-Za-z0-9._~-]+)*")
_PORT_RE = re.compile(r"[1-9][0-9]{0,4}")
_AUDIENCE_RE = re.compile(r"[\x21-\x7e]{1,255}")  # printable ASCII, no spaces
_SCOPE_RE = re.compile(r"[A-Za-z0-9_./${}*-]([A-Za-z0-9 _./${}*-]{0,253}[A-Za-z0-9_./${}*-])?")


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
    timeout: float = 20.0  # seconds per request attempt
    max_retries: int = 4
    concurrency: int = 8  # requests in flight at once while listing
    max_requests_per_second: float | None = None  # None: no client-side limit (see rate_limit)

    @property
    def rate_limit(self) -> float | None:
        """Requests per second this tool allows itself: the configured limit, else 10 on gitlab.com (its documented
        limit for listing a group's projects, 600 a minute) and none elsewhere."""
        if self.max_requests_per_second is not None:
            return self.max_requests_per_second
        return GITLAB_COM_RATE if urlsplit(self.api_url).hostname == "gitlab.com" else None


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
class PolicyRule:
    """`fleet:policies.rules[i]`: entries attached to the projects that match every given condition."""

    paths: tuple[str, ...]  # globs, as in fleet:gitlab.exclude; empty: any path
    topics: tuple[str, ...]  # GitLab topics the project must all carry; empty: any
    attach: tuple[str, ...]


@dataclass(frozen=True)
class PoliciesConfig:
    libraries: tuple[str, ...] = ()  # extra library folders, relative to the project
    default: tuple[str, ...] = ()  # attached to every role
    rules: tuple[PolicyRule, ...] = ()
    self_service: tuple[str, ...] = ()  # entries a project may opt into with the topic aws:<entry>
    allow_privileged: tuple[str, ...] = ()  # entries allowed to hold privileged actions


@dataclass(frozen=True)
class QuotasConfig:
    """IAM quotas of the account (raise them here after raising them with AWS)."""

    managed_policies_per_role: int = 10
    customer_managed_policies_per_account: int = 1500
    roles_per_account: int = 1000


@dataclass(frozen=True)
class GuardConfig:
    """`fleet:guard`: the blast-radius guard; `up` refuses a plan that deletes or replaces more roles."""

    max_deletes: int = 5


@dataclass(frozen=True)
class ShardConfig:
    """`fleet:shard`: this stack plans only the projects whose id hashes to shard `index` of `count`."""

    count: int  # 1..SHARD_COUNT_MAX
    index: int  # 0..count-1

    @property
    def owns_provider(self) -> bool:
        """Shard 0 creates the OIDC provider; the others use it."""
        return self.index == 0

    def to_json(self) -> dict[str, int]:
        return {"count": self.count, "index": self.index}


SHARD_COUNT_MAX = 1000
RECONCILE_MODES = ("report", "auto")
ADOPT_KINDS = ("variables", "roles", "provider")


@dataclass(frozen=True)
class AdoptConfig:
    """`fleet:adopt`: what made by hand the stack may import and manage instead of refusing it."""

    variables: bool = False  # ROLE_ARN / GITLAB_AWS_ACCOUNT_ID already set in the stack's scope
    roles: bool = False  # an IAM role with the planned name
    provider: bool = False  # the OIDC provider for the issuer

    def kinds(self) -> tuple[str, ...]:
        """The adopted kinds, by their key names."""
        return tuple(k for k in ADOPT_KINDS if getattr(self, k))



@dataclass(frozen=True)
class FleetConfig:
    account_id: str
    gitlab: GitLabConfig
    oidc: OidcConfig
    refs: tuple[RefRule, ...]
    role: RoleConfig
    variables: VariablesConfig
    policies: PoliciesConfig = PoliciesConfig()
    quotas: QuotasConfig = QuotasConfig()
    guard: GuardConfig = GuardConfig()
    reconcile: str = "report"  # one of RECONCILE_MODES
    adopt: AdoptConfig = AdoptConfig()
    subject: str = "path"  # one of SUBJECTS
    protected_refs_only: bool = False
    shard: ShardConfig | None = None  # None: one stack plans the whole group

    @property
    def issuer(self) -> str:
        return self.gitlab.url


# Keys of each object and their defaults; a key not listed here is a typo and an error.
_GITLAB_KEYS: dict[str, Any] = {
    "url": None, "apiUrl": None, "group": None, "includeSubgroups": True,
    "includeShared": False, "includeArchived": False, "exclude": [], "timeout": 20, "maxRetries": 4,
    "concurrency": 8, "maxRequestsPerSecond": None,
}
GITLAB_COM_RATE = 10.0  # requests per second: gitlab.com allows 600 a minute on GET /groups/:id/projects
_OIDC_KEYS: dict[str, Any] = {"audience": None, "providerArn": None}
_TRUST_KEYS: dict[str, Any] = {"refs": ["branch:main"], "subject": "path", "protectedRefsOnly": False}
_ROLE_KEYS: dict[str, Any] = {"path": "/", "maxSessionDuration": 3600, "permissionsBoundary": None}
_VARIABLES_KEYS: dict[str, Any] = {"environmentScope": "*", "protected": False}
_POLICIES_KEYS: dict[str, Any] = {"libraries": [], "default": [], "rules": [], "selfService": {}, "allowPrivileged": []}
_QUOTAS_KEYS: dict[str, Any] = {"managedPoliciesPerRole": 10, "customerManagedPoliciesPerAccount": 1500, "rolesPerAccount": 1000}
_GUARD_KEYS: dict[str, Any] = {"maxDeletes": 5}
_ADOPT_KEYS: dict[str, Any] = {"variables": False, "roles": False, "provider": False}
_SHARD_KEYS: dict[str, Any] = {"count": None, "index": None}
SECTIONS: dict[str, dict[str, Any]] = {"gitlab": _GITLAB_KEYS, "oidc": _OIDC_KEYS, "trust": _TRUST_KEYS,
            "role": _ROLE_KEYS, "variables": _VARIABLES_KEYS, "policies": _POLICIES_KEYS, "quotas": _QUOTAS_KEYS,
            "guard": _GUARD_KEYS, "adopt": _ADOPT_KEYS, "shard": _SHARD_KEYS}
ENTRY_NAME_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
TOP_LEVEL_KEYS = ("accountId", "reconcile", *SECTIONS)


REQUIRED = ("accountId", "gitlab.url", "gitlab.group")
# A value the shipped example stacks hold until it is edited, e.g. "<your 12-digit AWS account id>".
_PLACEHOLDER_RE = re.compile(r"<[^<>\n]+>")


def is_placeholder(value: Any) -> bool:
    return isinstance(value, str) and _PLACEHOLDER_RE.fullmatch(value) is not None


def _meant(key: str, section: str | None) -> str | None:
    """`accountId` for `accountID`, `gitlab.url` for `gitlab.URL`, `oidc.audience` for `gitlab.audience`."""
    if section is None:
        near = did_you_mean(key, list(TOP_LEVEL_KEYS))
    else:
        near = did_you_mean(key, list(SECTIONS[section]))
        near = f"{section}.{near}" if near else None
    # The same name (any case) in another section, or at the top level: a key put in the wrong place.
    elsewhere = [f"{name}.{k}" for name, keys in SECTIONS.items() if name != section for k in keys if k.casefold() == key.casefold()]
    elsewhere += [k for k in TOP_LEVEL_KEYS if section is not None and k.casefold() == key.casefold()]
    return near or (elsewhere[0] if elsewhere else None)


class _Problems:
    def __init__(self) -> None:
        self.items: list[str] = []
        self.meant: set[str] = set()  # keys a misspelt key was meant to be: no knock-on "missing" for them

    def add(self, key: str, value: Any, allowed: str) -> None:
        if isinstance(value, Missing):
            if key not in self.meant and key.split(".")[0] not in self.meant:
                self.items.append(f"fleet:{key}: missing; {allowed}")
        elif is_placeholder(value):
            self.items.append(f"fleet:{key}: {spell(value)} is the example's placeholder; set your own value: {allowed}")
        else:
            self.items.append(f"fleet:{key}: {spell(value)} is not allowed; {allowed}")

    def unknown(self, key: str, section: str | None, value: Any) -> None:
        where = f"fleet:{section}" if section else "fleet:*"
        known = SECTIONS[section] if section else TOP_LEVEL_KEYS
        meant = _meant(key, section)
        if meant:
            self.meant.add(meant)
            hint = f"did you mean fleet:{meant}?"
        else:
            hint = f"known keys of {where} are {', '.join(known)}"
        name = f"{section}.{key}" if section else key
        self.items.append(f"fleet:{name}: unknown key (set to {spell(value)}); {hint}")


def _section(raw: Mapping[str, Any], name: str, problems: _Problems) -> dict[str, Any]:
    keys = SECTIONS[name]
    value = raw.get(name)
    if value is None:
        value = {}
    out: dict[str, Any] = {key: MISSING if f"{name}.{key}" in REQUIRED else default for key, default in keys.items()}
    if not isinstance(value, Mapping):
        problems.add(name, value, f"expected an object with keys {', '.join(keys)}")
        return out
    for key, item in value.items():
        if key not in keys:
            problems.unknown(key, name, item)
        elif item is not None or f"{name}.{key}" in REQUIRED:
            out[key] = item
    return out


def _number(section: dict[str, Any], name: str, key: str, problems: _Problems, low: float, high: float,
            allowed: str, *, whole: bool = False) -> float:
    value = section[key]
    kinds = (int,) if whole else (int, float)
    in_range = isinstance(value, kinds) and not isinstance(value, bool) and (low <= value if whole else low < value) and value <= high
    if not in_range:
        problems.add(f"{name}.{key}", value, f"expected {allowed}")
        return float(SECTIONS[name][key])
    return float(value)


def _rate(value: Any, problems: _Problems) -> float | None:
    """fleet:gitlab.maxRequestsPerSecond: unset (None) leaves the instance's default."""
    if value is None or (isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value <= 1000):
        return None if value is None else float(value)
    problems.add("gitlab.maxRequestsPerSecond", value, "expected requests per second, more than 0 and at most 1000 "
                 "(leave it out for the default: 10 on gitlab.com, no limit elsewhere)")
    return None


def _bool(section: dict[str, Any], name: str, key: str, problems: _Problems) -> bool:
    value = section[key]
    if not isinstance(value, bool):
        problems.add(f"{name}.{key}", value, "expected true or false")
        return bool(SECTIONS[name][key])
    return value


def account_problem(value: Any) -> str | None:
    """What is wrong with an AWS account id, or None."""
    if isinstance(value, str) and _ACCOUNT_RE.fullmatch(value):
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return 'quote it: a 12-digit string such as "012345678901" (YAML drops leading zeros of numbers)'
    return "expected the AWS account id, a string of 12 digits"


def group_problem(value: Any) -> str | None:
    """What is wrong with a group reference (full path or numeric id), or None."""
    if isinstance(value, bool) or not (
        (isinstance(value, int) and 0 < value < 10**19)
        or (isinstance(value, str) and (_GROUP_PATH_RE.fullmatch(value) or is_numeric_id(value)))
    ):
        return "expected the group's full path (e.g. acme/platform) or its numeric id"
    return None


def is_numeric_id(value: str) -> bool:
    """True for a GitLab numeric id written in ASCII digits (not a path)."""
    return _NUMERIC_ID_RE.fullmatch(value) is not None


def normalise_url(value: Any, *, issuer: bool) -> tuple[str | None, str]:
    """(normalised URL, '') or (None, what is wrong). Scheme and host are lowercased, a trailing '/' dropped.

    The issuer (`fleet:gitlab.url`) must be https without a port (AWS refuses ports in provider URLs);
    an API URL may be http and carry a port. Neither may carry user info, a query or a fragment.
    """
    if not isinstance(value, str) or not value:
        return None, "expected a URL"
    if not value.isascii() or not value.isprintable() or any(c.isspace() for c in value):
        return None, "expected an ASCII URL without spaces or control characters"
    parts = urlsplit(value)
    schemes = ("https",) if issuer else ("https", "http")
    if parts.scheme.lower() not in schemes:
        return None, f"expected a URL starting with {' or '.join(s + '://' for s in schemes)}"
    if "?" in value or "#" in value:
        return None, "expected no query (?) or fragment (#)"
    if "@" in parts.netloc:
        return None, "expected no user name or password in the URL"
    host, _, port = parts.netloc.lower().partition(":")
    if port and (issuer or not _PORT_RE.fullmatch(port) or int(port) > 65535):
        return None, ("expected no port: AWS refuses ports in OIDC provider URLs" if issuer else "expected a port from 1 to 65535")
    if host.endswith("."):
        return None, "expected a host name without a trailing dot"
    if not _HOST_RE.fullmatch(host):
        return None, "expected a host name of letters, digits, '-' and '.'"
    path = parts.path.rstrip("/")
    if not _URL_PATH_RE.fullmatch(path) or any(part in (".", "..") for part in path.split("/")):
        return None, "expected a path of letters, digits and '._~-' segments, none of them '.' or '..'"
    netloc = f"{host}:{port}" if port else host
    return f"{parts.scheme.lower()}://{netloc}{path}", ""


def _url(value: Any, key: str, problems: _Problems, *, issuer: bool) -> str | None:
    url, wrong = normalise_url(value, issuer=issuer)
    if url is None:
        problems.add(key, value, wrong)
    return url


def _other_partition(arn: Any) -> bool:
    """True for an ARN of a partition other than `aws` (aws-cn, aws-us-gov, ...): refused, not misread."""
    match = _ARN_PARTITION_RE.fullmatch(arn) if isinstance(arn, str) else None
    return match is not None and match.group(1) != "aws"


def _name_problem(ref_type: str, pattern: str) -> str | None:
    """What is wrong with the name after `branch:` or `tag:`, or None."""
    if not pattern:
        return f"the name after {ref_type}: is empty; write e.g. \"{ref_type}:main\", or \"{ref_type}:*\" for every {ref_type}"
    if "[" in pattern:
        return ("character classes such as [0-9] are not globs here: IAM's StringLike knows only '*' (any characters, "
                "'/' included) and '?' (one character)")
    if "{" in pattern or "}" in pattern or "$" in pattern:
        return "'$', '{' and '}' are refused: only \"branch:{default_branch}\" is a placeholder, and IAM reads ${...} as a policy variable"
    if not pattern.isprintable():
        return "it holds a line break or another control character"
    wrong = ref_problem(pattern, globs=True)
    return f"{wrong}; names follow git's ref rules, '*' and '?' are globs" if wrong else None


def parse_ref(text: Any) -> RefRule | str:
    """A ref rule from its text, or what is wrong with the text (with a suggestion only when it is a valid rule)."""
    if not isinstance(text, str):
        return f"expected a string such as \"branch:main\"; use {ALLOWED_REFS}"
    ref_type, colon, pattern = text.partition(":")
    if not colon:
        kinds: tuple[str, ...] = REF_TYPES
        why = "a rule says whether it allows a branch or a tag"
        for prefix, kind in (("refs/heads/", "branch"), ("refs/tags/", "tag")):
            if text.startswith(prefix):
                text, kinds, why = text.removeprefix(prefix), (kind,), f"GitLab's tokens name the ref without {prefix}"
                break
        valid = [f"{kind}:{text}" for kind in kinds if isinstance(parse_ref(f"{kind}:{text}"), RefRule)]
        if valid:
            return f"did you mean {' or '.join(spell(v) for v in valid)}? {why[0].upper()}{why[1:]}"
        return f"use {ALLOWED_REFS}; and {parse_ref(f'{kinds[0]}:{text}')}"
    if ref_type not in REF_TYPES:
        near = did_you_mean(ref_type, list(REF_TYPES))
        hint = f"did you mean {spell(f'{near}:{pattern}')}? " if near and isinstance(parse_ref(f"{near}:{pattern}"), RefRule) else ""
        return f"{hint}{spell(ref_type)} is not a ref type: use {ALLOWED_REFS}"
    if pattern == DEFAULT_BRANCH:
        return RefRule(ref_type, pattern) if ref_type == "branch" else "{default_branch} is a branch: write \"branch:{default_branch}\""
    wrong = _name_problem(ref_type, pattern)
    return wrong or RefRule(ref_type, pattern)


def parse_config(raw: Mapping[str, Any], named: Mapping[str, str] | None = None) -> FleetConfig:
    """Validate the `fleet:*` values (keys without the `fleet:` prefix) into a FleetConfig.

    `named`: keys whose value came from elsewhere (a command-line flag), and how to name them in an error.
    """
    problems = _Problems()
    account_key = (named or {}).get("accountId", "fleet:accountId")
    for key in raw:
        if key not in TOP_LEVEL_KEYS:
            problems.unknown(key, None, raw[key])

    # Every section's unknown keys first: a key misplaced there may be the top-level key read next.
    sections = {name: _section(raw, name, problems) for name in SECTIONS}
    account_id = raw.get("accountId", MISSING)
    wrong = account_problem(account_id)
    if wrong:
        problems.add("accountId", account_id, wrong)

    gl = sections["gitlab"]
    url = _url(gl["url"], "gitlab.url", problems, issuer=True)
    if url is not None and len(url) > 255:
        problems.add("gitlab.url", gl["url"], "expected at most 255 characters (AWS's limit for a provider URL)")
    api_url = url
    if gl["apiUrl"] is not None:
        api_url = _url(gl["apiUrl"], "gitlab.apiUrl", problems, issuer=False)
        if api_url is not None:
            api_url = api_url.removesuffix("/api/v4")
    group = gl["group"]
    wrong = group_problem(group)
    if wrong:
        problems.add("gitlab.group", group, wrong)
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
        timeout=_number(gl, "gitlab", "timeout", problems, 0, 600, "seconds per request, more than 0 and at most 600"),
        max_retries=int(_number(gl, "gitlab", "maxRetries", problems, 0, 10, "a whole number from 0 to 10", whole=True)),
        concurrency=int(_number(gl, "gitlab", "concurrency", problems, 1, 32, "a whole number from 1 to 32", whole=True)),
        max_requests_per_second=_rate(gl["maxRequestsPerSecond"], problems),
    )

    oi = sections["oidc"]
    audience = oi["audience"] if oi["audience"] is not None else gitlab.url
    if oi["audience"] is None and url is None:
        pass  # the default follows fleet:gitlab.url, which is reported already
    elif not isinstance(audience, str) or not _AUDIENCE_RE.fullmatch(audience) or any(c in audience for c in "*?$"):
        problems.add("oidc.audience", audience, "expected printable ASCII without spaces, *, ? or $, at most 255 "
                                                "characters (default: the instance url)")
    provider_arn = oi["providerArn"]
    if provider_arn is not None:
        match = _PROVIDER_ARN_RE.fullmatch(provider_arn) if isinstance(provider_arn, str) else None
        expected_host = gitlab.url.removeprefix("https://")
        if not match and _other_partition(provider_arn):
            problems.add("oidc.providerArn", provider_arn, "only the aws partition is supported (arn:aws:...)")
        elif not match:
            problems.add("oidc.providerArn", provider_arn, "expected arn:aws:iam::<account>:oidc-provider/<issuer without https://>")
        elif isinstance(account_id, str) and match.group(1) != account_id:
            problems.add("oidc.providerArn", provider_arn, f"the provider must be in this stack's account {account_id} ({account_key})")
        elif url and match.group(2) != expected_host:
            problems.add("oidc.providerArn", provider_arn, f"it must be the provider for the issuer fleet:gitlab.url, i.e. end with oidc-provider/{expected_host}")

    tr = sections["trust"]
    refs: list[RefRule] = []
    if not isinstance(tr["refs"], list) or not tr["refs"]:
        problems.add("trust.refs", tr["refs"], f"expected a non-empty list of {ALLOWED_REFS}")
    else:
        for i, text in enumerate(tr["refs"]):
            rule = parse_ref(text)
            if isinstance(rule, str):
                problems.add(f"trust.refs[{i}]", text, rule)
            elif rule not in refs:
                refs.append(rule)
    subject = tr["subject"]
    if subject not in SUBJECTS:
        near = did_you_mean(subject, list(SUBJECTS)) if isinstance(subject, str) else None
        problems.add("trust.subject", subject, "expected path (sub starts with project_path) or id (sub starts with "
                                               "project_id, rename-proof)" + (f"; did you mean {near}?" if near else ""))
        subject = "path"
    protected_refs_only = _bool(tr, "trust", "protectedRefsOnly", problems)

    ro = sections["role"]
    path = ro["path"]
    if not isinstance(path, str) or len(path) > 512 or not _ROLE_PATH_RE.fullmatch(path):
        problems.add("role.path", path, "expected '/' or '/<segments>/' (printable ASCII, at most 512 characters)")
    duration = ro["maxSessionDuration"]
    if isinstance(duration, bool) or not isinstance(duration, int) or not 3600 <= duration <= 43200:
        problems.add("role.maxSessionDuration", duration, "expected whole seconds from 3600 to 43200")
    boundary = ro["permissionsBoundary"]
    if boundary is not None and _other_partition(boundary):
        problems.add("role.permissionsBoundary", boundary, "only the aws partition is supported (arn:aws:...)")
    elif boundary is not None and (not isinstance(boundary, str) or not _POLICY_ARN_RE.fullmatch(boundary)):
        problems.add("role.permissionsBoundary", boundary, "expected a managed policy ARN, e.g. arn:aws:iam::111111111111:policy/boundary")

    va = sections["variables"]
    scope = va["environmentScope"]
    if not isinstance(scope, str) or not _SCOPE_RE.fullmatch(scope):
        problems.add("variables.environmentScope", scope, "expected a GitLab environment scope such as '*', 'production' "
                                                          "or 'review/*' (letters, digits, spaces inside, '_./${}*-')")
    protected = _bool(va, "variables", "protected", problems)

    policies = _policies(sections["policies"], problems)
    qu = sections["quotas"]
    quotas = QuotasConfig(
        managed_policies_per_role=int(_number(qu, "quotas", "managedPoliciesPerRole", problems, 1, 25,
                                              "a whole number from 1 to 25 (IAM's highest quota)", whole=True)),
        customer_managed_policies_per_account=int(_number(qu, "quotas", "customerManagedPoliciesPerAccount", problems, 1, 5000,
                                                          "a whole number from 1 to 5000 (IAM's highest quota)", whole=True)),
        roles_per_account=int(_number(qu, "quotas", "rolesPerAccount", problems, 1, 5000,
                                      "a whole number from 1 to 5000 (IAM's highest quota)", whole=True)),
    )

    guard = GuardConfig(max_deletes=int(_number(sections["guard"], "guard", "maxDeletes", problems, 0, 10000,
                                                 "a whole number from 0 to 10000 (roles one up may delete or replace)",
                                                 whole=True)))
    reconcile = raw.get("reconcile")
    if reconcile is None:
        reconcile = "report"
    elif reconcile not in RECONCILE_MODES:
        near = did_you_mean(reconcile, list(RECONCILE_MODES)) if isinstance(reconcile, str) else None
        problems.add("reconcile", reconcile, "expected report or auto" + (f"; did you mean {near}?" if near else ""))
        reconcile = "report"
    ad = sections["adopt"]
    adopt = AdoptConfig(**{kind: _bool(ad, "adopt", kind, problems) for kind in ADOPT_KINDS})
    if adopt.provider and provider_arn is not None:
        problems.add("adopt.provider", True, "fleet:oidc.providerArn already names a provider this stack uses without "
                                             "managing it: set one of the two, not both")

    shard = _shard(raw.get("shard"), sections["shard"], problems)
    if shard is not None and not shard.owns_provider and adopt.provider:
        problems.add("adopt.provider", True, f"shard 0 creates (or adopts) the OIDC provider, and this stack is shard "
                                             f"{shard.index} (fleet:shard.index): set it in shard 0's stack file only")

    if problems.items:
        raise ConfigError(problems.items)
    assert isinstance(account_id, str)  # checked above
    return FleetConfig(
        account_id=account_id,
        gitlab=gitlab,
        oidc=OidcConfig(audience=audience, provider_arn=provider_arn),
        refs=tuple(refs),
        role=RoleConfig(path=path, max_session_duration=duration, permissions_boundary=boundary),
        variables=VariablesConfig(environment_scope=scope, protected=protected),
        policies=policies, quotas=quotas, guard=guard, reconcile=reconcile, adopt=adopt,
        subject=subject, protected_refs_only=protected_refs_only, shard=shard,
    )


def _shard(given: Any, sh: dict[str, Any], problems: _Problems) -> ShardConfig | None:
    """`fleet:shard: {count: K, index: i}`, or None when the section is absent (one stack for the group)."""
    if given is None or not isinstance(given, Mapping):
        return None  # absent; a value that is not an object is reported by _section
    count = MISSING if sh["count"] is None else sh["count"]  # both keys are required once the section is given
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= SHARD_COUNT_MAX:
        problems.add("shard.count", count, f"expected a whole number from 1 to {SHARD_COUNT_MAX} (how many stacks share the group)")
        return None
    index = MISSING if sh["index"] is None else sh["index"]
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < count:
        problems.add("shard.index", index, f"expected a whole number from 0 to {count - 1} (fleet:shard.count is {count}; "
                                           "shards are numbered from 0)")
        return None
    return ShardConfig(count=count, index=index)


def _names(value: Any, key: str, problems: _Problems) -> tuple[str, ...]:
    """A list of library entry names."""
    if not isinstance(value, list) or not all(isinstance(n, str) and ENTRY_NAME_RE.fullmatch(n) for n in value):
        problems.add(key, value, 'expected a list of policy library entry names, e.g. ["caller-identity"]')
        return ()
    return tuple(value)


def _strings_list(value: Any, key: str, problems: _Problems, allowed: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() and v == v.strip() for v in value):
        problems.add(key, value, allowed)
        return ()
    return tuple(value)


def _keys_known(value: Mapping[str, Any], known: tuple[str, ...], key: str, problems: _Problems) -> None:
    for name in value:
        if name not in known:
            near = did_you_mean(str(name), list(known))
            problems.add(f"{key}.{name}", value[name], f"unknown key; {f'did you mean {key}.{near}?' if near else 'known keys are ' + ', '.join(known)}")


def _policies(po: dict[str, Any], problems: _Problems) -> PoliciesConfig:
    """`fleet:policies`: the library folders, and which entries each project gets."""
    libraries = _strings_list(po["libraries"], "policies.libraries", problems,
                              'expected a list of folders relative to the project, e.g. ["policies"]')
    rules: list[PolicyRule] = []
    raw_rules = po["rules"] if isinstance(po["rules"], list) else None
    if raw_rules is None:
        problems.add("policies.rules", po["rules"], "expected a list of {match: {paths: [...], topics: [...]}, attach: [...]}")
    for i, rule in enumerate(raw_rules or []):
        key = f"policies.rules[{i}]"
        if not isinstance(rule, Mapping):
            problems.add(key, rule, "expected {match: {paths: [...], topics: [...]}, attach: [...]}")
            continue
        _keys_known(rule, ("match", "attach"), key, problems)
        match = rule.get("match", MISSING)
        if not isinstance(match, Mapping) or not (match.get("paths") or match.get("topics")):
            problems.add(f"{key}.match", match, "expected paths (globs) and/or topics; a rule for every project belongs "
                                                "in fleet:policies.default")
            match = {}
        _keys_known(match, ("paths", "topics"), f"{key}.match", problems)
        rules.append(PolicyRule(
            paths=_strings_list(match.get("paths", []), f"{key}.match.paths", problems, 'expected a list of path globs, e.g. ["acme/apps/**"]'),
            topics=_strings_list(match.get("topics", []), f"{key}.match.topics", problems, 'expected a list of GitLab topics, e.g. ["container"]'),
            attach=_names(rule.get("attach", MISSING), f"{key}.attach", problems)))
    self_service = po["selfService"]
    allowed: tuple[str, ...] = ()
    if not isinstance(self_service, Mapping):
        problems.add("policies.selfService", self_service, 'expected {allowed: ["<entry>", ...]}')
    else:
        _keys_known(self_service, ("allowed",), "policies.selfService", problems)
        allowed = _names(self_service.get("allowed", []), "policies.selfService.allowed", problems)
    return PoliciesConfig(libraries=libraries, default=_names(po["default"], "policies.default", problems), rules=tuple(rules),
                          self_service=allowed, allow_privileged=_names(po["allowPrivileged"], "policies.allowPrivileged", problems))


def fleet_values(stack_config: Mapping[str, Any]) -> dict[str, Any]:
    """The `fleet:*` entries of a stack file's `config:` map, keys without the prefix."""
    return {k.split(":", 1)[1]: v for k, v in stack_config.items() if k.startswith("fleet:")}
