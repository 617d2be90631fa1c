"""Trust policies, checked with an independent evaluator: a project's own tokens pass, nothing else does."""

from __future__ import annotations

import json

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from fleet.config import RefRule
from fleet.trust import canonical_policy, condition_prefix, provider_arn, resolve_refs, trust_policy
from tests.iam_eval import token_allowed

ACCOUNT = "111111111111"

segment = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,15}", fullmatch=True)
paths = st.lists(segment, min_size=2, max_size=4).map("/".join)
branch_names = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_\-/]{0,20}[A-Za-z0-9_]", fullmatch=True).filter(lambda b: "//" not in b)
issuers = st.sampled_from(["https://gitlab.example.com", "https://gitlab.com", "https://host.example/gitlab"])


def policy_for(path, project_id=1, refs=("branch:main",), issuer="https://gitlab.example.com",
               audience="https://gitlab.example.com", default_branch="main"):
    rules = tuple(RefRule(*r.split(":", 1)) for r in refs)
    return trust_policy(issuer=issuer, provider=provider_arn(ACCOUNT, issuer), audience=audience,
                        project_id=project_id, project_path=path,
                        refs=resolve_refs(rules, default_branch))


def allowed(policy, *, path, ref="main", ref_type="branch", project_id=1, issuer="https://gitlab.example.com",
            aud="https://gitlab.example.com", account=ACCOUNT, equals_reads_variables=True):
    return token_allowed(policy, account=account, issuer_host=condition_prefix(issuer), path=path,
                         project_id=project_id, ref_type=ref_type, ref=ref, aud=aud,
                         equals_reads_variables=equals_reads_variables)


def look_alikes(path: str) -> list[str]:
    group, _, rest = path.partition("/")
    swapped = path.swapcase()
    return [path + "-v2", path + "/sub", path + "2", path[:-1] if len(path.rsplit("/", 1)[1]) > 1 else path + "x",
            f"{group}-legacy/{rest}", f"{group}x/{rest}", "other/" + path, swapped]


def test_shape_exact_refs_use_string_equals_and_pin_audience():
    policy = policy_for("shop/cart", refs=("branch:main", "tag:v1.0"))
    assert policy["Version"] == "2012-10-17"
    [statement] = policy["Statement"]
    assert statement["Principal"] == {"Federated": f"arn:aws:iam::{ACCOUNT}:oidc-provider/gitlab.example.com"}
    assert statement["Action"] == "sts:AssumeRoleWithWebIdentity"
    assert statement["Condition"] == {"StringEquals": {
        "gitlab.example.com:aud": "https://gitlab.example.com",
        "gitlab.example.com:sub": ["project_path:shop/cart:ref_type:branch:ref:main",
                                   "project_path:shop/cart:ref_type:tag:ref:v1.0"]}}


def test_globs_get_their_own_string_like_statement():
    policy = policy_for("shop/cart", refs=("branch:main", "tag:v*"))
    exact, globbed = policy["Statement"]
    assert "StringLike" not in exact["Condition"]
    assert globbed["Condition"]["StringLike"] == {"gitlab.example.com:sub": ["project_path:shop/cart:ref_type:tag:ref:v*"]}
    assert globbed["Condition"]["StringEquals"] == {"gitlab.example.com:aud": "https://gitlab.example.com"}
    assert allowed(policy, path="shop/cart", ref_type="tag", ref="v2.1")
    assert allowed(policy, path="shop/cart", ref_type="branch", ref="main")
    assert not allowed(policy, path="shop/cart", ref_type="branch", ref="v2.1")


def test_issuer_path_is_kept_in_condition_keys_and_provider():
    policy = policy_for("shop/cart", issuer="https://host.example/gitlab", audience="sts.amazonaws.com")
    statement = policy["Statement"][0]
    assert statement["Principal"]["Federated"] == f"arn:aws:iam::{ACCOUNT}:oidc-provider/host.example/gitlab"
    assert set(statement["Condition"]["StringEquals"]) == {"host.example/gitlab:aud", "host.example/gitlab:sub"}
    assert allowed(policy, path="shop/cart", issuer="https://host.example/gitlab", aud="sts.amazonaws.com")
    assert not allowed(policy, path="shop/cart", issuer="https://host.example", aud="sts.amazonaws.com")


