"""Stack configuration: defaults, and errors that name the key, the value and what is allowed."""

import pytest

from fleet.config import RefRule
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
    ({"accountId": 111111111111}, "fleet:accountId: 111111111111 is not allowed; quote it"),
    ({"accountId": "1234"}, "fleet:accountId: '1234' is not allowed; expected the AWS account id"),
    ({"gitlab": {"url": "http://gitlab.example.com"}}, "fleet:gitlab.url: 'http://gitlab.example.com' is not allowed"),
    ({"gitlab": {"group": "acme/ bad"}}, "fleet:gitlab.group: 'acme/ bad' is not allowed; expected the group's full path"),
    ({"gitlab": {"includeShared": "no"}}, "fleet:gitlab.includeShared: 'no' is not allowed; expected true or false"),
    ({"gitlab": {"exclude": "acme/**"}}, "fleet:gitlab.exclude: 'acme/**' is not allowed; expected a list"),
    ({"gitlab": {"inclodeArchived": True}}, "fleet:gitlab.inclodeArchived: True is not allowed; unknown key"),
    ({"trust": {"refs": []}}, "fleet:trust.refs: [] is not allowed"),
    ({"trust": {"refs": ["main"]}}, "fleet:trust.refs[0]: 'main' is not allowed; use 'branch:<name or glob>'"),
    ({"trust": {"refs": ["tag:{default_branch}"]}}, "fleet:trust.refs[0]: 'tag:{default_branch}'"),
    ({"trust": {"refs": ["branch:a b"]}}, "fleet:trust.refs[0]: 'branch:a b'"),
    ({"trust": {"refs": ["branch:${aws:username}"]}}, "fleet:trust.refs[0]: 'branch:${aws:username}'"),
    ({"oidc": {"audience": "*"}}, "fleet:oidc.audience: '*' is not allowed"),
    ({"oidc": {"providerArn": "arn:aws:iam::222222222222:oidc-provider/gitlab.example.com"}}, "must be in this stack's account 111111111111"),
    ({"oidc": {"providerArn": "arn:aws:iam::111111111111:oidc-provider/gitlab.com"}}, "end with oidc-provider/gitlab.example.com"),
    ({"role": {"path": "ci"}}, "fleet:role.path: 'ci' is not allowed"),
    ({"role": {"maxSessionDuration": 50000}}, "fleet:role.maxSessionDuration: 50000 is not allowed; expected whole seconds from 3600 to 43200"),
    ({"role": {"permissionsBoundary": "boundary"}}, "fleet:role.permissionsBoundary: 'boundary' is not allowed"),
    ({"variables": {"environmentScope": ""}}, "fleet:variables.environmentScope: '' is not allowed"),
    ({"variables": {"protected": 1}}, "fleet:variables.protected: 1 is not allowed; expected true or false"),
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
    assert any(f"fleet:gitlab.url: {url!r} is not allowed; {expected}" in p for p in problems(gitlab={"url": url})), \
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
