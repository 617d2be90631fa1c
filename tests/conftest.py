import pytest

from tests.gitlab_double import GitLabDouble
from tests.sample_group import build_shop


@pytest.fixture(autouse=True)
def _no_ambient_token(monkeypatch):
    monkeypatch.delenv("GITLAB_TOKEN", raising=False)


@pytest.fixture
def token(monkeypatch):
    """GITLAB_TOKEN set for the test (the GitLab double accepts any token unless told otherwise)."""
    monkeypatch.setenv("GITLAB_TOKEN", "glpat-test")
    return "glpat-test"


@pytest.fixture
def shop():
    """The sample group `shop` served on 127.0.0.1; stopped after the test."""
    groups, projects = build_shop()
    with GitLabDouble(groups=groups, projects=projects) as double:
        yield double
