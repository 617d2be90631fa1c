"""The independent IAM evaluator itself: policy variables, StringLike wildcards, statement logic."""

from __future__ import annotations

import pytest

from tests import iam_eval
from tests.iam_eval import allows, token_allowed

FED = "arn:aws:iam::111111111111:oidc-provider/gitlab.example.com"
ACTION = "sts:AssumeRoleWithWebIdentity"
KEY = "gitlab.example.com:sub"


def stmt(condition, effect="Allow"):
    return {"Effect": effect, "Principal": {"Federated": FED}, "Action": ACTION, "Condition": condition}


def policy(*statements, version="2012-10-17"):
    doc = {"Statement": list(statements)}
    if version is not None:
        doc["Version"] = version
    return doc


def ok(doc, context, **kw):
    return allows(doc, federated=FED, action=ACTION, context=context, **kw)


def check(operator, value, actual, extra=None, **kw):
    """Whether `operator: {KEY: value}` holds for KEY=actual (plus `extra` context keys)."""
    return ok(policy(stmt({operator: {KEY: value}})), {KEY: actual, **(extra or {})}, **kw)


BOTH = pytest.mark.parametrize("op", ["StringEquals", "StringLike"])


# --- substitution from the request context ---------------------------------------------------

@BOTH
def test_variable_is_replaced_by_context_value_with_case_insensitive_key(op):
    ctx = {"aws:username": "alice"}
    assert check(op, "user:${aws:username}", "user:alice", ctx)
    assert check(op, "user:${AWS:UserName}", "user:alice", ctx)
    assert not check(op, "user:${aws:username}", "user:Alice", ctx)  # values stay case-sensitive
    assert not check(op, "user:${aws:username}", "user:${aws:username}", ctx)


@BOTH
def test_variable_can_name_the_compared_key_itself(op):
    assert check(op, "${" + KEY + "}", "anything at all")
    assert check(op, "${" + KEY.upper() + "}", "x*y")


@BOTH
def test_missing_key_without_default_matches_nothing(op):
    assert not check(op, "user:${aws:username}", "user:")
    assert not check(op, "user:${aws:username}", "user:${aws:username}")
    assert not check(op, "${aws:username}*", "")
    # only that listed value fails; the others are still tried
    assert check(op, ["${aws:username}", "plain"], "plain")


@BOTH
def test_defaults_with_quotes_and_spaces(op):
    assert check(op, "u:${aws:username, 'nobody'}", "u:nobody")
    assert check(op, "u:${ aws:username ,  'nobody'  }", "u:nobody")
    assert check(op, "u:${aws:username,'it''s'}", "u:it's")
    assert check(op, "u:${aws:username, ''}", "u:")
    assert check(op, "u:${aws:username, 'a}b'}", "u:a}b")
    assert not check(op, "u:${aws:username, 'nobody'}", "u: nobody ")
    # the default is used only when the key is absent
    assert check(op, "u:${aws:username, 'nobody'}", "u:alice", {"aws:username": "alice"})
    assert not check(op, "u:${aws:username, 'nobody'}", "u:nobody", {"aws:username": "alice"})


# --- escapes and single pass -----------------------------------------------------------------

@BOTH
def test_escaped_dollar_gives_literal_variable_text(op):
    ctx = {"aws:username": "alice"}
    assert check(op, "${$}{aws:username}", "${aws:username}", ctx)
    assert not check(op, "${$}{aws:username}", "alice", ctx)
    assert check(op, "${$}{aws:username}", "${aws:username}")  # no context key needed


@BOTH
def test_literal_dollar_and_unterminated_variable(op):
    assert check(op, "cost$5", "cost$5")
    assert check(op, "a$", "a$")
    assert check(op, "${aws:username", "${aws:username")
    assert check(op, "x${", "x${")
    assert check(op, "${${aws:username}", "${alice", {"aws:username": "alice"})


def test_escaped_wildcards_are_literal_under_string_like():
    assert check("StringLike", "a${*}b", "a*b")
    assert not check("StringLike", "a${*}b", "axxb")
    assert not check("StringLike", "a${*}b", "ab")
    assert check("StringLike", "a${?}b", "a?b")
    assert not check("StringLike", "a${?}b", "axb")
    assert check("StringEquals", "a${*}${?}b", "a*?b")


def test_substituted_wildcards_are_literal_under_string_like():
    ctx = {"aws:username": "a*"}
    assert check("StringLike", "u:${aws:username}", "u:a*", ctx)
    assert not check("StringLike", "u:${aws:username}", "u:abc", ctx)
    assert not check("StringLike", "u:${aws:username, '?'}", "u:x")
    assert check("StringLike", "u:${aws:username, '?'}", "u:?")
    # while the policy's own wildcards around the variable stay wildcards
    assert check("StringLike", "*:${aws:username}?", "u:a*!", ctx)
    assert not check("StringLike", "*:${aws:username}?", "u:ab!", ctx)


