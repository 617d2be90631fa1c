"""Stack configuration: defaults, and errors that name the key, the value and what is allowed."""

import json
import re

import pytest

from fleet.config import RefRule, parse_ref
from fleet.spelling import spell
from fleet.errors import ConfigError
from tests.helpers import make_config, raw_config
from fleet.config import parse_config


def problems(**sections) -> list[str]:
    with pytest.raises(ConfigError) as info:
        make_config(**sections)
    return info.value.problems


def test_defaults():
    config = make_config()
    assert config.gitlab.api_url == "https://gitlab.example.com" and config.gitlab.include_subgroups
    assert not config.gitlab.include_shared and not config.gitlab.include_archived
    assert config.oidc.audience == "https://gitlab.example.com" and config.oidc.provider_arn is None
    assert config.role.path == "/" and config.role.max_session_duration == 3600
    assert config.variables.environment_scope == "*" and config.variables.protected is False
    assert config.refs == (RefRule("branch", "main"),)


def test_issuer_trailing_slash_and_api_url_suffix_are_normalised():
    config = make_config(gitlab={"url": "https://host.example/gitlab/", "apiUrl": "http://10.0.0.5/gitlab/api/v4/"})
    assert config.issuer == "https://host.example/gitlab"
    assert config.gitlab.api_url == "http://10.0.0.5/gitlab"


@pytest.mark.parametrize("sections, expected", [
    ({"accountId": 111111111111}, 'fleet:accountId: 111111111111 is not allowed; quote it'),
    ({"accountId": "1234"}, 'fleet:accountId: "1234" is not allowed; expected the AWS account id'),
    ({"accountId": None}, 'fleet:accountId: null is not allowed; expected the AWS account id'),
    ({"gitlab": {"url": "http://gitlab.example.com"}}, 'fleet:gitlab.url: "http://gitlab.example.com" is not allowed'),
    ({"gitlab": {"group": "acme/ bad"}}, 'fleet:gitlab.group: "acme/ bad" is not allowed; expected the group\'s full path'),
    ({"gitlab": {"group": True}}, 'fleet:gitlab.group: true is not allowed'),
    ({"gitlab": {"includeShared": "no"}}, 'fleet:gitlab.includeShared: "no" is not allowed; expected true or false'),
    ({"gitlab": {"exclude": "acme/**"}}, 'fleet:gitlab.exclude: "acme/**" is not allowed; expected a list'),
    ({"gitlab": {"inclodeArchived": True}}, 'fleet:gitlab.inclodeArchived: unknown key (set to true); did you mean fleet:gitlab.includeArchived?'),
    ({"trust": {"refs": []}}, 'fleet:trust.refs: [] is not allowed'),
    ({"trust": {"refs": ["tag:{default_branch}"]}}, 'fleet:trust.refs[0]: "tag:{default_branch}" is not allowed; {default_branch} is a branch'),
    ({"oidc": {"audience": "*"}}, 'fleet:oidc.audience: "*" is not allowed'),
    ({"oidc": {"providerArn": "arn:aws:iam::222222222222:oidc-provider/gitlab.example.com"}}, "must be in this stack's account 111111111111"),
    ({"oidc": {"providerArn": "arn:aws:iam::111111111111:oidc-provider/gitlab.com"}}, "end with oidc-provider/gitlab.example.com"),
    ({"role": {"path": "ci"}}, 'fleet:role.path: "ci" is not allowed'),
    ({"role": {"maxSessionDuration": 50000}}, 'fleet:role.maxSessionDuration: 50000 is not allowed; expected whole seconds from 3600 to 43200'),
    ({"role": {"maxSessionDuration": "3600"}}, 'fleet:role.maxSessionDuration: "3600" is not allowed'),
    ({"role": {"permissionsBoundary": "boundary"}}, 'fleet:role.permissionsBoundary: "boundary" is not allowed'),
    ({"variables": {"environmentScope": ""}}, 'fleet:variables.environmentScope: "" is not allowed'),
    ({"variables": {"protected": 1}}, 'fleet:variables.protected: 1 is not allowed; expected true or false'),
])
def test_each_error_names_key_value_and_what_is_allowed(sections, expected):
    assert any(expected in p for p in problems(**sections)), problems(**sections)


def test_all_problems_are_reported_together_and_unknown_top_level_keys_too():
    raw = raw_config(role={"path": "x"}, variables={"protected": "yes"})
    raw["regoin"] = "eu-west-1"
    with pytest.raises(ConfigError) as info:
        parse_config(raw)
    assert len(info.value.problems) == 3
    assert any(p.startswith("fleet:regoin:") for p in info.value.problems)


