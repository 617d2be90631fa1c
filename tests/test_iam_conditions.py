"""fleet.iam_conditions: IAM's evaluation of trust policies, rule by rule, and against the tests' own evaluator."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fleet.iam_conditions import ALLOW, DENY, NO_MATCH, Unsupported, allows, parse_policy
from tests import iam_eval

PROVIDER = "arn:aws:iam::111111111111:oidc-provider/gitlab.example.com"
OTHER = "arn:aws:iam::111111111111:oidc-provider/gitlab.other.test"
SUB, AUD = "gitlab.example.com:sub", "gitlab.example.com:aud"
CART_MAIN = "project_path:shop/cart:ref_type:branch:ref:main"
TOKEN = {SUB: CART_MAIN, AUD: "https://gitlab.example.com"}


def policy(condition=None, *, effect="Allow", principal=None, action="sts:AssumeRoleWithWebIdentity", version="2012-10-17",
           more=()):
    statement = {"Effect": effect, "Principal": principal or {"Federated": PROVIDER}, "Action": action}
    if condition is not None:
        statement["Condition"] = condition
    document = {"Statement": [statement, *more]}
    if version:
        document["Version"] = version
    return document


def admits(condition, context=TOKEN, **kw):
    return allows(policy(condition, **kw), PROVIDER, context)


@pytest.mark.parametrize(("condition", "expected"), [
    ({"StringEquals": {SUB: CART_MAIN}}, True),
    ({"StringEquals": {SUB: "project_path:shop/cart:ref_type:branch:ref:*"}}, False),  # * is literal in StringEquals
    ({"StringLike": {SUB: "project_path:shop/*:ref_type:branch:ref:*"}}, True),
    ({"StringLike": {SUB: "project_path:shop/car?:ref_type:branch:ref:main"}}, True),
    ({"StringLike": {SUB: "project_path:shop/ca?:ref_type:branch:ref:main"}}, False),
    ({"StringEquals": {SUB: CART_MAIN.upper()}}, False),  # values are case-sensitive
    ({"StringEqualsIgnoreCase": {SUB: CART_MAIN.upper()}}, True),
    ({"StringEquals": {"GitLab.Example.COM:SUB": CART_MAIN}}, True),  # key names are not
    ({"StringEquals": {SUB: ["nope", CART_MAIN]}}, True),  # values of one key are ORed
    ({"StringEquals": {SUB: CART_MAIN, AUD: "sts.amazonaws.com"}}, False),  # keys are ANDed
    ({"StringEquals": {AUD: "https://gitlab.example.com"}, "StringLike": {SUB: "nope*"}}, False),  # operators too
    ({"StringNotEquals": {SUB: ["a", "b"]}}, True),
    ({"StringNotEquals": {SUB: ["a", CART_MAIN]}}, False),
    ({"StringNotLike": {SUB: "project_path:shop/*"}}, False),
    ({"StringEquals": {}}, True),
])
def test_string_operators(condition, expected):
    assert admits(condition) is expected


@pytest.mark.parametrize(("condition", "expected"), [
    ({"StringEquals": {"gitlab.example.com:project_id": "1"}}, False),  # a missing key fails a positive operator
    ({"StringNotEquals": {"gitlab.example.com:project_id": "1"}}, True),  # and passes a negated one
    ({"StringEqualsIfExists": {"gitlab.example.com:project_id": "1"}}, True),
    ({"StringEqualsIfExists": {SUB: "other"}}, False),  # IfExists still compares a present key
    ({"ForAnyValue:StringEquals": {"gitlab.example.com:project_id": "1"}}, False),
    ({"ForAllValues:StringEquals": {"gitlab.example.com:project_id": "1"}}, True),  # passes a token without the key
    ({"ForAnyValue:StringLike": {SUB: "project_path:shop/*"}}, True),  # a single value: a set of one
    ({"ForAllValues:StringLike": {SUB: "project_path:shop/x*"}}, False),
    ({"ForAnyValue:StringLikeIfExists": {"gitlab.example.com:ref": "x"}}, True),
    ({"Null": {"gitlab.example.com:project_id": "true"}}, True),
    ({"Null": {"gitlab.example.com:project_id": "false"}}, False),
    ({"Null": {SUB: "false"}}, True),
    ({"Null": {SUB: True}}, False),
])
def test_missing_keys_ifexists_set_operators_and_null(condition, expected):
    assert admits(condition) is expected


@pytest.mark.parametrize(("value", "context_sub", "expected"), [
    ("project_path:shop/cart:ref_type:branch:ref:${*}", "project_path:shop/cart:ref_type:branch:ref:*", True),
    ("project_path:shop/cart:ref_type:branch:ref:${*}", CART_MAIN, False),  # an escaped * is no wildcard
    ("project_path:shop/cart:ref_type:branch:ref:a${$}{b}", "project_path:shop/cart:ref_type:branch:ref:a${b}", True),
    ("project_path:shop/cart:ref_type:branch:ref:${gitlab.example.com:aud}", "project_path:shop/cart:ref_type:branch:ref:A*", True),
    ("project_path:shop/cart:ref_type:branch:ref:${gitlab.example.com:aud}", "project_path:shop/cart:ref_type:branch:ref:Ab", False),
    ("project_path:shop/cart:ref_type:branch:ref:${missing:key}", "project_path:shop/cart:ref_type:branch:ref:", False),
    ("project_path:shop/cart:ref_type:branch:ref:${ missing:key , 'it''s' }", "project_path:shop/cart:ref_type:branch:ref:it's", True),
    ("project_path:shop/cart:ref_type:branch:ref:$x${", "project_path:shop/cart:ref_type:branch:ref:$x${", True),
])
def test_policy_variables_in_stringlike(value, context_sub, expected):
    context = {SUB: context_sub, AUD: "A*"}  # a substituted * is literal
    assert admits({"StringLike": {SUB: value}}, context) is expected


def test_variables_only_under_version_2012():
    escaped = "project_path:shop/cart:ref_type:branch:ref:${*}"
    assert admits({"StringLike": {SUB: escaped}}, {SUB: "project_path:shop/cart:ref_type:branch:ref:*"})
    assert admits({"StringLike": {SUB: escaped}}, {SUB: escaped}, version="2008-10-17")
    assert not admits({"StringLike": {SUB: escaped}}, {SUB: escaped})


@pytest.mark.parametrize(("kw", "expected"), [
    ({}, True),
    ({"principal": {"Federated": OTHER}}, False),
    ({"principal": {"Federated": [OTHER, PROVIDER]}}, True),
    ({"principal": "*"}, True),
    ({"principal": {"AWS": "*"}}, True),
    ({"principal": {"AWS": "arn:aws:iam::111111111111:root"}}, False),
    ({"action": "sts:AssumeRole"}, False),
    ({"action": ["sts:AssumeRole", "sts:*"]}, True),
    ({"action": "*"}, True),
    ({"action": "STS:assumerolewithwebidentity"}, True),
    ({"action": "sts:AssumeRoleWith?ebIdentity"}, True),
    ({"effect": "Deny"}, False),
])
def test_principal_action_effect(kw, expected):
    assert admits({"StringEquals": {SUB: CART_MAIN}}, **kw) is expected


def test_not_action_and_explicit_deny_wins():
    not_action = policy({"StringEquals": {SUB: CART_MAIN}})
    not_action["Statement"][0]["NotAction"] = not_action["Statement"][0].pop("Action")
    assert not allows(not_action, PROVIDER, TOKEN)
    not_action["Statement"][0]["NotAction"] = "sts:AssumeRole"
    assert allows(not_action, PROVIDER, TOKEN)
    deny = {"Effect": "Deny", "Principal": {"Federated": PROVIDER}, "Action": "sts:*",
            "Condition": {"StringLike": {SUB: "*:ref:main"}}}
    document = policy(None, more=[deny])
    assert parse_policy(document).decide(PROVIDER, TOKEN) == DENY
    assert parse_policy(document).decide(PROVIDER, {**TOKEN, SUB: "project_path:shop/cart:ref_type:branch:ref:dev"}) == ALLOW
    assert parse_policy(document).decide(OTHER, TOKEN) == NO_MATCH


@pytest.mark.parametrize("document", [
    policy({"NumericEquals": {SUB: "1"}}),
    policy({"ForSomeValues:StringEquals": {SUB: "1"}}),
    policy({"Null": {SUB: "maybe"}}),
    policy({"StringEquals": {SUB: {"a": 1}}}),
    {"Statement": [{"Effect": "Allow", "NotPrincipal": {"AWS": "x"}, "Action": "*"}]},
    {"Statement": [{"Effect": "Permit", "Principal": "*", "Action": "*"}]},
    {"Statement": [{"Effect": "Allow", "Principal": "*"}]},
    {"Version": "2012-10-17"},
])
def test_what_is_not_modelled_is_refused_not_guessed(document):
    with pytest.raises(Unsupported):
        parse_policy(document)


# --- agreement with tests/iam_eval.py, which shares no code with fleet ----------------------------

KEYS = [SUB, SUB, AUD, "GitLab.Example.com:Sub", "gitlab.example.com:project_id"]
PIECES = ["a", "B", "*", "?", "$", "{", "}", "${*}", "${?}", "${$}", "${", f"${{{AUD}}}", "${missing}",
          "${missing, 'a*'}", "${ gitlab.example.com:aud , 'x' }", ":"]
values = st.lists(st.sampled_from(PIECES), max_size=2).map("".join)
conditions = st.dictionaries(st.sampled_from(["StringEquals", "StringLike", "StringLike"]),
                             st.dictionaries(st.sampled_from(KEYS), st.one_of(values, st.lists(values, min_size=1, max_size=3)),
                                             max_size=2), max_size=2)
statements = st.fixed_dictionaries({
    "Effect": st.sampled_from(["Allow", "Allow", "Allow", "Deny"]),
    "Principal": st.fixed_dictionaries({"Federated": st.sampled_from([PROVIDER, PROVIDER, OTHER, [OTHER, PROVIDER]])}),
    "Action": st.sampled_from(["sts:AssumeRoleWithWebIdentity", "sts:*", "*", "sts:AssumeRole", ["sts:Tag*", "STS:Assume*"]]),
    "Condition": conditions,
})
documents = st.builds(lambda version, stmts: {**({"Version": version} if version else {}), "Statement": stmts},
                      st.sampled_from(["2012-10-17", "2012-10-17", "2008-10-17", None]),
                      st.lists(statements, min_size=1, max_size=3))
context_values = st.lists(st.sampled_from(["a", "b", "A", "B", "*", "?", "$", "{", "}", ":"]), max_size=2).map("".join)
contexts = st.builds(lambda sub_key, sub, aud, extra: {sub_key: sub, AUD: aud, **extra},
                     st.sampled_from([SUB, "GITLAB.example.com:Sub"]), context_values, context_values,
                     st.dictionaries(st.just("gitlab.example.com:project_id"), context_values, max_size=1))


@settings(max_examples=4000, deadline=None)
@given(document=documents, context=contexts, federated=st.sampled_from([PROVIDER, OTHER]))
def test_agrees_with_the_tests_independent_evaluator(document, context, federated):
    expected = iam_eval.allows(document, federated=federated, action="sts:AssumeRoleWithWebIdentity", context=context)
    assert allows(document, federated, context) is expected


@settings(max_examples=3000, deadline=None)
@given(operator=st.sampled_from(["StringEquals", "StringLike"]), value=st.lists(st.sampled_from(PIECES), max_size=3).map("".join),
       actual=st.lists(st.sampled_from(["a", "A", "B", "b", "*", "?", "$", "{", "}", "x"]), max_size=3).map("".join),
       version=st.sampled_from(["2012-10-17", None]))
def test_one_condition_agrees_with_the_tests_independent_evaluator(operator, value, actual, version):
    """One condition at a time: the comparisons themselves, where the whole-policy property above rarely reaches."""
    document = policy({operator: {SUB: value}}, version=version)
    context = {SUB: actual, AUD: "A*"}
    expected = iam_eval.allows(document, federated=PROVIDER, action="sts:AssumeRoleWithWebIdentity", context=context)
    assert allows(document, PROVIDER, context) is expected


def test_conditions_on_unknown_keys_hold_in_allow_and_fail_in_deny():
    region = {"StringEquals": {AUD: "https://gitlab.example.com", "aws:RequestedRegion": "eu-west-1"}}
    unknown = frozenset({"aws:requestedregion", "sts:rolesessionname"})
    assert parse_policy(policy(region)).decide(PROVIDER, TOKEN) == NO_MATCH
    assert parse_policy(policy(region)).decide(PROVIDER, TOKEN, unknown=unknown) == ALLOW
    # a known key is still evaluated next to it
    wrong_aud = {"StringEquals": {AUD: "sts.amazonaws.com", "aws:RequestedRegion": "eu-west-1"}}
    assert parse_policy(policy(wrong_aud)).decide(PROVIDER, TOKEN, unknown=unknown) == NO_MATCH
    # a variable naming an unknown key makes its condition unknown too
    chosen = {"StringLike": {SUB: "project_id:${sts:RoleSessionName}:*"}}
    assert parse_policy(policy(chosen)).decide(PROVIDER, TOKEN, unknown=unknown) == ALLOW
    deny = {"Effect": "Deny", "Principal": {"Federated": PROVIDER}, "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": {"StringNotLike": {"sts:RoleSessionName": "ci-*"}}}
    assert parse_policy(policy({"StringEquals": {SUB: CART_MAIN}}, more=(deny,))).decide(PROVIDER, TOKEN) == DENY
    assert parse_policy(policy({"StringEquals": {SUB: CART_MAIN}}, more=(deny,))).decide(PROVIDER, TOKEN, unknown=unknown) == ALLOW
