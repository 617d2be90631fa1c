"""`python -m fleet audit`: a moto account holding roles in the manual recipes' shapes, and a fleet-only one."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from moto import mock_aws

from fleet.cli import main
from tests.gitlab_double import GitLabDouble, make_group, make_project

ACCOUNT = "111111111111"
URL = "https://gitlab.example.com"
PREFIX = "gitlab.example.com"
PROVIDER = f"arn:aws:iam::{ACCOUNT}:oidc-provider/{PREFIX}"
SUB, AUD = f"{PREFIX}:sub", f"{PREFIX}:aud"
CART_MAIN = "project_path:shop/cart:ref_type:branch:ref:main"


def small_group() -> GitLabDouble:
    groups = [make_group(1, "shop"), make_group(2, "shop/sub", 1), make_group(3, "shopping")]
    projects = [make_project(10, "shop/cart", groups), make_project(11, "shop/cart-v2", groups),
                make_project(12, "shop/api", groups, default_branch="trunk"), make_project(13, "shop/sub/web", groups)]
    return GitLabDouble(groups=groups, projects=projects)


def write_stack(tmp_path: Path, double: GitLabDouble, *, url: str = URL, refs: list[str] | None = None,
                account: str = ACCOUNT) -> Path:
    stacks = tmp_path / "stacks"
    stacks.mkdir(exist_ok=True)
    config = {"aws:region": "eu-west-1", "fleet:accountId": account,
              "fleet:gitlab": {"url": url, "apiUrl": double.url, "group": "shop"},
              "fleet:trust": {"refs": refs or ["branch:{default_branch}"]}}
    (stacks / "Pulumi.prod.yaml").write_text(yaml.safe_dump({"config": config}))
    return stacks


def cli(capsys, *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def audit_json(capsys, stacks: Path, *extra: str) -> tuple[int, dict[str, Any]]:
    code, out, err = cli(capsys, "audit", "--stack", "prod", "--stacks-dir", str(stacks), "--format", "json", *extra)
    assert code in (0, 2), err
    return code, json.loads(out)


@pytest.fixture
def iam(monkeypatch, token):
    """A moto account ACCOUNT with the provider for URL; IAM client inside it."""
    monkeypatch.setenv("MOTO_ACCOUNT_ID", ACCOUNT)
    with mock_aws():
        client = boto3.client("iam", region_name="us-east-1")
        client.create_open_id_connect_provider(Url=URL, ClientIDList=[URL], ThumbprintList=["a" * 40])
        yield client


def create_role(iam, name: str, trust: dict[str, Any], tags: dict[str, str] | None = None, path: str = "/") -> None:
    iam.create_role(RoleName=name, Path=path, AssumeRolePolicyDocument=json.dumps(trust),
                    Tags=[{"Key": k, "Value": v} for k, v in (tags or {}).items()])


def create_fleet_roles(iam, capsys, stacks: Path) -> dict[str, dict[str, Any]]:
    """The roles exactly as the program declares them: name, path, trust policy and tags from `plan --format json`."""
    code, out, err = cli(capsys, "plan", "--stack", "prod", "--stacks-dir", str(stacks), "--format", "json")
    assert code == 0, err
    plan = json.loads(out)
    for p in plan["projects"]:
        create_role(iam, p["role_name"], p["trust_policy"], p["tags"])
    return {p["path"]: p for p in plan["projects"]}


def web_identity(condition: dict[str, Any], *, federated: str | list[str] = PROVIDER, extra: tuple[dict[str, Any], ...] = ()) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"Federated": federated}, "Action": "sts:AssumeRoleWithWebIdentity",
         "Condition": condition}, *extra]}


# The manual recipes' shapes, and the findings each must get (exactly).
LEGACY: dict[str, tuple[dict[str, Any], set[str]]] = {
    # the group's wildcard: every project, any branch
    "legacy-group-any-branch": (web_identity({"StringEquals": {AUD: URL},
                                              "StringLike": {SUB: "project_path:shop/*:ref_type:branch:ref:*"}}),
                                {"MULTIPLE_PROJECTS", "UNPROTECTED_REFS"}),
    # aud only: every project on the instance
    "legacy-aud-only": (web_identity({"StringEquals": {AUD: URL}}), {"AUD_ONLY", "MULTIPLE_PROJECTS", "UNPROTECTED_REFS"}),
    # sub only
    "legacy-no-aud": (web_identity({"StringEquals": {SUB: CART_MAIN}}), {"NO_AUD"}),
    # the published example: StringEquals with ref:* never matches
    "legacy-equals-star": (web_identity({"StringEquals": {AUD: URL, SUB: "project_path:shop/cart:ref_type:branch:ref:*"}}),
                           {"WILDCARD_IN_STRINGEQUALS"}),
    # a correct per-project role made by hand
    "legacy-cart-main": (web_identity({"StringEquals": {AUD: URL, SUB: CART_MAIN}}), set()),
    # a set operator on sub, with a prefix glob that also takes shop/cart-v2
    "legacy-for-any-value": (web_identity({"StringEquals": {AUD: URL}, "ForAnyValue:StringLike": {SUB: "project_path:shop/cart*"}}),
                             {"MULTIPLE_PROJECTS", "UNPROTECTED_REFS", "SET_OPERATOR"}),
    # an extra AWS principal next to a correct statement
    "legacy-extra-principal": (web_identity({"StringEquals": {AUD: URL, SUB: CART_MAIN}}, extra=(
        {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::222222222222:root"}, "Action": "sts:AssumeRole"},)),
                               {"OTHER_PRINCIPALS"}),
    # another instance's provider in the same statement
    "legacy-two-providers": (web_identity({"StringEquals": {AUD: URL, SUB: CART_MAIN}},
                                          federated=[PROVIDER, f"arn:aws:iam::{ACCOUNT}:oidc-provider/gitlab.other.test"]),
                             {"OTHER_PRINCIPALS"}),
    # the issuer's provider of another account
    "legacy-foreign-provider": (web_identity({"StringEquals": {AUD: URL, SUB: CART_MAIN}},
                                             federated=f"arn:aws:iam::999999999999:oidc-provider/{PREFIX}"),
                                {"FOREIGN_PROVIDER"}),
}


def test_finds_each_legacy_shape_and_leaves_fleet_roles_and_strangers_alone(tmp_path, iam, capsys):
    with small_group() as double:
        stacks = write_stack(tmp_path, double)
        fleet = create_fleet_roles(iam, capsys, stacks)
        for name, (trust, _) in LEGACY.items():
            create_role(iam, name, trust)
        # not the issuer's: another instance's provider, and a service role
        create_role(iam, "other-instance", web_identity({"StringLike": {"gitlab.other.test:sub": "*"}},
                                                        federated=f"arn:aws:iam::{ACCOUNT}:oidc-provider/gitlab.other.test"))
        create_role(iam, "ec2-role", {"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]})
        code, report = audit_json(capsys, stacks)
    assert code == 2
    roles = {r["name"]: r for r in report["roles"]}
    assert set(roles) == set(LEGACY) | {p["role_name"] for p in fleet.values()}
    for name, (_, expected) in LEGACY.items():
        assert {f["code"] for f in roles[name]["findings"]} == expected, name
        assert not roles[name]["managed"]
    for path, planned in fleet.items():
        role = roles[planned["role_name"]]
        assert role["managed"] and role["findings"] == [] and role["managed_by_stack"] == "prod"
        assert role["admits"] == [{"id": planned["id"], "path": path, "refs": [planned["refs"][0]]}]
    group_wide = roles["legacy-group-any-branch"]
    assert [a["path"] for a in group_wide["admits"]] == ["shop/cart", "shop/cart-v2", "shop/api", "shop/sub/web"]
    assert group_wide["admits"][2]["refs"] == ["branch:trunk", "branch:main", "any branch"]  # shop/api: default trunk
    assert roles["legacy-aud-only"]["admits_outside_group"] and not group_wide["admits_outside_group"]
    assert [a["path"] for a in roles["legacy-for-any-value"]["admits"]] == ["shop/cart", "shop/cart-v2"]
    assert roles["legacy-equals-star"]["admits"] == [] and roles["legacy-foreign-provider"]["admits"] == []
    assert roles["legacy-cart-main"]["admits"] == [{"id": 10, "path": "shop/cart", "refs": ["branch:main"]}]
    severities = {f["code"]: f["severity"] for r in report["roles"] for f in r["findings"]}
    assert severities["AUD_ONLY"] == severities["MULTIPLE_PROJECTS"] == "high"
    assert severities["OTHER_PRINCIPALS"] == severities["NO_AUD"] == "medium"
    assert report["counts"]["roles_read"] == len(roles) + 2 and report["providers"] == [PROVIDER]
    assert report["audiences"] == [URL] and report["clean"] is False


def test_a_fleet_only_account_is_clean(tmp_path, iam, capsys, shop):
    """The sample group's fleet, with a tag glob and a default branch rule: exit 0, each role its own project's."""
    stacks = write_stack(tmp_path, shop, refs=["branch:{default_branch}", "tag:v*"])
    fleet = create_fleet_roles(iam, capsys, stacks)
    code, report = audit_json(capsys, stacks)
    assert code == 0 and report["clean"] is True
    assert len(report["roles"]) == len(fleet) > 10
    for role in report["roles"]:
        assert role["managed"] and [a["id"] for a in role["admits"]] == [role["project_id"]], role
    code, out, _ = cli(capsys, "audit", "--stack", "prod", "--stacks-dir", str(stacks))
    assert code == 0 and "no findings" in " ".join(out.split())


def test_a_fleet_role_whose_trust_was_edited_differs_from_the_plan(tmp_path, iam, capsys):
    with small_group() as double:
        stacks = write_stack(tmp_path, double)
        fleet = create_fleet_roles(iam, capsys, stacks)
        cart = fleet["shop/cart"]
        edited = copy.deepcopy(cart["trust_policy"])
        statement = edited["Statement"][0]
        statement["Condition"]["StringLike"] = {SUB: "project_path:shop/cart:ref_type:branch:ref:*"}
        del statement["Condition"]["StringEquals"][SUB]
        iam.update_assume_role_policy(RoleName=cart["role_name"], PolicyDocument=json.dumps(edited))
        # a role of this stack for a project the group no longer lists
        create_role(iam, "gitlab-shop-gone", web_identity({"StringEquals": {AUD: URL, SUB: "project_path:shop/gone:ref_type:branch:ref:main"}}),
                    {"managed-by": "gitlab-aws-oidc-fleet", "fleet-stack": "prod", "gitlab-project-id": "99"})
        # another stack's role is judged like any other, not against this plan
        create_role(iam, "gitlab-other-stack", web_identity({"StringEquals": {AUD: URL, SUB: "project_path:shop/cart-v2:ref_type:branch:ref:x"}}),
                    {"managed-by": "gitlab-aws-oidc-fleet", "fleet-stack": "dev", "gitlab-project-id": "11"})
        # key order, list order and one-item lists are not differences
        api = fleet["shop/api"]
        reordered = {"Statement": [dict(reversed(list(s.items()))) for s in api["trust_policy"]["Statement"]], "Version": "2012-10-17"}
        reordered["Statement"][0]["Action"] = [reordered["Statement"][0]["Action"]]
        iam.update_assume_role_policy(RoleName=api["role_name"], PolicyDocument=json.dumps(reordered))
        code, report = audit_json(capsys, stacks)
    assert code == 2
    roles = {r["name"]: r for r in report["roles"]}
    assert {f["code"] for f in roles[cart["role_name"]]["findings"]} == {"DIFFERS_FROM_PLAN", "UNPROTECTED_REFS"}
    gone = roles["gitlab-shop-gone"]
    # its trust names a path the group no longer holds: whoever takes shop/gone over would get the role
    assert [f["code"] for f in gone["findings"]] == ["DIFFERS_FROM_PLAN", "PROJECT_NOT_IN_GROUP"]
    assert "project 99" in gone["findings"][0]["message"] and "shop/gone" in gone["findings"][1]["message"]
    other = roles["gitlab-other-stack"]
    assert not other["managed"] and other["managed_by_stack"] == "dev" and other["findings"] == []
    assert roles[api["role_name"]]["findings"] == []


def test_gitlab_com_ref_protected_pins_what_a_glob_admits(tmp_path, monkeypatch, token, capsys):
    monkeypatch.setenv("MOTO_ACCOUNT_ID", ACCOUNT)
    provider = f"arn:aws:iam::{ACCOUNT}:oidc-provider/gitlab.com"
    glob = "project_path:shop/cart:ref_type:branch:ref:*"
    with small_group() as double, mock_aws():
        iam = boto3.client("iam", region_name="us-east-1")
        iam.create_open_id_connect_provider(Url="https://gitlab.com", ClientIDList=["https://gitlab.com"], ThumbprintList=["a" * 40])
        base = {"gitlab.com:aud": "https://gitlab.com", "gitlab.com:project_id": "10"}
        create_role(iam, "pinned", web_identity({"StringEquals": {**base, "gitlab.com:ref_protected": "true"},
                                                 "StringLike": {"gitlab.com:sub": glob}}, federated=provider))
        create_role(iam, "unpinned", web_identity({"StringEquals": base, "StringLike": {"gitlab.com:sub": glob}}, federated=provider))
        # project_id pins one project whatever sub says
        create_role(iam, "by-id", web_identity({"StringEquals": {**base, "gitlab.com:ref_protected": "true"},
                                                "StringLike": {"gitlab.com:sub": "*"}}, federated=provider))
        stacks = write_stack(tmp_path, double, url="https://gitlab.com")
        code, report = audit_json(capsys, stacks)
    roles = {r["name"]: r for r in report["roles"]}
    assert code == 2
    assert roles["pinned"]["findings"] == [] and roles["by-id"]["findings"] == []
    assert [a["path"] for a in roles["by-id"]["admits"]] == ["shop/cart"]
    assert [f["code"] for f in roles["unpinned"]["findings"]] == ["UNPROTECTED_REFS"]
    assert "gitlab.com:ref_protected" in roles["unpinned"]["findings"][0]["message"]


def test_offline_listing_table_fits_80_columns(tmp_path, iam, capsys):
    with small_group() as double:
        stacks = write_stack(tmp_path, double)
        code, listing, err = cli(capsys, "inventory", "--stack", "prod", "--stacks-dir", str(stacks))
        assert code == 0, err
        create_role(iam, "legacy-group-any-branch-with-a-name-long-enough-to-be-cut-in-the-table", LEGACY["legacy-group-any-branch"][0])
    saved = tmp_path / "listing.json"
    saved.write_text(listing)
    code, out, err = cli(capsys, "audit", "--stack", "prod", "--stacks-dir", str(stacks), "--inventory", str(saved))
    assert code == 2, err
    assert all(len(line) <= 80 for line in out.splitlines()), out
    assert "MULTIPLE_PROJECTS" in out and "4 projects (any branch)" in out
    assert "2 findings (1 high, 1 medium, 0 low)" in " ".join(out.split())


def test_credentials_of_another_account_are_refused(tmp_path, iam, capsys):
    with small_group() as double:
        stacks = write_stack(tmp_path, double, account="222222222222")
        code, out, err = cli(capsys, "audit", "--stack", "prod", "--stacks-dir", str(stacks))
    assert code == 1 and out == ""
    assert "credentials are for account 111111111111" in err and "fleet:accountId is 222222222222" in err


def test_no_provider_for_the_issuer_is_said(tmp_path, monkeypatch, token, capsys):
    monkeypatch.setenv("MOTO_ACCOUNT_ID", ACCOUNT)
    with small_group() as double, mock_aws():
        iam = boto3.client("iam", region_name="us-east-1")
        create_role(iam, "legacy-aud-only", LEGACY["legacy-aud-only"][0])
        stacks = write_stack(tmp_path, double)
        code, report = audit_json(capsys, stacks)
    assert code == 2 and report["providers"] == [PROVIDER]
    assert report["notes"] and "no OIDC provider" in report["notes"][0]


def test_a_trust_it_cannot_evaluate_is_a_finding_not_a_guess(tmp_path, iam, capsys):
    with small_group() as double:
        stacks = write_stack(tmp_path, double)
        create_role(iam, "numeric", web_identity({"StringEquals": {AUD: URL}, "NumericLessThan": {f"{PREFIX}:exp": "5"}}))
        code, report = audit_json(capsys, stacks)
    assert code == 2
    [role] = report["roles"]
    assert role["admits"] is None and [f["code"] for f in role["findings"]] == ["UNEVALUATED"]
    assert "NumericLessThan" in role["findings"][0]["message"]


# --- the pure core: narrowing the probes never changes the answer -----------------------------------

from unittest.mock import patch  # noqa: E402

from hypothesis import example, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from fleet import audit  # noqa: E402
from fleet.inventory import parse_inventory  # noqa: E402
from fleet.planner import build_plan  # noqa: E402
from tests.helpers import make_config  # noqa: E402


def pure_setup(url: str):
    listing = parse_inventory({"group": {"id": 1, "full_path": "shop"}, "projects": [
        {"id": 10, "path_with_namespace": "shop/cart", "default_branch": "main"},
        {"id": 11, "path_with_namespace": "shop/cart-v2", "default_branch": "main"},
        {"id": 12, "path_with_namespace": "shop/api", "default_branch": "trunk"}]})
    plan = build_plan(make_config(gitlab={"url": url, "group": "shop"}), listing, "prod")
    return listing, plan


HEADS = ["project_path:shop/cart:", "project_path:shop/cart-v2:", "project_id:10:", "project_id:12:", "project_path:shop/*:",
         "project_path:shop/cart", "project_path:shop/car?:", "project_path:${*}:", "", "*"]
SUB_PIECES = ["ref_type:", "branch", "tag", ":ref:", "main", "trunk", "*", "*", "*", "?", ":", "${*}", "fleet-audit-probe",
              ":ref_protected:true", "shop/cart", "ref_type:branch:ref:main"]
sub_values = st.builds(lambda head, tail: head + "".join(tail), st.sampled_from(HEADS), st.lists(st.sampled_from(SUB_PIECES), max_size=3))
OPERATORS = ["StringEquals", "StringLike", "StringLike", "StringNotLike", "ForAnyValue:StringLike", "StringLikeIfExists",
             "StringEqualsIgnoreCase", "ForAllValues:StringEquals"]


@settings(max_examples=1500, deadline=None)
@example(url="https://gitlab.example.com", statements=[("Allow", {"StringLike": ["project_path:shop/*:*"]}, None, "10")])
@given(url=st.sampled_from(["https://gitlab.example.com", "https://gitlab.com"]),
       statements=st.lists(st.tuples(
           st.sampled_from(["Allow", "Allow", "Deny"]),
           st.dictionaries(st.sampled_from(OPERATORS), st.lists(sub_values, min_size=1, max_size=3), min_size=1, max_size=2),
           st.sampled_from([None, "project_id", "project_path"]), st.sampled_from(["10", "shop/cart", "12"])),
           min_size=1, max_size=3))
def test_narrowing_the_probes_never_changes_whom_a_role_admits(url, statements):
    listing, plan = pure_setup(url)
    prefix = url.removeprefix("https://")
    provider = f"arn:aws:iam::{plan.account_id}:oidc-provider/{prefix}"
    document = {"Version": "2012-10-17", "Statement": []}
    for effect, operators, extra_key, extra_value in statements:
        condition: dict[str, Any] = {op: {f"{prefix}:sub": values} for op, values in operators.items()}
        if extra_key:
            condition.setdefault("StringEquals", {})[f"{prefix}:{extra_key}"] = extra_value
        document["Statement"].append({"Effect": effect, "Principal": {"Federated": provider},
                                      "Action": "sts:AssumeRoleWithWebIdentity", "Condition": condition})
    role = audit.Role("r", "/", "arn:aws:iam::111111111111:role/r", document)

    def judge():
        return audit.audit_roles([role], plan=plan, projects=listing.projects, principals=[provider],
                                 audiences=[plan.audience], roles_read=1)

    narrowed = judge()
    with patch.object(audit, "candidates", lambda *args: None):
        full = judge()
    assert narrowed == full


# --- review 5: trusts that admit more than they seem to ---------------------------------------------

def judge(document: dict[str, Any], url: str = URL) -> audit.RoleAudit | None:
    """One hand-made role judged against the pure setup's group (shop/cart 10, shop/cart-v2 11, shop/api 12)."""
    listing, plan = pure_setup(url)
    prefix = url.removeprefix("https://")
    role = audit.Role("r", "/", "arn:aws:iam::111111111111:role/r", document)
    report = audit.audit_roles([role], plan=plan, projects=listing.projects,
                               principals=[f"arn:aws:iam::{plan.account_id}:oidc-provider/{prefix}"],
                               audiences=[plan.audience], roles_read=1)
    return report.roles[0] if report.roles else None