def test_refs_accept_globs_and_deduplicate():
    config = make_config(trust={"refs": ["branch:main", "branch:release/*", "tag:v?.*", "branch:main", "branch:{default_branch}"]})
    assert [r.text for r in config.refs] == ["branch:main", "branch:release/*", "tag:v?.*", "branch:{default_branch}"]


def test_instance_url_is_normalised_and_gitlab_com_is_recognised_however_spelt():
    from fleet.planner import build_plan
    from fleet.inventory import parse_inventory
    config = make_config(gitlab={"url": "HTTPS://GitLab.COM/"})
    assert config.issuer == "https://gitlab.com" and config.oidc.audience == "https://gitlab.com"
    inventory = parse_inventory({"group": {"id": 1, "full_path": "shop"}, "projects": [
        {"id": 7, "path_with_namespace": "shop/cart", "default_branch": "main"}]})
    [project] = build_plan(config, inventory, "s").projects
    assert project.trust_policy["Statement"][0]["Condition"]["StringEquals"]["gitlab.com:project_id"] == "7"
    assert make_config(gitlab={"url": "https://Host.Example/GitLab/"}).issuer == "https://host.example/GitLab"
    assert make_config(gitlab={"apiUrl": "HTTP://10.0.0.5:8080/api/v4"}).gitlab.api_url == "http://10.0.0.5:8080"


@pytest.mark.parametrize("url, expected", [
    ("https://gitlab.example.com:443", "expected no port: AWS refuses ports"),
    ("https://user:pw@gitlab.example.com", "expected no user name or password"),
    ("https://gitlab.example.com/?x=1", "expected no query"),
    ("https://gitlab.example.com/#top", "expected no query (?) or fragment (#)"),
    ("https://gitlab.example.com.", "expected a host name without a trailing dot"),
    ("https://gitlab.example.com\n", "expected an ASCII URL without spaces or control characters"),
    ("https://gitläb.example.com", "expected an ASCII URL"),
    ("https://gitlab.example.com/a b", "expected an ASCII URL without spaces"),
    ("https://", "expected a host name"),
    ("https://gitlab.com/.", "expected a path of letters, digits and '._~-' segments, none of them '.' or '..'"),
    ("https://host.example/gitlab/..", "expected a path of letters"),
])
def test_bad_instance_urls_are_refused(url, expected):
    assert any(f"fleet:gitlab.url: {spell(url)} is not allowed; {expected}" in p for p in problems(gitlab={"url": url})), \
        problems(gitlab={"url": url})


@pytest.mark.parametrize("sections, key", [
    ({"accountId": "11111111111\n"}, "accountId"),
    ({"accountId": "١١١١١١١١١١١١"}, "accountId"),  # Arabic-Indic digits are digits to Python, not to AWS
    ({"gitlab": {"group": "shop\n"}}, "gitlab.group"),
    ({"gitlab": {"group": "١٢"}}, "gitlab.group"),
    ({"role": {"path": "/ci/\n"}}, "role.path"),
    ({"role": {"permissionsBoundary": "arn:aws:iam::111111111111:policy/b\n"}}, "role.permissionsBoundary"),
    ({"oidc": {"providerArn": "arn:aws:iam::111111111111:oidc-provider/gitlab.example.com\n"}}, "oidc.providerArn"),
    ({"oidc": {"audience": " sts.amazonaws.com"}}, "oidc.audience"),
    ({"oidc": {"audience": "sts.amazonaws.com\n"}}, "oidc.audience"),
    ({"variables": {"environmentScope": "production "}}, "variables.environmentScope"),
    ({"variables": {"environmentScope": "prod\n"}}, "variables.environmentScope"),
    ({"trust": {"refs": ["branch:main\u2028"]}}, "trust.refs[0]"),
])
def test_identifiers_are_matched_whole_and_in_ascii(sections, key):
    assert any(p.startswith(f"fleet:{key}:") for p in problems(**sections)), problems(**sections)


@pytest.mark.parametrize("arn, key", [
    ("arn:aws-cn:iam::111111111111:oidc-provider/gitlab.example.com", "oidc"),
    ("arn:aws-us-gov:iam::111111111111:policy/boundary", "role"),
])
def test_other_partitions_are_refused_not_misread(arn, key):
    sections = {"oidc": {"providerArn": arn}} if key == "oidc" else {"role": {"permissionsBoundary": arn}}
    assert any("only the aws partition is supported" in p for p in problems(**sections))