@BOTH
def test_substitution_is_a_single_pass(op):
    ctx = {"aws:username": "${aws:userid}", "aws:userid": "AID1", "tag": "${$}"}
    assert check(op, "${aws:username}", "${aws:userid}", ctx)
    assert not check(op, "${aws:username}", "AID1", ctx)
    assert check(op, "${tag}", "${$}", ctx)
    assert check(op, "${aws:username, '${aws:userid}'}", "${aws:userid}")
    assert not check(op, "${aws:username, '${aws:userid}'}", "AID1", {"aws:userid": "AID1"})


# --- strict reading of StringEquals ----------------------------------------------------------

def test_strict_mode_reads_string_equals_literally():
    ctx = {"aws:username": "alice"}
    assert check("StringEquals", "${aws:username}", "${aws:username}", ctx, equals_reads_variables=False)
    assert not check("StringEquals", "${aws:username}", "alice", ctx, equals_reads_variables=False)
    assert check("StringEquals", "${$}{aws:username}", "${$}{aws:username}", equals_reads_variables=False)
    assert not check("StringEquals", "${$}{aws:username}", "${aws:username}", equals_reads_variables=False)
    assert check("StringEquals", "a${*}", "a${*}", equals_reads_variables=False)
    # StringLike is untouched by the switch
    assert check("StringLike", "${$}{aws:username}", "${aws:username}", equals_reads_variables=False)
    assert check("StringLike", "${aws:username}", "alice", ctx, equals_reads_variables=False)


def test_strict_mode_module_default_and_token_allowed_pass_through(monkeypatch):
    doc = policy(stmt({"StringEquals": {"gitlab.example.com:sub": "project_path:g/p:ref_type:branch:ref:${$}x"}}))
    claims = dict(account="111111111111", issuer_host="gitlab.example.com", path="g/p", project_id=1,
                  ref_type="branch", aud="a")
    assert token_allowed(doc, ref="$x", **claims)
    assert not token_allowed(doc, ref="${$}x", **claims)
    assert token_allowed(doc, ref="${$}x", equals_reads_variables=False, **claims)
    assert not token_allowed(doc, ref="$x", equals_reads_variables=False, **claims)
    monkeypatch.setattr(iam_eval, "EQUALS_READS_VARIABLES", False)
    assert token_allowed(doc, ref="${$}x", **claims)
    assert token_allowed(doc, ref="$x", equals_reads_variables=True, **claims)


def test_variables_need_policy_version_2012_10_17():
    ctx = {KEY: "${aws:username}", "aws:username": "alice"}
    for version in (None, "2008-10-17"):
        assert ok(policy(stmt({"StringEquals": {KEY: "${aws:username}"}}), version=version), ctx)
    assert not ok(policy(stmt({"StringEquals": {KEY: "${aws:username}"}})), ctx)
    # without variables, StringLike's wildcards still work everywhere in the text
    assert ok(policy(stmt({"StringLike": {KEY: "${*}"}}), version=None), {KEY: "${anything}"})


# --- statement and condition logic -----------------------------------------------------------

def test_statements_ored_operators_anded_values_ored_deny_wins():
    aud = "gitlab.example.com:aud"
    a = stmt({"StringEquals": {aud: "A"}, "StringLike": {KEY: ["p:1:*", "p:2:*"]}})
    b = stmt({"StringEquals": {aud: "B"}})
    doc = policy(a, b)
    assert ok(doc, {aud: "A", KEY: "p:1:main"})     # first statement, first listed value
    assert ok(doc, {aud: "A", KEY: "p:2:main"})     # values of one key ORed
    assert not ok(doc, {aud: "A", KEY: "p:3:main"})  # operators in one block ANDed
    assert ok(doc, {aud: "B", KEY: "p:3:main"})     # statements ORed
    assert not ok(doc, {KEY: "p:1:main"})           # missing key fails the operator
    # keys within one operator ANDed
    both = policy(stmt({"StringEquals": {aud: "A", KEY: "s"}}))
    assert ok(both, {aud: "A", KEY: "s"}) and not ok(both, {aud: "A", KEY: "t"})
    # an explicit Deny wins over any Allow, whatever the order
    deny = stmt({"StringLike": {KEY: "p:2:*"}}, effect="Deny")
    assert not ok(policy(a, deny), {aud: "A", KEY: "p:2:main"})
    assert not ok(policy(deny, a), {aud: "A", KEY: "p:2:main"})
    assert ok(policy(a, deny), {aud: "A", KEY: "p:1:main"})
    # wrong principal or action: no match
    assert not allows(doc, federated=FED + "x", action=ACTION, context={aud: "B"})
    assert not allows(doc, federated=FED, action="sts:AssumeRole", context={aud: "B"})
    assert allows(doc, federated=FED, action=ACTION.upper(), context={aud: "B"})


def test_unknown_operator_is_refused():
    with pytest.raises(ValueError):
        check("StringEqualsIgnoreCase", "x", "x")
