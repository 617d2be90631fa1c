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