def test_gitlab_timeout_and_retries():
    config = make_config(gitlab={"timeout": 7.5, "maxRetries": 0})
    assert config.gitlab.timeout == 7.5 and config.gitlab.max_retries == 0
    assert make_config().gitlab.timeout == 20 and make_config().gitlab.max_retries == 4
    assert any("fleet:gitlab.timeout: 0 is not allowed" in p for p in problems(gitlab={"timeout": 0}))
    assert any("fleet:gitlab.maxRetries: 2.5 is not allowed" in p for p in problems(gitlab={"maxRetries": 2.5}))
    assert any("fleet:gitlab.maxRetries: 11 is not allowed" in p for p in problems(gitlab={"maxRetries": 11}))


def test_gitlab_concurrency_and_request_rate():
    assert make_config().gitlab.concurrency == 8
    config = make_config(gitlab={"concurrency": 2, "maxRequestsPerSecond": 2.5})
    assert config.gitlab.concurrency == 2 and config.gitlab.rate_limit == 2.5
    # Unset: gitlab.com's documented 600 a minute for this endpoint; no limit on other instances.
    assert make_config(gitlab={"url": "https://gitlab.com"}).gitlab.rate_limit == 10
    assert make_config(gitlab={"url": "https://gitlab.example.com"}).gitlab.rate_limit is None
    assert make_config(gitlab={"url": "https://gitlab.com", "maxRequestsPerSecond": 4}).gitlab.rate_limit == 4
    assert any("fleet:gitlab.concurrency: 0 is not allowed" in p for p in problems(gitlab={"concurrency": 0}))
    assert any("fleet:gitlab.concurrency: 33 is not allowed" in p for p in problems(gitlab={"concurrency": 33}))
    assert any("fleet:gitlab.concurrency: 1.5 is not allowed" in p for p in problems(gitlab={"concurrency": 1.5}))
    for bad in (0, -1, True, "10"):
        found = problems(gitlab={"maxRequestsPerSecond": bad})
        assert any(p.startswith(f"fleet:gitlab.maxRequestsPerSecond: {spell(bad)} is not allowed") and
                   "10 on gitlab.com" in p for p in found), found


@pytest.mark.parametrize("raw, expected, not_expected", [
    ({"gitlab": {"includeArchive": True}}, "fleet:gitlab.includeArchive: unknown key (set to true); did you mean fleet:gitlab.includeArchived?", None),
    ({"accountID": "111111111111", "accountId": None}, 'fleet:accountID: unknown key (set to "111111111111"); did you mean fleet:accountId?', "fleet:accountId"),
    ({"gitlab": {"URL": "https://gitlab.example.com", "url": None}}, "did you mean fleet:gitlab.url?", "fleet:gitlab.url"),
    ({"gitlab": {"audience": "sts.amazonaws.com"}}, "fleet:gitlab.audience: unknown key (set to \"sts.amazonaws.com\"); did you mean fleet:oidc.audience?", None),
    ({"refs": ["branch:main"]}, "fleet:refs: unknown key (set to [\"branch:main\"]); did you mean fleet:trust.refs?", None),
    ({"gitLab": {"url": "https://gitlab.example.com", "group": "shop"}, "gitlab": None}, "did you mean fleet:gitlab?", "fleet:gitlab."),
    ({"role": {"maxSessionDurationSeconds": 7200}}, "did you mean fleet:role.maxSessionDuration?", None),
    ({"gitlab": {"accountId": "111111111111", "url": "https://gitlab.example.com", "group": "shop"}, "accountId": None},
     'fleet:gitlab.accountId: unknown key (set to "111111111111"); did you mean fleet:accountId?', "fleet:accountId"),
    ({"gitlab": {"frobnicate": 1}}, "fleet:gitlab.frobnicate: unknown key (set to 1); known keys of fleet:gitlab are url, apiUrl, group", None),
])
def test_a_misspelt_key_gets_a_did_you_mean_and_no_knock_on_error(raw, expected, not_expected):
    config = raw_config(**raw)
    config = {k: v for k, v in config.items() if v is not None}
    for section, values in raw.items():
        if isinstance(values, dict) and isinstance(config.get(section), dict):
            config[section] = {k: v for k, v in config[section].items() if v is not None}
    with pytest.raises(ConfigError) as info:
        parse_config(config)
    found = info.value.problems
    assert any(expected in p for p in found), found
    if not_expected:
        assert len(found) == 1 and not any(p.startswith(not_expected) for p in found), found