def codes(role: audit.RoleAudit | None) -> dict[str, str]:
    assert role is not None, "the role was left out of the report"
    return {f.code: f.severity for f in role.findings}


def trust(*statements: dict[str, Any]) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": list(statements)}


def allow(condition: dict[str, Any], principal: Any = None, action: str = "sts:AssumeRoleWithWebIdentity",
          effect: str = "Allow") -> dict[str, Any]:
    return {"Effect": effect, "Principal": principal or {"Federated": PROVIDER}, "Action": action, "Condition": condition}


@pytest.mark.parametrize("sub", [
    "project_path:*/api:ref_type:branch:ref:main",  # evil/api
    "project_path:sho?/api:ref_type:branch:ref:main",  # shox/api
    "project_id:*2:ref_type:branch:ref:main",  # projects 2, 22, 102, ...
    "project_path:*:ref_type:tag:ref:v*",  # any project's v tags
    "*:ref_type:branch:ref:release",  # any project's release branch
    "project_path:*/nothing-of-the-group:ref_type:branch:ref:main",  # admits no probe of the group at all
])
def test_a_pattern_in_the_project_part_of_sub_is_never_clean(sub):
    role = judge(trust(allow({"StringEquals": {AUD: URL}, "StringLike": {SUB: sub}})))
    found = codes(role)
    assert "PROJECT_PATTERN" in found or "AUD_ONLY" in found, found
    assert found.get("PROJECT_PATTERN", "high") == found.get("AUD_ONLY", "high") == "high"


