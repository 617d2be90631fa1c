"""Discovery through python-gitlab against the HTTP double: complete listings or a clear failure."""

from __future__ import annotations

import dataclasses
import time

import pytest

from fleet.config import GitLabConfig
from fleet.discovery import fetch_inventory
from fleet.errors import DiscoveryError
from tests.gitlab_double import Fault, GitLabDouble, make_group, make_project


def cfg(double: GitLabDouble, **kw) -> GitLabConfig:
    return dataclasses.replace(GitLabConfig(url="https://gitlab.example.com", api_url=double.url, group="shop"), **kw)


def paths(inventory) -> set[str]:
    return {p.path for p in inventory.projects}


def project_requests(double):
    return [q for path, q in double.requests if path.endswith("/projects")]


def test_lists_subgroups_without_shared_in_projects(shop):
    inventory = fetch_inventory(cfg(shop), None, progress=None)
    assert inventory.group.full_path == "shop" and inventory.group.id == 10
    assert "shop/platform/tools/ci-images" in paths(inventory)
    assert "shop-legacy/cart" not in paths(inventory) and "shopping/cart" not in paths(inventory)
    assert len(inventory.projects) == 34
    [query] = project_requests(shop)
    assert query["with_shared"] == "False" and query["include_subgroups"] == "True" and query["per_page"] == "100"


def test_include_shared_asks_for_shared_projects(shop):
    inventory = fetch_inventory(cfg(shop, include_shared=True), None, progress=None)
    assert {"shop-legacy/cart", "shopping/cart"} <= paths(inventory)


def test_without_subgroups_only_direct_projects(shop):
    inventory = fetch_inventory(cfg(shop, include_subgroups=False), None, progress=None)
    assert all(p.path.count("/") == 1 for p in inventory.projects)


def test_group_by_numeric_id(shop):
    assert fetch_inventory(cfg(shop, group="10"), None, progress=None).group.full_path == "shop"


def big_group(n: int) -> GitLabDouble:
    groups = [make_group(1, "big"), make_group(2, "big/sub", 1)]
    projects = [make_project(1000 + i, f"big/{'sub/' if i % 3 else ''}p{i}", groups) for i in range(n)]
    return GitLabDouble(groups=groups, projects=projects)


def test_follows_pagination_across_pages():
    with big_group(250) as double:
        messages: list[str] = []
        inventory = fetch_inventory(cfg(double, group="big"), None, progress=messages.append)
        assert len(inventory.projects) == 250
        assert [q.get("page", "1") for q in project_requests(double)] == ["1", "2", "3"]
        assert messages[0].startswith("listing projects of GitLab group 'big' at http://127.0.0.1")
        assert messages[1] == "discovered 100 of 250 projects of big"
        assert messages[-1] == "discovered 250 projects of big"


def test_pagination_without_totals_beyond_ten_thousand_records():
    with big_group(230) as double:
        double.omit_totals = True
        assert len(fetch_inventory(cfg(double, group="big"), None, progress=None).projects) == 230


@pytest.mark.parametrize("fault", [
    Fault(count=2, status=503), Fault(count=1, status=500), Fault(count=2, status=429),
    Fault(count=1, status=429, retry_after="0"), Fault(count=1, status=502, path_contains="/groups/"),
])
def test_transient_failures_are_retried(shop, fault):
    shop.faults.append(fault)
    assert len(fetch_inventory(cfg(shop), None, progress=None).projects) == 34
    assert fault.count == 0


def test_retry_after_is_honoured(shop):
    shop.faults.append(Fault(count=1, status=429, retry_after="1"))
    start = time.monotonic()
    fetch_inventory(cfg(shop), None, progress=None)
    assert time.monotonic() - start >= 1.0


def test_timeouts_are_retried(shop):
    shop.faults.append(Fault(count=1, delay=1.0))
    inventory = fetch_inventory(cfg(shop), None, timeout=0.3, progress=None)
    assert len(inventory.projects) == 34


def test_persistent_failure_stops_with_a_clear_error(shop, monkeypatch):
    monkeypatch.setattr(time, "sleep", lambda s: None)  # python-gitlab's backoff; keeps the test short
    shop.faults.append(Fault(count=1000, status=503))
    with pytest.raises(DiscoveryError, match=r"failed while listing 'shop' \(HTTP 503\).*nothing was planned"):
        fetch_inventory(cfg(shop), None, progress=None)


def test_listing_that_changes_while_read_is_refused():
    with big_group(150) as double:
        def delete_one(page: int) -> None:
            if page == 2 and len(double.projects) == 150:
                del double.projects[0]
        double.on_page = delete_one
        with pytest.raises(DiscoveryError, match="changed while it was read"):
            fetch_inventory(cfg(double, group="big"), None, progress=None)


def test_auth_errors_are_one_clear_sentence(shop):
    shop.tokens = {"good", "reader-without-access"}
    shop.forbidden_tokens = {"reader-without-access"}
    with pytest.raises(DiscoveryError, match=r"rejected the token \(401 Unauthorized\): set GITLAB_TOKEN"):
        fetch_inventory(cfg(shop), "bad", progress=None)
    with pytest.raises(DiscoveryError, match=r"may not list projects of GitLab group 'shop' \(403"):
        fetch_inventory(cfg(shop), "reader-without-access", progress=None)
    with pytest.raises(DiscoveryError, match=r"group 'nope' was not found .* check fleet:gitlab.group"):
        fetch_inventory(cfg(shop, group="nope"), "good", progress=None)
    assert len(fetch_inventory(cfg(shop), "good", progress=None).projects) == 34


def test_unreachable_gitlab(monkeypatch):
    monkeypatch.setattr(time, "sleep", lambda s: None)
    double = GitLabDouble().start()
    url = double.url
    double.stop()
    config = GitLabConfig(url="https://gitlab.example.com", api_url=url, group="shop")
    with pytest.raises(DiscoveryError, match="Could not reach GitLab"):
        fetch_inventory(config, None, timeout=1, progress=None)


def test_an_api_serving_only_the_listing_still_identifies_a_group_given_by_path(shop):
    shop.serve_group = False
    messages: list[str] = []
    inventory = fetch_inventory(cfg(shop), None, progress=messages.append)
    assert inventory.group.full_path == "shop" and inventory.group.id is None and len(inventory.projects) == 34
    assert any("identifying the group by its configured path 'shop'" in m for m in messages)
    with pytest.raises(DiscoveryError, match=r"group '10' was not found"):
        fetch_inventory(cfg(shop, group="10"), None, progress=None)  # an id alone says nothing of the path
