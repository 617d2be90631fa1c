"""The sub-claim resource's provider against the GitLab double: read, set, read back, give back."""

from __future__ import annotations

import base64

import pytest
from pulumi.dynamic import ConfigureRequest
from pulumi.dynamic.config import Config
from pulumi.dynamic.dynamic import serialize_provider

from fleet.sub_claims import ATTRIBUTE, SubClaimError, SubClaimProvider
from tests.gitlab_double import GitLabDouble, make_group, make_project

DEFAULT = ["project_path", "ref_type", "ref"]
BY_ID = ["project_id", "ref_type", "ref"]


@pytest.fixture
def gitlab():
    groups = [make_group(1, "shop")]
    projects = [make_project(7, "shop/cart", groups, sub_claim_components=DEFAULT),
                make_project(8, "shop/old", groups)]  # GitLab before 17.10: no such attribute
    with GitLabDouble(groups=groups, projects=projects, version="18.7.0") as double:
        yield double


def components(double, project_id):
    return next(p for p in double.projects if p["id"] == project_id).get(ATTRIBUTE)


def props(double, project_id=7, wanted=BY_ID):
    return {"projectId": project_id, "apiUrl": double.url, "components": list(wanted), "original": None}


def test_create_keeps_what_it_found_and_delete_gives_it_back(gitlab, token):
    provider = SubClaimProvider()
    created = provider.create(props(gitlab))
    assert created.id == "7" and created.outs["original"] == DEFAULT and components(gitlab, 7) == BY_ID
    put = [c for c in gitlab.calls if c.method == "PUT"]
    assert [(c.path, c.body) for c in put] == [("/api/v4/projects/7", {ATTRIBUTE: BY_ID})]
    provider.delete(created.id, created.outs)
    assert components(gitlab, 7) == DEFAULT


def test_update_sets_the_new_value_and_keeps_the_original(gitlab, token):
    provider = SubClaimProvider()
    olds = provider.create(props(gitlab)).outs
    news = props(gitlab, wanted=[*BY_ID, "ref_protected"])
    assert provider.diff("7", olds, news).changes and not provider.diff("7", olds, props(gitlab)).changes
    assert provider.diff("7", olds, props(gitlab, project_id=8)).replaces == ["projectId"]
    updated = provider.update("7", olds, news).outs
    assert updated["original"] == DEFAULT and components(gitlab, 7) == [*BY_ID, "ref_protected"]


def test_a_refresh_sees_a_change_made_by_hand(gitlab, token):
    provider = SubClaimProvider()
    outs = provider.create(props(gitlab)).outs
    next(p for p in gitlab.projects if p["id"] == 7)[ATTRIBUTE] = ["project_path", "ref"]
    read = provider.read("7", outs)
    assert read.id == "7" and read.outs["components"] == ["project_path", "ref"] and read.outs["original"] == DEFAULT
    assert provider.diff("7", read.outs, props(gitlab)).changes  # the next up sets it again


def test_an_instance_too_old_for_project_id_refuses_and_nothing_changes(gitlab, token):
    gitlab.version = "17.11.2"
    with pytest.raises(SubClaimError, match=r"refused to set ci_id_token_sub_claim_components of project 7 \(HTTP 400"):
        SubClaimProvider().create(props(gitlab))
    assert components(gitlab, 7) == DEFAULT


def test_a_token_that_is_not_maintainer_or_an_instance_without_the_attribute_is_named(gitlab, token):
    gitlab.hidden_sub_claims = {7}
    with pytest.raises(SubClaimError, match=r"does not show ci_id_token_sub_claim_components of project 7: .*Maintainer"):
        SubClaimProvider().create(props(gitlab))
    with pytest.raises(SubClaimError, match="project 8: it needs GitLab 17.10 or later"):
        SubClaimProvider().create(props(gitlab, project_id=8))
    assert components(gitlab, 8) is None