def test_a_missing_required_key_says_missing():
    found = problems_of({"trust": {"refs": ["branch:main"]}})
    assert 'fleet:accountId: missing; expected the AWS account id, a string of 12 digits' in found
    assert any(p.startswith("fleet:gitlab.url: missing; ") for p in found)
    assert any(p.startswith("fleet:gitlab.group: missing; ") for p in found)
    assert not any("None" in p for p in found), found


def problems_of(raw):
    with pytest.raises(ConfigError) as info:
        parse_config(raw)
    return info.value.problems


@pytest.mark.parametrize("ref, expected", [
    ("main", 'fleet:trust.refs[0]: "main" is not allowed; did you mean "branch:main" or "tag:main"?'),
    ("{default_branch}", 'did you mean "branch:{default_branch}"? A rule'),
    ("refs/heads/a b", "and it holds a space"),
    ("v[0-9]*", "and character classes such as [0-9] are not globs here"),
    ("brnch:a b", '"brnch" is not a ref type'),
    ("refs/heads/refs/tags/x", 'did you mean "branch:refs/tags/x"?'),
    ("refs/heads/main", 'did you mean "branch:main"? GitLab\'s tokens name the ref without refs/heads/'),
    ("refs/tags/v1", 'did you mean "tag:v1"?'),
    ("brnch:dev", 'did you mean "branch:dev"? "brnch" is not a ref type'),
    ("branch:", "the name after branch: is empty"),
    ("tag:", "the name after tag: is empty"),
    ("branch:a b", "it holds a space"),
    ("tag:v[0-9]*", "character classes such as [0-9] are not globs here: IAM's StringLike knows only '*'"),
    ("branch:${aws:username}", "IAM reads ${...} as a policy variable"),
    ("tag:{default_branch}", '{default_branch} is a branch: write "branch:{default_branch}"'),
    ("branch:a..b", "it holds '..'"),
    ("branch:a\nb", 'fleet:trust.refs[0]: "branch:a\\nb" is not allowed; it holds a line break'),
    (7, 'fleet:trust.refs[0]: 7 is not allowed; expected a string such as "branch:main"'),
])
def test_each_bad_ref_says_what_is_wrong_with_it(ref, expected):
    found = problems_of(raw_config(trust={"refs": ["branch:main", ref]}) | {"trust": {"refs": [ref]}})
    assert any(expected in p for p in found), found
    for suggestion in re.findall(r'(?:did you mean|or) "([^"]+)"', " ".join(found)):  # a suggestion is always a valid rule
        assert isinstance(parse_ref(suggestion), RefRule), suggestion


def test_values_are_shown_as_yaml_spells_them():
    found = problems_of(raw_config(accountId="12", gitlab={"includeShared": None, "includeArchived": "true", "exclude": None},
                                   role={"path": None, "maxSessionDuration": 1.5}))
    assert 'fleet:accountId: "12" is not allowed' in found[0]
    assert any(p.startswith('fleet:gitlab.includeArchived: "true" is not allowed') for p in found)
    assert any(p.startswith("fleet:role.maxSessionDuration: 1.5 is not allowed") for p in found)
    assert not any("'" + "12'" in p or "None" in p or "True" in p for p in found), found


def test_non_ascii_values_are_shown_as_written_and_invisible_characters_as_escapes():
    found = problems_of(raw_config(gitlab={"group": "acmé/ü"}, variables={"environmentScope": "prod\u200b"}))
    assert any(p.startswith('fleet:gitlab.group: "acmé/ü" is not allowed') for p in found), found
    assert any(p.startswith('fleet:variables.environmentScope: "prod\\u200b" is not allowed') for p in found), found


def test_guard_reconcile_and_adopt_defaults():
    config = make_config()
    assert config.guard.max_deletes == 5
    assert config.reconcile == "report"
    assert (config.adopt.variables, config.adopt.roles, config.adopt.provider) == (False, False, False)
    assert config.adopt.kinds() == ()


def test_guard_reconcile_and_adopt_are_read():
    config = make_config(guard={"maxDeletes": 0}, reconcile="auto", adopt={"variables": True, "provider": True})
    assert config.guard.max_deletes == 0 and config.reconcile == "auto"
    assert config.adopt.kinds() == ("variables", "provider") and not config.adopt.roles
    assert make_config(guard={"maxDeletes": 10000}).guard.max_deletes == 10000