def test_gitlab_com_pins_project_id_against_reclaimed_paths():
    policy = policy_for("shop/cart", project_id=42, issuer="https://gitlab.com", audience="https://gitlab.com")
    assert policy["Statement"][0]["Condition"]["StringEquals"]["gitlab.com:project_id"] == "42"
    assert allowed(policy, path="shop/cart", project_id=42, issuer="https://gitlab.com", aud="https://gitlab.com")
    assert not allowed(policy, path="shop/cart", project_id=43, issuer="https://gitlab.com", aud="https://gitlab.com")


def test_default_branch_placeholder():
    rules = (RefRule("branch", "{default_branch}"),)
    assert resolve_refs(rules, None) == []


@pytest.mark.parametrize("equals_reads_variables", [True, False], ids=["iam-docs", "stringequals-literal"])
@pytest.mark.parametrize("branch", ["${aws:username}", "rel-${x}-$y", "a$b${", "${$}"])
def test_a_default_branch_holding_a_policy_variable_admits_exactly_its_own_tokens(branch, equals_reads_variables):
    """IAM reads `${...}` in a condition value as a policy variable; the program escapes it as `${$}{` and puts the
    value under StringLike, where IAM documents the escape, so it matches however StringEquals treats `${$}`."""
    policy = policy_for("shop/cart", refs=("branch:{default_branch}", "branch:main"), default_branch=branch)
    exact, like = policy["Statement"]
    assert exact["Condition"]["StringEquals"]["gitlab.example.com:sub"] == ["project_path:shop/cart:ref_type:branch:ref:main"]
    [value] = like["Condition"]["StringLike"]["gitlab.example.com:sub"]
    assert value == "project_path:shop/cart:ref_type:branch:ref:" + branch.replace("$", "${$}")
    mode = dict(equals_reads_variables=equals_reads_variables)
    assert allowed(policy, path="shop/cart", ref=branch, **mode)
    assert allowed(policy, path="shop/cart", ref="main", **mode)
    for other in ("", "x", "ci", branch.replace("$", ""), branch + "x"):
        assert not allowed(policy, path="shop/cart", ref=other, **mode), other
    assert not allowed(policy, path="shop/cart", ref_type="tag", ref=branch, **mode)
    assert not allowed(policy, path="shop/cart-v2", ref=branch, **mode)


dollar_branches = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_${}/\-]{0,20}[A-Za-z0-9_}]", fullmatch=True).filter(
    lambda b: "//" not in b)


@settings(max_examples=200, deadline=None)
@given(paths, dollar_branches, st.booleans())
def test_own_default_branch_always_passes_whatever_dollars_and_braces_it_holds(path, branch, equals_reads_variables):
    policy = policy_for(path, refs=("branch:{default_branch}",), default_branch=branch)
    assert allowed(policy, path=path, ref=branch, equals_reads_variables=equals_reads_variables)
    assert not allowed(policy, path=path, ref=branch + "x", equals_reads_variables=equals_reads_variables)


@settings(max_examples=300, deadline=None)
@given(paths, st.integers(1, 10**8), branch_names, issuers)
def test_own_tokens_pass_and_look_alike_projects_never_do(path, project_id, branch, issuer):
    refs = ("branch:{default_branch}", "branch:release/*", "tag:v*")
    policy = policy_for(path, project_id, refs, issuer=issuer, audience="aud-x", default_branch=branch)
    own = dict(issuer=issuer, aud="aud-x", project_id=project_id)
    assert allowed(policy, path=path, ref=branch, **own)
    assert allowed(policy, path=path, ref="release/2024.1", **own)
    assert allowed(policy, path=path, ref_type="tag", ref="v1.2.3", **own)
    for other in look_alikes(path):
        assume(other != path)
        for ref_type, ref in (("branch", branch), ("branch", "release/x"), ("tag", "v1")):
            assert not allowed(policy, path=other, ref_type=ref_type, ref=ref, **{**own, "project_id": project_id + 1}), other


@settings(max_examples=300, deadline=None)
@given(paths, paths, branch_names, issuers)
def test_a_token_of_project_a_never_satisfies_project_b(path_a, path_b, branch, issuer):
    assume(path_a != path_b)
    policy_b = policy_for(path_b, 2, ("branch:{default_branch}", "branch:*", "tag:*"), issuer=issuer, default_branch=branch)
    for ref_type in ("branch", "tag"):
        assert not allowed(policy_b, path=path_a, project_id=1, ref_type=ref_type, ref=branch, issuer=issuer)


@settings(max_examples=200, deadline=None)
@given(paths, branch_names)
def test_tag_named_like_an_allowed_branch_is_refused(path, branch):
    policy = policy_for(path, refs=("branch:main", "branch:{default_branch}", "branch:release/*"), default_branch=branch)
    assert allowed(policy, path=path, ref=branch)
    for ref in (branch, "main", "release/1"):
        assert not allowed(policy, path=path, ref_type="tag", ref=ref)