def test_a_pattern_kept_in_the_group_names_the_projects_created_later():
    # shop/api today, and shop/apx once a Developer of the group creates it
    found = codes(judge(trust(allow({"StringEquals": {AUD: URL}, "StringLike": {SUB: "project_path:shop/ap?:ref_type:branch:ref:main"}}))))
    assert found == {"PROJECT_PATTERN": "medium"}


def test_a_pattern_confined_to_the_group_is_not_a_project_pattern():
    found = codes(judge(trust(allow({"StringEquals": {AUD: URL}, "StringLike": {SUB: "project_path:shop/*:ref_type:branch:ref:main"}}))))
    assert found == {"MULTIPLE_PROJECTS": "high"}
    assert codes(judge(trust(allow({"StringEquals": {AUD: URL, SUB: CART_MAIN}})))) == {}


def test_outsider_probes_carry_the_refs_the_trust_names():
    role = judge(trust(allow({"StringEquals": {AUD: URL}, "StringLike": {SUB: "project_path:*:ref_type:tag:ref:v*"}})))
    assert role is not None and role.admits_outside_group and "AUD_ONLY" in codes(role)


def test_conditions_on_keys_the_probes_do_not_carry_are_taken_to_hold():
    region = codes(judge(trust(allow({"StringEquals": {AUD: URL, "aws:RequestedRegion": "eu-west-1"}}))))
    assert region.get("UNMODELLED_KEY") == "medium" and "AUD_ONLY" in region
    # the caller names the session, and so the project
    chosen = codes(judge(trust(allow({"StringEquals": {AUD: URL},
                                      "StringLike": {SUB: "project_id:${sts:RoleSessionName}:ref_type:branch:ref:main"}}))))
    assert chosen.get("UNMODELLED_KEY") == "high" and "AUD_ONLY" in chosen
    # a Deny on a key the probes lack does not hide an aud-only Allow
    denied = codes(judge(trust(allow({"StringEquals": {AUD: URL}}),
                               allow({"StringNotLike": {"sts:RoleSessionName": "ci-*"}}, effect="Deny"))))
    assert "AUD_ONLY" in denied and denied.get("UNMODELLED_KEY") == "medium"
    # gitlab.com claims the probes do not model
    com = "arn:aws:iam::111111111111:oidc-provider/gitlab.com"
    source = codes(judge(trust(allow({"StringEquals": {"gitlab.com:aud": "https://gitlab.com", "gitlab.com:pipeline_source": "push"}},
                                     {"Federated": com})), url="https://gitlab.com"))
    assert "UNMODELLED_KEY" in source and "AUD_ONLY" in source