@pytest.mark.parametrize("sections, expected", [
    ({"guard": {"maxDeletes": -1}}, "fleet:guard.maxDeletes: -1 is not allowed; expected a whole number from 0 to 10000"),
    ({"guard": {"maxDeletes": 10001}}, "fleet:guard.maxDeletes: 10001 is not allowed"),
    ({"guard": {"maxDeletes": 2.5}}, "fleet:guard.maxDeletes: 2.5 is not allowed"),
    ({"guard": {"maxDeletes": True}}, "fleet:guard.maxDeletes: true is not allowed"),
    ({"guard": {"maxDeletes": "5"}}, 'fleet:guard.maxDeletes: "5" is not allowed'),
    ({"guard": {"maxDeletes": "<how many>"}}, 'fleet:guard.maxDeletes: "<how many>" is the example\'s placeholder'),
    ({"guard": {"maxDelete": 3}}, "fleet:guard.maxDelete: unknown key (set to 3); did you mean fleet:guard.maxDeletes?"),
    ({"guard": 3}, "fleet:guard: 3 is not allowed; expected an object with keys maxDeletes"),
    ({"maxDeletes": 3}, "fleet:maxDeletes: unknown key (set to 3); did you mean fleet:guard.maxDeletes?"),
    ({"reconcile": "never"}, 'fleet:reconcile: "never" is not allowed; expected report or auto'),
    ({"reconcile": "Auto"}, 'fleet:reconcile: "Auto" is not allowed; expected report or auto; did you mean auto?'),
    ({"reconcile": "<report or auto>"}, 'fleet:reconcile: "<report or auto>" is the example\'s placeholder'),
    ({"reconcile": True}, "fleet:reconcile: true is not allowed"),
    ({"reconcil": "auto"}, 'fleet:reconcil: unknown key (set to "auto"); did you mean fleet:reconcile?'),
    ({"adopt": {"roles": "yes"}}, 'fleet:adopt.roles: "yes" is not allowed; expected true or false'),
    ({"adopt": {"role": True}}, "fleet:adopt.role: unknown key (set to true); did you mean fleet:adopt.roles?"),
    ({"adopt": True}, "fleet:adopt: true is not allowed; expected an object with keys variables, roles, provider"),
    ({"variables": {"adopt": True}}, "fleet:variables.adopt: unknown key (set to true); did you mean fleet:adopt?"),
    ({"adopt": {"provider": True}, "oidc": {"providerArn": "arn:aws:iam::111111111111:oidc-provider/gitlab.example.com"}},
     "fleet:adopt.provider: true is not allowed; fleet:oidc.providerArn already names a provider"),
])
def test_guard_reconcile_and_adopt_errors_name_the_key(sections, expected):
    found = problems(**sections)
    assert any(expected in p for p in found), found


def test_guard_and_adopt_sections_arrive_as_pulumi_strings():
    from fleet.stacks import fleet_values
    raw = fleet_values({"fleet:accountId": "111111111111", "fleet:gitlab": '{"url": "https://gitlab.example.com", "group": "shop"}',
                        "fleet:guard": '{"maxDeletes": 2}', "fleet:reconcile": "auto", "fleet:adopt": '{"roles": true}'})
    config = parse_config(raw)
    assert config.guard.max_deletes == 2 and config.reconcile == "auto" and config.adopt.kinds() == ("roles",)


def test_trust_subject_and_protected_refs_default_and_are_checked_like_the_other_keys():
    config = make_config()
    assert config.subject == "path" and config.protected_refs_only is False
    config = make_config(trust={"refs": ["branch:main"], "subject": "id", "protectedRefsOnly": True})
    assert config.subject == "id" and config.protected_refs_only is True
    found = problems(trust={"refs": ["branch:main"], "subject": "ID", "protectedRefsOnly": "yes"})
    assert found == ['fleet:trust.subject: "ID" is not allowed; expected path (sub starts with project_path) or id '
                     '(sub starts with project_id, rename-proof); did you mean id?',
                     'fleet:trust.protectedRefsOnly: "yes" is not allowed; expected true or false']
    assert problems(trust={"refs": ["branch:main"], "protectedRefOnly": True}) == [
        "fleet:trust.protectedRefOnly: unknown key (set to true); did you mean fleet:trust.protectedRefsOnly?"]