@settings(max_examples=200, deadline=None)
@given(paths, st.text(min_size=1, max_size=30), issuers)
def test_wrong_audience_or_another_provider_never_passes(path, audience, issuer):
    policy = policy_for(path, issuer=issuer, audience="https://gitlab.example.com")
    assume(audience != "https://gitlab.example.com")
    assert allowed(policy, path=path, issuer=issuer)
    assert not allowed(policy, path=path, issuer=issuer, aud=audience)
    assert not allowed(policy, path=path, issuer=issuer, account="999999999999")
    assert not allowed(policy, path=path, issuer=issuer + "-evil")


def test_listed_look_alikes_explicitly():
    policy = policy_for("shop/cart", refs=("branch:main", "branch:feature/*"))
    assert allowed(policy, path="shop/cart")
    for other in ("shop/cart-v2", "shop/cart/sub", "Shop/Cart", "shop/CART", "shop-legacy/cart", "shopping/cart"):
        assert not allowed(policy, path=other)
        assert not allowed(policy, path=other, ref="feature/x")


# --- rename-proof subjects and protected refs (fleet:trust.subject, fleet:trust.protectedRefsOnly) ---------------

from fleet.trust import (  # noqa: E402
    APPLIED,
    CUSTOM,
    DEFAULT_COMPONENTS,
    SWITCHING,
    HeldSubClaims,
    components_problem,
    plan_subject,
    wanted_components,
)
from tests.iam_eval import allows  # noqa: E402

BY_ID = ("project_id", "ref_type", "ref")
BY_PATH_PROTECTED = ("project_path", "ref_type", "ref", "ref_protected")
BY_ID_PROTECTED = ("project_id", "ref_type", "ref", "ref_protected")


def token(*, issuer="https://gitlab.example.com", sub, aud="https://gitlab.example.com", project_id=1,
          ref_protected="true"):
    """The request context AWS builds from a GitLab token whose `sub` is written out (any components)."""
    host = condition_prefix(issuer)
    context = {f"{host}:sub": sub, f"{host}:aud": aud}
    if host == "gitlab.com":
        context.update({"gitlab.com:project_id": str(project_id), "gitlab.com:ref_protected": ref_protected})
    return context


def admits(policy, context, issuer="https://gitlab.example.com", equals_reads_variables=True):
    return allows(policy, federated=f"arn:aws:iam::{ACCOUNT}:oidc-provider/{condition_prefix(issuer)}",
                  action="sts:AssumeRoleWithWebIdentity", context=context, equals_reads_variables=equals_reads_variables)


def sub(components, *, path, project_id, ref_type="branch", ref="main", protected="true"):
    values = {"project_path": path, "project_id": str(project_id), "ref_type": ref_type, "ref": ref,
              "ref_protected": protected}
    return ":".join(f"{c}:{values[c]}" for c in components)


def id_policy(path, project_id, forms=(BY_ID,), issuer="https://gitlab.example.com", refs=("branch:main", "tag:v*"),
              protected_only=False):
    rules = tuple(RefRule(*r.split(":", 1)) for r in refs)
    return trust_policy(issuer=issuer, provider=provider_arn(ACCOUNT, issuer), audience="https://gitlab.example.com",
                        project_id=project_id, project_path=path, refs=resolve_refs(rules, "main"), forms=forms,
                        protected_only=protected_only)


def test_subject_id_trusts_only_project_id_and_survives_a_rename_and_a_reclaimed_path():
    policy = id_policy("shop/cart", 42)
    [statement] = [s for s in policy["Statement"] if "StringLike" not in s["Condition"]]
    assert statement["Condition"]["StringEquals"]["gitlab.example.com:sub"] == ["project_id:42:ref_type:branch:ref:main"]
    assert admits(policy, token(sub="project_id:42:ref_type:branch:ref:main"))
    assert admits(policy, token(sub="project_id:42:ref_type:tag:ref:v1.2"))
    # renamed or transferred: the sub does not change
    assert admits(policy, token(sub=sub(BY_ID, path="elsewhere/cart", project_id=42)))
    # a new project 43 took the old path shop/cart: neither its path-form nor its id-form tokens pass
    for form in (DEFAULT_COMPONENTS, BY_ID, BY_ID_PROTECTED):
        assert not admits(policy, token(sub=sub(form, path="shop/cart", project_id=43)))
    assert not admits(policy, token(sub=sub(DEFAULT_COMPONENTS, path="shop/cart", project_id=42)))  # the old form: gone
    assert not admits(policy, token(sub="project_id:42:ref_type:tag:ref:main"))
    for other in (4, 420, 142, 4200):
        assert not admits(policy, token(sub=f"project_id:{other}:ref_type:branch:ref:main"))