def test_the_token_is_read_where_the_provider_runs_and_never_kept(gitlab, monkeypatch):
    provider = SubClaimProvider()
    with pytest.raises(SubClaimError, match="no GitLab token where the sub-claim provider runs"):
        provider.create(props(gitlab))
    gitlab.tokens = {"glpat-secret"}
    provider.configure(ConfigureRequest(Config({"gitlab:token": "glpat-secret"}, "gitlab-aws-oidc-fleet")))
    outs = provider.create(props(gitlab)).outs
    assert components(gitlab, 7) == BY_ID
    state = repr(outs) + base64.b64decode(serialize_provider(provider)).decode("latin-1")
    assert "glpat-secret" not in state
    monkeypatch.setenv("GITLAB_TOKEN", "glpat-wrong")  # GITLAB_TOKEN wins, as for listing
    with pytest.raises(SubClaimError, match=r"rejected the token \(401\)"):
        provider.read("7", outs)


def puts(double):
    return [c for c in double.calls if c.method == "PUT"]


@pytest.mark.parametrize("lost", ["hidden", "forbidden"])
def test_a_project_the_token_no_longer_maintains_keeps_its_record_and_is_let_go_with_a_warning(gitlab, token, capsys,
                                                                                              lost):
    """Maintainer lost (attribute hidden, or 403): a refresh keeps what the stack recorded; the restore is skipped,
    named in a warning, and the run goes on."""
    provider = SubClaimProvider()
    outs = provider.create(props(gitlab)).outs
    if lost == "hidden":
        gitlab.hidden_sub_claims = {7}
    else:
        gitlab.forbidden_tokens = {token}
    read = provider.read("7", outs)
    assert read.id == "7" and read.outs == outs
    provider.delete("7", outs)
    assert components(gitlab, 7) == BY_ID and len(puts(gitlab)) == 1  # only create's
    assert "warning: cannot restore ci_id_token_sub_claim_components on project 7: not Maintainer" in capsys.readouterr().err


def test_delete_gives_back_only_what_this_resource_set(gitlab, token, capsys):
    """Changed since (by hand, or by another stack): left as it is, with a warning, even after a refresh saw it."""
    provider = SubClaimProvider()
    outs = provider.create(props(gitlab)).outs
    next(p for p in gitlab.projects if p["id"] == 7)[ATTRIBUTE] = [*BY_ID, "ref_protected"]
    refreshed = provider.read("7", outs).outs
    assert refreshed["components"] == [*BY_ID, "ref_protected"]
    provider.delete("7", refreshed)
    assert components(gitlab, 7) == [*BY_ID, "ref_protected"] and len(puts(gitlab)) == 1
    err = capsys.readouterr().err
    assert "warning: did not restore ci_id_token_sub_claim_components of project 7" in err and "ref_protected" in err
    updated = provider.update("7", refreshed, props(gitlab)).outs  # the next up sets the stack's value again
    provider.delete("7", provider.read("7", updated).outs)
    assert components(gitlab, 7) == DEFAULT


def test_delete_of_a_project_that_is_gone_lets_it_go(gitlab, token, capsys):
    provider = SubClaimProvider()
    outs = provider.create(props(gitlab)).outs
    gitlab.projects = [p for p in gitlab.projects if p["id"] != 7]
    provider.delete("7", outs)
    assert len(puts(gitlab)) == 1
    # GitLab answers 404 alike for a deleted project and one the token can no longer see: said, not silent
    assert "project 7 was not found (deleted, or the token can no longer see it)" in capsys.readouterr().err


def test_a_refresh_of_a_project_out_of_sight_keeps_what_the_stack_recorded(gitlab, token, capsys):
    """A 404 may be a private project the token no longer sees: dropping the record would lose `original` for good."""
    provider = SubClaimProvider()
    outs = provider.create(props(gitlab)).outs
    gitlab.projects = [p for p in gitlab.projects if p["id"] != 7]
    result = provider.read("7", outs)
    assert result.id == "7" and result.outs == outs
    assert "kept what the stack recorded" in capsys.readouterr().err