def test_keys_the_probes_do_not_carry_in_an_account(tmp_path, iam, capsys):
    with small_group() as double:
        stacks = write_stack(tmp_path, double)
        create_role(iam, "region", web_identity({"StringEquals": {AUD: URL, "aws:RequestedRegion": "eu-west-1"}}))
        create_role(iam, "session", web_identity({"StringEquals": {AUD: URL}, "StringLike": {"sts:RoleSessionName": "*"}}))
        code, report = audit_json(capsys, stacks)
    assert code == 2
    for role in report["roles"]:
        assert {"AUD_ONLY", "UNMODELLED_KEY"} <= {f["code"] for f in role["findings"]}, role


@pytest.mark.parametrize("document", [
    trust({"Effect": "Allow", "Principal": "*", "Action": "sts:AssumeRoleWithWebIdentity",
           "Condition": {"IpAddress": {"aws:SourceIp": "0.0.0.0/0"}}}),
    trust({"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole*",
           "Condition": {"Bool": {"aws:SecureTransport": "true"}}}),
    trust({"Effect": "Allow", "Principal": "*", "Action": "sts:AssumeRoleWithWebIdentity",
           "Condition": {"StringEquals": {"aws:RequestedRegion": "eu-west-1"}}}),
    trust({"Effect": "Allow", "NotPrincipal": {"AWS": "arn:aws:iam::222222222222:root"}, "Action": "sts:AssumeRoleWithWebIdentity"}),
])
def test_a_role_that_may_trust_everyone_is_never_left_out(document):
    found = codes(judge(document))
    assert {"UNEVALUATED", "OTHER_PRINCIPALS", "AUD_ONLY"} & set(found), found