@settings(max_examples=200, deadline=None)
@given(paths, st.integers(1, 10**8), st.integers(1, 10**8), branch_names, issuers, st.booleans())
def test_with_project_id_each_role_admits_its_own_tokens_and_no_other_projects(path, own, other, branch, issuer, switching):
    assume(own != other)
    forms = (DEFAULT_COMPONENTS, BY_ID) if switching else (BY_ID,)
    policy = id_policy(path, own, forms, issuer=issuer, refs=("branch:{default_branch}", "tag:v*"))
    mine = dict(issuer=issuer, project_id=own)
    assert admits(policy, token(sub=sub(BY_ID, path=path, project_id=own), **mine), issuer)
    assert admits(policy, token(sub=sub(BY_ID, path=path, project_id=own, ref_type="tag", ref="v2"), **mine), issuer)
    assert admits(policy, token(sub=sub(DEFAULT_COMPONENTS, path=path, project_id=own), **mine), issuer) == switching
    theirs = dict(issuer=issuer, project_id=other)
    for form in (BY_ID, DEFAULT_COMPONENTS, BY_ID_PROTECTED):
        # another project, even one that now holds this project's old path
        assert not admits(policy, token(sub=sub(form, path=path + "-x", project_id=other), **theirs), issuer)
        if not switching:
            assert not admits(policy, token(sub=sub(form, path=path, project_id=other), **theirs), issuer)


def test_switching_admits_both_forms_for_one_run_then_only_the_new():
    switching = plan_subject(DEFAULT_COMPONENTS, BY_ID, managed=True)
    assert switching.phase == SWITCHING and switching.trusted == (DEFAULT_COMPONENTS, BY_ID)
    policy = id_policy("shop/cart", 42, switching.trusted)
    assert admits(policy, token(sub="project_path:shop/cart:ref_type:branch:ref:main"))  # jobs started before the change
    assert admits(policy, token(sub="project_id:42:ref_type:branch:ref:main"))
    applied = plan_subject(BY_ID, BY_ID, managed=True)  # the next listing shows the components set
    assert applied.phase == APPLIED and applied.trusted == (BY_ID,)
    policy = id_policy("shop/cart", 42, applied.trusted)
    assert not admits(policy, token(sub="project_path:shop/cart:ref_type:branch:ref:main"))
    assert admits(policy, token(sub="project_id:42:ref_type:branch:ref:main"))


@pytest.mark.parametrize("protected, admitted", [("true", True), ("false", False)])
def test_protected_refs_only_on_gitlab_com_pins_its_ref_protected_key(protected, admitted):
    issuer = "https://gitlab.com"
    for forms in ((DEFAULT_COMPONENTS,), (BY_ID,)):
        policy = id_policy("shop/cart", 42, forms, issuer=issuer, protected_only=True)
        for statement in policy["Statement"]:
            assert statement["Condition"]["StringEquals"]["gitlab.com:ref_protected"] == "true"
        for ref_type, ref in (("branch", "main"), ("tag", "v1")):
            claims = token(issuer=issuer, project_id=42, ref_protected=protected,
                           sub=sub(forms[0], path="shop/cart", project_id=42, ref_type=ref_type, ref=ref))
            assert admits(policy, claims, issuer) is admitted
        missing = token(issuer=issuer, project_id=42, sub=sub(forms[0], path="shop/cart", project_id=42))
        del missing["gitlab.com:ref_protected"]
        assert not admits(policy, missing, issuer)  # a token without the key fails closed


@pytest.mark.parametrize("form", [BY_PATH_PROTECTED, BY_ID_PROTECTED])
def test_protected_refs_only_on_self_managed_needs_ref_protected_true_in_the_sub(form):
    policy = id_policy("shop/cart", 42, (form,), protected_only=True)
    assert admits(policy, token(sub=sub(form, path="shop/cart", project_id=42)))
    assert admits(policy, token(sub=sub(form, path="shop/cart", project_id=42, ref_type="tag", ref="v3")))
    for ref_type, ref in (("branch", "main"), ("tag", "v3")):
        assert not admits(policy, token(sub=sub(form, path="shop/cart", project_id=42, ref_type=ref_type, ref=ref,
                                                 protected="false")))
    assert not admits(policy, token(sub=sub(form[:3], path="shop/cart", project_id=42)))  # no ref_protected at all
    # without protectedRefsOnly, a hand-set form with ref_protected passes both values
    relaxed = id_policy("shop/cart", 42, (form,))
    assert admits(relaxed, token(sub=sub(form, path="shop/cart", project_id=42, protected="false")))