def test_ref_type_wildcard_admits_a_tag_of_the_branchs_name():
    role = judge(trust(allow({"StringEquals": {AUD: URL}, "StringLike": {SUB: "project_path:shop/cart:ref_type:*:ref:main"}})))
    assert role is not None and role.admits is not None
    assert {"branch:main", "tag:main"} <= set(role.admits[0].refs)
    assert "UNPROTECTED_REFS" in codes(role)


def test_gitlab_com_named_globs_are_probed_unprotected():
    com = {"Federated": "arn:aws:iam::111111111111:oidc-provider/gitlab.com"}
    base = {"gitlab.com:aud": "https://gitlab.com"}
    glob = {"gitlab.com:sub": "project_path:shop/cart:ref_type:branch:ref:feature-*"}
    loose = judge(trust(allow({"StringEquals": base, "StringLike": glob}, com)), url="https://gitlab.com")
    assert codes(loose) == {"UNPROTECTED_REFS": "medium"}
    pinned = judge(trust(allow({"StringEquals": {**base, "gitlab.com:ref_protected": "true"}, "StringLike": glob}, com)),
                   url="https://gitlab.com")
    assert codes(pinned) == {}


@pytest.mark.parametrize(("url", "condition", "severity"), [
    (URL, {"StringEquals": {AUD: URL, SUB: "project_path:shpo/cart:ref_type:branch:ref:main"}}, "low"),
    (URL, {"StringEquals": {AUD: URL, SUB: "project_id:4242:ref_type:branch:ref:main"}}, "low"),
    ("https://gitlab.com", {"StringEquals": {"gitlab.com:aud": "https://gitlab.com",
                                             "gitlab.com:sub": "project_path:shpo/cart:ref_type:branch:ref:main"}}, "medium"),
    ("https://gitlab.com", {"StringEquals": {"gitlab.com:aud": "https://gitlab.com", "gitlab.com:namespace_path": "shpo"},
                            "StringLike": {"gitlab.com:sub": "*"}}, "medium"),
])
def test_a_trust_naming_a_project_the_group_does_not_hold(url, condition, severity):
    prefix = url.removeprefix("https://")
    found = codes(judge(trust(allow(condition, {"Federated": f"arn:aws:iam::111111111111:oidc-provider/{prefix}"})), url=url))
    assert found.get("PROJECT_NOT_IN_GROUP") == severity, found


@pytest.mark.parametrize("arn", [f"{PROVIDER}/gitlab", f"{PROVIDER}.evil.org"])
def test_another_issuer_sharing_the_prefix_is_not_this_issuers(arn):
    assert judge(trust(allow({"StringEquals": {AUD: URL}}, {"Federated": arn}))) is None


def test_a_provider_arn_spelled_in_another_case_is_judged_and_said():
    found = codes(judge(trust(allow({"StringEquals": {AUD: URL}}, {"Federated": PROVIDER.replace(PREFIX, PREFIX.upper())}))))
    assert "PROVIDER_SPELLING" in found and "AUD_ONLY" in found and "OTHER_PRINCIPALS" not in found


def test_an_aud_condition_that_does_not_pin_is_no_aud():
    found = codes(judge(trust(allow({"StringLike": {AUD: "*", SUB: CART_MAIN}}))))
    assert found == {"NO_AUD": "medium"}


def test_a_role_deleted_while_the_account_is_read_is_skipped_with_a_note(tmp_path, iam, capsys, monkeypatch):
    from botocore.client import BaseClient
    from botocore.exceptions import ClientError
    real = BaseClient._make_api_call

    def vanish(self, operation, params):
        if operation == "ListRoleTags" and params.get("RoleName") == "gone":
            raise ClientError({"Error": {"Code": "NoSuchEntity", "Message": "The role with name gone cannot be found."}}, operation)
        return real(self, operation, params)

    with small_group() as double:
        stacks = write_stack(tmp_path, double)
        create_role(iam, "gone", web_identity({"StringEquals": {AUD: URL}}))
        create_role(iam, "kept", web_identity({"StringEquals": {AUD: URL}}))
        monkeypatch.setattr(BaseClient, "_make_api_call", vanish)
        code, report = audit_json(capsys, stacks)
    assert code == 2 and [r["name"] for r in report["roles"]] == ["kept"]
    assert any("gone" in note and "deleted" in note for note in report["notes"]), report["notes"]