@pytest.mark.parametrize("components, problem", [
    (DEFAULT_COMPONENTS, None), (BY_ID, None), (BY_ID_PROTECTED, None), (("project_path", "ref", "ref_type"), None),
    (("ref", "ref_type"), "starts with ref, not project_path or project_id"),
    (("project_path", "ref"), "must hold ref_type and ref once each"),
    (("project_path", "ref_type", "ref", "ref"), "once each"),
    (("project_id", "ref_type", "ref", "deployment_tier"), "holds deployment_tier, which this program does not trust"),
    (("job_project_id", "ref_type", "ref"), "starts with job_project_id"),
    ((), "starts with nothing"),
])
def test_which_hand_made_forms_are_trusted(components, problem):
    found = components_problem(components)
    assert (found is None) if problem is None else (problem in found)


def test_a_projects_own_form_is_trusted_as_set_or_the_project_is_refused():
    assert plan_subject(None, DEFAULT_COMPONENTS, managed=False).phase == APPLIED  # not shown: GitLab's default
    custom = plan_subject(BY_ID, DEFAULT_COMPONENTS, managed=False)
    assert custom.phase == CUSTOM and custom.trusted == (BY_ID,) and not custom.managed
    assert "deployment_tier" in plan_subject(("project_path", "ref_type", "ref", "deployment_tier"),
                                             DEFAULT_COMPONENTS, managed=False)
    assert "set it back" in plan_subject(("project_path", "ref"), BY_ID, managed=True)
    # a stack that stops managing them gives the found value back in this run: both are trusted until then
    held = HeldSubClaims(components=BY_ID, original=DEFAULT_COMPONENTS)
    back = plan_subject(BY_ID, DEFAULT_COMPONENTS, managed=False, restoring=held)
    assert back.phase == SWITCHING and back.trusted == (BY_ID, DEFAULT_COMPONENTS) and back.components == DEFAULT_COMPONENTS
    # not listed (the token is no longer Maintainer there): its tokens carry what the stack set, until the restore
    hidden = plan_subject(None, DEFAULT_COMPONENTS, managed=False, restoring=held)
    assert hidden.phase == SWITCHING and hidden.trusted == (BY_ID, DEFAULT_COMPONENTS)
    assert wanted_components("id", True) == BY_ID_PROTECTED and wanted_components("path", False) == DEFAULT_COMPONENTS


def test_canonical_policy_compares_as_iam_does():
    """IAM reads a Condition value as its string form, and Action values and condition key names ignoring case."""
    def document(action, key, protected, count, sub="project_path:shop/cart:ref_type:branch:ref:main"):
        return {"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Principal": {"Federated": f"arn:aws:iam::{ACCOUNT}:oidc-provider/gitlab.com"},
            "Action": action, "Condition": {"StringEquals": {key: protected, "gitlab.com:sub": sub},
                                            "NumericLessThan": {"aws:MultiFactorAuthAge": count}}}]}

    planned = document("sts:AssumeRoleWithWebIdentity", "gitlab.com:ref_protected", "true", "10")
    edited = document(["STS:AssumeRoleWithWebIdentity"], "GitLab.com:Ref_Protected", True, 10)
    assert canonical_policy(edited) == canonical_policy(planned)
    assert canonical_policy(json.dumps(edited)) == canonical_policy(planned)
    assert canonical_policy(document("sts:AssumeRoleWithWebIdentity", "gitlab.com:ref_protected", False, 10)) \
        != canonical_policy(planned)
    assert canonical_policy(document("sts:AssumeRoleWithWebIdentity", "gitlab.com:ref_protected", True, 11)) \
        != canonical_policy(planned)
    # values keep their case, and so does everything outside Action and the condition key names
    assert canonical_policy(document("sts:AssumeRoleWithWebIdentity", "gitlab.com:ref_protected", "true", "10",
                                     sub="project_path:Shop/cart:ref_type:branch:ref:main")) != canonical_policy(planned)
    assert canonical_policy({**planned, "Statement": [{**planned["Statement"][0], "Effect": "allow"}]}) != canonical_policy(planned)