def test_a_namespace_id_the_listing_does_not_give_is_taken_to_match():
    """A listing saved without namespace ids: a trust pinned to a namespace id may admit every project of the group."""
    com = {"Federated": "arn:aws:iam::111111111111:oidc-provider/gitlab.com"}
    role = judge(trust(allow({"StringEquals": {"gitlab.com:aud": "https://gitlab.com", "gitlab.com:namespace_id": "1"}}, com)),
                 url="https://gitlab.com")
    assert role is not None and role.admits is not None and len(role.admits) == 3 and not role.admits_outside_group
    assert "MULTIPLE_PROJECTS" in codes(role)
    # nor can it place that namespace in the group: every project of it may be another group's
    assert codes(role).get("PROJECT_PATTERN") == "high"


def test_a_self_managed_glob_is_probed_unprotected_where_the_sub_shows_protection():
    listing = parse_inventory({"group": {"id": 1, "full_path": "shop"}, "projects": [
        {"id": 10, "path_with_namespace": "shop/cart", "default_branch": "main",
         "ci_id_token_sub_claim_components": ["project_path", "ref_type", "ref", "ref_protected"]}]})
    plan = build_plan(make_config(gitlab={"url": URL, "group": "shop"}), listing, "prod")

    def found(sub: str) -> dict[str, str]:
        role = audit.Role("r", "/", "arn:aws:iam::111111111111:role/r", trust(allow({"StringEquals": {AUD: URL}, "StringLike": {SUB: sub}})))
        report = audit.audit_roles([role], plan=plan, projects=listing.projects, principals=[PROVIDER],
                                   audiences=[plan.audience], roles_read=1)
        return codes(report.roles[0])

    assert found("project_path:shop/cart:ref_type:tag:ref:v*") == {"UNPROTECTED_REFS": "medium"}
    assert found("project_path:shop/cart:ref_type:tag:ref:v*:ref_protected:true") == {}


# --- review 6: namespaces, ref_type patterns, values IAM reads as text -----------------------------

COM = "arn:aws:iam::111111111111:oidc-provider/gitlab.com"
COM_AUD = {"gitlab.com:aud": "https://gitlab.com"}


def judge_listing(document: dict[str, Any], projects: list[dict[str, Any]], url: str = "https://gitlab.com",
                  tags: dict[str, str] | None = None) -> audit.RoleAudit | None:
    """One role judged against a group `shop` holding `projects` (listing entries)."""
    listing = parse_inventory({"group": {"id": 1, "full_path": "shop"}, "projects": projects})
    plan = build_plan(make_config(gitlab={"url": url, "group": "shop"}), listing, "prod")
    prefix = url.removeprefix("https://")
    role = audit.Role("r", "/", "arn:aws:iam::111111111111:role/r", document, tags or {})
    report = audit.audit_roles([role], plan=plan, projects=listing.projects,
                               principals=[f"arn:aws:iam::{plan.account_id}:oidc-provider/{prefix}"],
                               audiences=[plan.audience], roles_read=1)
    return report.roles[0] if report.roles else None


ONE_PROJECT = [{"id": 10, "path_with_namespace": "shop/cart", "default_branch": "main", "namespace": {"id": 1}}]


@pytest.mark.parametrize(("claim", "value", "severity"), [
    ("namespace_path", "shop", "medium"),  # every project of the group, shop/cart and those created later
    ("namespace_id", "1", "medium"),
    ("namespace_path", "shop/sub", "medium"),  # a subgroup: its projects created later
    ("namespace_path", "other-group", "high"),  # every project of another group
    ("namespace_id", "424242", "high"),
])
def test_a_literal_namespace_names_every_project_of_it_not_one(claim, value, severity):
    condition = {"StringEquals": {**COM_AUD, f"gitlab.com:{claim}": value, "gitlab.com:ref_protected": "true"}}
    role = judge_listing(trust(allow(condition, {"Federated": COM})), ONE_PROJECT)
    found = codes(role)
    assert found.get("PROJECT_PATTERN") == severity, found
    assert role is not None and not role.admits_outside_group
    message = next(f.message for f in role.findings if f.code == "PROJECT_PATTERN")
    assert f"gitlab.com:{claim}" in message and value in message, message
    # with the project pinned as well, the namespace narrows nothing more: clean
    pinned = {"StringEquals": {**condition["StringEquals"], "gitlab.com:project_id": "10"}}
    assert codes(judge_listing(trust(allow(pinned, {"Federated": COM})), ONE_PROJECT)) == ({} if severity == "medium" else
                                                                                          {"PROJECT_NOT_IN_GROUP": found["PROJECT_NOT_IN_GROUP"]})


def test_a_namespace_of_a_project_shared_from_outside_the_group_reaches_outside():
    shared = [*ONE_PROJECT, {"id": 20, "path_with_namespace": "partner/lib", "default_branch": "main", "namespace": {"id": 7}}]
    condition = {"StringEquals": {**COM_AUD, "gitlab.com:namespace_id": "7", "gitlab.com:ref_protected": "true"}}
    assert codes(judge_listing(trust(allow(condition, {"Federated": COM})), shared)).get("PROJECT_PATTERN") == "high"


@pytest.mark.parametrize(("kind", "admitted"), [("b*", ["branch:main"]), ("??????", ["branch:main"]), ("???", ["tag:main"]),
                                                ("[bt]*", [])])
def test_a_ref_type_pattern_matching_one_type_admits_only_that_type(kind, admitted):
    role = judge(trust(allow({"StringEquals": {AUD: URL},
                              "StringLike": {SUB: f"project_path:shop/cart:ref_type:{kind}:ref:main"}})))
    assert codes(role) == {}
    assert role is not None and role.admits is not None
    assert [ref for a in role.admits for ref in a.refs] == admitted


def test_a_fleet_role_with_values_and_names_iam_reads_alike_does_not_differ_from_the_plan():
    listing = parse_inventory({"group": {"id": 1, "full_path": "shop"}, "projects": ONE_PROJECT})
    plan = build_plan(make_config(gitlab={"url": "https://gitlab.com", "group": "shop"}), listing, "prod")
    [planned] = plan.projects
    edited = copy.deepcopy(planned.trust_policy)
    [statement] = edited["Statement"]
    statement["Action"] = "STS:AssumeRoleWithWebIdentity"
    equals = statement["Condition"]["StringEquals"]
    equals["GitLab.com:Project_Id"] = int(equals.pop("gitlab.com:project_id"))
    role = audit.Role(planned.role_name, "/", planned.role_arn, edited, planned.tags)
    report = audit.audit_roles([role], plan=plan, projects=listing.projects, principals=[plan.provider_arn],
                               audiences=[plan.audience], roles_read=1)
    assert report.roles[0].managed and report.roles[0].findings == ()
    equals["GitLab.com:Project_Id"] = 11
    report = audit.audit_roles([audit.Role(planned.role_name, "/", planned.role_arn, edited, planned.tags)], plan=plan,
                               projects=listing.projects, principals=[plan.provider_arn], audiences=[plan.audience],
                               roles_read=1)
    assert "DIFFERS_FROM_PLAN" in codes(report.roles[0])
