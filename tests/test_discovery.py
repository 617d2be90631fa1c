"""Discovery through python-gitlab against the HTTP double: complete listings or a clear failure."""

from __future__ import annotations

import dataclasses
import json
import re
import socket
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fleet import gitlab_api
from fleet.config import GitLabConfig
from fleet.discovery import fetch_inventory, resolve_token
from fleet.errors import DiscoveryError
from tests.gitlab_double import Fault, GitLabDouble, busiest_second, make_group, make_project

TOKEN = "glpat-test"


def cfg(double: GitLabDouble, **kw) -> GitLabConfig:
    """One reader unless a test is about concurrency: a fault injected for the next request then hits the one meant."""
    config = GitLabConfig(url="https://gitlab.example.com", api_url=double.url, group="shop", concurrency=1)
    return dataclasses.replace(config, **kw)


def paths(inventory) -> set[str]:
    return {p.path for p in inventory.projects}


def project_requests(double):
    return [q for path, q in double.requests if path.endswith("/projects")]


def test_lists_subgroups_without_shared_in_projects(shop):
    inventory = fetch_inventory(cfg(shop), TOKEN, progress=None)
    assert inventory.group.full_path == "shop" and inventory.group.id == 10
    assert "shop/platform/tools/ci-images" in paths(inventory)
    assert "shop-legacy/cart" not in paths(inventory) and "shopping/cart" not in paths(inventory)
    assert len(inventory.projects) == 34
    [query] = project_requests(shop)
    assert query["with_shared"] == "False" and query["include_subgroups"] == "True" and query["per_page"] == "100"
    assert query["order_by"] == "id" and query["sort"] == "asc" and "id_after" not in query


def test_include_shared_asks_for_shared_projects(shop):
    inventory = fetch_inventory(cfg(shop, include_shared=True), TOKEN, progress=None)
    assert {"shop-legacy/cart", "shopping/cart"} <= paths(inventory)


def test_without_subgroups_only_direct_projects(shop):
    inventory = fetch_inventory(cfg(shop, include_subgroups=False), TOKEN, progress=None)
    assert all(p.path.count("/") == 1 for p in inventory.projects)


def test_group_by_numeric_id(shop):
    assert fetch_inventory(cfg(shop, group="10"), TOKEN, progress=None).group.full_path == "shop"


def big_group(n: int, **kw) -> GitLabDouble:
    groups = [make_group(1, "big"), make_group(2, "big/sub", 1)]
    projects = [make_project(1000 + i, f"big/{'sub/' if i % 3 else ''}p{i}", groups) for i in range(n)]
    return GitLabDouble(groups=groups, projects=projects, **kw)


def test_one_reader_continues_after_the_last_id_received():
    with big_group(250) as double:
        messages: list[str] = []
        inventory = fetch_inventory(cfg(double, group="big", concurrency=1), TOKEN, progress=messages.append)
        assert len(inventory.projects) == 250
        queries = project_requests(double)
        assert [q.get("id_after") for q in queries] == [None, "1099", "1199"]
        assert all(q["page"] == "1" and q["sort"] == "asc" and "id_before" not in q for q in queries)
        assert messages[0].startswith("listing projects of GitLab group 'big' at http://127.0.0.1")
        assert ("timeout 20 s per attempt, up to 4 retries (2 when the server cannot be reached), at most 340 s per "
                "request; 1 requests at once)") in messages[0]
        assert messages[-1] == "discovered 250 projects of big (5 requests)"  # 3 pages, the group and /version


@pytest.mark.parametrize("threshold", [10_000, 100], ids=["with-totals", "without-totals"])
def test_readers_in_parallel_read_disjoint_ranges_and_the_newest_page(threshold):
    with big_group(250, totals_threshold=threshold) as double:
        inventory = fetch_inventory(cfg(double, group="big", concurrency=8), TOKEN, progress=None)
        assert [p.id for p in inventory.projects] == list(range(1000, 1250))
        queries = project_requests(double)
        ascending = [q for q in queries if q["sort"] == "asc"]
        assert [q for q in queries if q["sort"] == "desc"] == [{**ascending[0], "sort": "desc"}]  # the newest page, once
        ranges = [(int(q["id_after"]), int(q.get("id_before", 10**9))) for q in ascending[1:]]
        assert "id_after" not in ascending[0] and ranges and len(queries) <= 10
        if threshold == 100:  # no X-Total: one open range from the first page's last id, ended by the newest page
            assert ranges[0] == (1099, 10**9)
        else:  # X-Total: the ids ahead cut at once, one range per reader but the one reading the newest page
            firsts = sorted({lo for lo, _ in ranges})
            assert firsts[0] == 1099 and len(firsts) >= 5


@pytest.mark.parametrize("concurrency", [1, 8])
def test_listing_without_totals_beyond_the_threshold(concurrency):
    with big_group(230, totals_threshold=100) as double:
        assert len(fetch_inventory(cfg(double, group="big", concurrency=concurrency), TOKEN, progress=None).projects) == 230


def live_ids(double: GitLabDouble) -> set[int]:
    return {p["id"] for p in double.projects}


@pytest.mark.parametrize("concurrency", [1, 8])
@pytest.mark.parametrize("threshold", [10_000, 100], ids=["with-totals", "without-totals"])
def test_a_deletion_while_listing_never_loses_a_live_project(threshold, concurrency):
    """Offset pages shift when an earlier project is deleted: the project at the page boundary would be skipped."""
    with big_group(350, totals_threshold=threshold) as double:
        def delete_early_projects(request: int) -> None:
            if request == 2:
                del double.projects[0:3]  # three projects of the first page go away
        double.on_listing = delete_early_projects
        inventory = fetch_inventory(cfg(double, group="big", concurrency=concurrency), TOKEN, progress=None)
        listed = {p.id for p in inventory.projects}
        assert live_ids(double) <= listed, sorted(live_ids(double) - listed)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.integers(1, 5), st.integers(0, 319), st.sampled_from(["delete", "create", "archive"])),
                max_size=8), st.sampled_from([1, 3, 8]))
def test_changes_while_listing_never_lose_a_project_that_lived_throughout(changes, concurrency):
    with big_group(320, totals_threshold=150) as double:
        touched: set[int] = set()

        def change(request: int) -> None:
            for when, index, what in changes:
                if when != request or not double.projects:
                    continue
                project = double.projects[index % len(double.projects)]
                touched.add(project["id"])
                if what == "delete":
                    double.projects.remove(project)
                elif what == "create":
                    new_id = max(p["id"] for p in double.projects) + 1
                    double.projects.append(make_project(new_id, f"big/new{new_id}", double.groups))
                    touched.add(new_id)
                else:
                    project["archived"] = True
        double.on_listing = change
        inventory = fetch_inventory(cfg(double, group="big", concurrency=concurrency), TOKEN, progress=None)
        listed = {p.id for p in inventory.projects}
        assert (live_ids(double) - touched) <= listed
        assert len(listed) == len(inventory.projects)  # no duplicates


def test_a_rename_into_another_projects_old_path_while_listing_is_refused():
    with big_group(150) as double:
        first = next(p for p in double.projects if p["id"] == 1000)
        late = next(p for p in double.projects if p["id"] == 1140)
        old_path = first["path_with_namespace"]

        def rename(request: int) -> None:
            if request == 2:  # 1000 was read as big/p0; it moves away and 1140 takes its path
                first["path_with_namespace"] = "big/p0-renamed"
                late["path_with_namespace"] = old_path
        double.on_listing = rename
        with pytest.raises(DiscoveryError, match=r"changed while it was read: big/p0: projects 1000, 1140 .*run again"):
            fetch_inventory(cfg(double, group="big"), TOKEN, progress=None)


@pytest.mark.parametrize("concurrency", [1, 8])
def test_a_server_that_ignores_id_after_is_refused(concurrency):
    with big_group(450, honours_id_after=False) as double:
        with pytest.raises(DiscoveryError, match=r"ignores id_after, id_before or sort, so the listing cannot be shown complete"):
            fetch_inventory(cfg(double, group="big", concurrency=concurrency), TOKEN, progress=None)


def test_no_request_without_a_token(shop):
    with pytest.raises(DiscoveryError, match="no GitLab token: set GITLAB_TOKEN"):
        fetch_inventory(cfg(shop), resolve_token(None), progress=None)
    with pytest.raises(DiscoveryError, match="no GitLab token"):
        fetch_inventory(cfg(shop), "", progress=None)
    assert shop.requests == []


def test_token_resolution():
    assert resolve_token("a") == "a" and resolve_token(None, "s", secret_offered=True) == "s"
    assert resolve_token("same", "same") == "same"
    with pytest.raises(DiscoveryError, match="GITLAB_TOKEN and the stack secret gitlab:token are both set and differ"):
        resolve_token("a", "b")
    with pytest.raises(DiscoveryError, match="set GITLAB_TOKEN or the stack secret gitlab:token"):
        resolve_token("", None, secret_offered=True)
    with pytest.raises(DiscoveryError, match="contains spaces, line breaks"):
        resolve_token("glpat-x\n")


@pytest.mark.parametrize("fault", [
    Fault(count=2, status=503), Fault(count=1, status=500), Fault(count=2, status=429),
    Fault(count=1, status=429, retry_after="0"), Fault(count=1, status=502, path_contains="/groups/"),
])
def test_transient_failures_are_retried_and_each_retry_is_logged(shop, fault, monkeypatch):
    waits: list[float] = []
    monkeypatch.setattr(gitlab_api, "pause", lambda s, cancel=None: waits.append(s))
    shop.faults.append(fault)
    messages: list[str] = []
    count = fault.count
    assert len(fetch_inventory(cfg(shop), TOKEN, progress=messages.append).projects) == 34
    assert fault.count == 0
    retries = [m for m in messages if "; retry " in m]
    assert len(retries) == count and waits[:count] == [float(re.search(r"in (\S+) s", m).group(1)) for m in retries]
    if fault.status == 429 and waits[0] > 0:  # every later request waits too (the GET of the group, GET /version): the client is held
        assert len(waits) > count and "(all requests wait)" in retries[0]
    else:
        assert len(waits) == count
    assert all(re.search(rf"HTTP {fault.status}.*; retry \d of 4 in \d+\.\d s", m) for m in retries), retries


def test_retry_after_is_honoured(shop):
    shop.faults.append(Fault(count=1, status=429, retry_after="1"))
    start = time.monotonic()
    fetch_inventory(cfg(shop), TOKEN, progress=None)
    assert time.monotonic() - start >= 1.0


def test_a_retry_after_longer_than_the_longest_wait_fails_at_once(shop, monkeypatch):
    monkeypatch.setattr(gitlab_api, "pause", lambda s, cancel=None: pytest.fail("must not wait"))
    shop.faults.append(Fault(count=1, status=429, retry_after="3600"))
    with pytest.raises(DiscoveryError, match=r"kept rate-limiting .*asked to wait 3600 s, longer than the 60 s"):
        fetch_inventory(cfg(shop), TOKEN, progress=None)


def test_timeouts_are_retried(shop):
    shop.faults.append(Fault(count=1, delay=3.0))
    messages: list[str] = []
    inventory = fetch_inventory(cfg(shop, timeout=1.5), TOKEN, progress=messages.append)
    assert len(inventory.projects) == 34
    assert [m for m in messages if "retry" in m] == [
        "GitLab GET /groups/shop/projects: no answer within 1.5 s; retry 1 of 4 in 1.0 s"]


def timed_failure(config: GitLabConfig, match: str) -> tuple[float, list[str]]:
    """Seconds until the listing fails with `match`, and the progress messages it printed."""
    messages: list[str] = []
    start = time.monotonic()
    with pytest.raises(DiscoveryError, match=match):
        fetch_inventory(config, TOKEN, progress=messages.append)
    return time.monotonic() - start, messages


def test_a_slow_server_fails_within_the_announced_budget(shop):
    shop.faults.append(Fault(count=100, delay=1.0))
    elapsed, messages = timed_failure(cfg(shop, timeout=0.2, max_retries=2),
                                      r"did not answer within 0.2 s while listing .* after 2 retries.*fleet:gitlab.timeout")
    budget = float(re.search(r"at most (\d+) s per request", messages[0]).group(1))
    assert elapsed <= budget
    assert [m for m in messages if "retry" in m] == [
        f"GitLab GET /groups/shop/projects: no answer within 0.2 s; retry {n} of 2 in {w:.1f} s"
        for n, w in ((1, 1.0), (2, 2.0))]


def test_a_server_that_drips_its_answer_is_given_up_at_the_deadline(shop):
    """requests' timeout bounds each wait for bytes; a byte every 0.05 s never trips it. The deadline does."""
    shop.faults.append(Fault(count=100, drip=0.05))
    elapsed, messages = timed_failure(cfg(shop, timeout=0.3, max_retries=1), r"did not answer within 0.3 s .* after 1 retries")
    assert "at most 61 s per request" in messages[0]  # 2 x 0.3 s + 1 x 60 s
    assert elapsed < 10  # two attempts of 0.3 s and a wait of 1 s; the whole dripped answer would take 100 s


def test_persistent_failure_stops_with_a_clear_error(shop, monkeypatch):
    monkeypatch.setattr(gitlab_api, "pause", lambda s, cancel=None: None)
    shop.faults.append(Fault(count=1000, status=503))
    with pytest.raises(DiscoveryError, match=r"failed while listing the projects of 'shop' \(HTTP 503\) after 4 retries; nothing was planned"):
        fetch_inventory(cfg(shop), TOKEN, progress=None)
    assert len(project_requests(shop)) == 5


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


def test_connection_refused_fails_fast_after_two_logged_retries(monkeypatch):
    waits: list[float] = []
    monkeypatch.setattr(gitlab_api, "pause", lambda s, cancel=None: waits.append(s))
    double = GitLabDouble().start()
    url = double.url
    double.stop()
    messages: list[str] = []
    config = GitLabConfig(url="https://gitlab.example.com", api_url=url, group="shop", concurrency=1)
    with pytest.raises(DiscoveryError, match=r"Could not reach GitLab at .*connection refused, 2 retries spent"):
        fetch_inventory(config, TOKEN, progress=messages.append)
    assert waits == [1.0, 2.0]
    assert [m for m in messages if "retry" in m] == [
        "GitLab GET /groups/shop/projects: connection refused; retry 1 of 2 in 1.0 s",
        "GitLab GET /groups/shop/projects: connection refused; retry 2 of 2 in 2.0 s"]


def test_dns_failure_fails_fast_and_says_so(monkeypatch):
    waits: list[float] = []
    monkeypatch.setattr(gitlab_api, "pause", lambda s, cancel=None: waits.append(s))
    real = socket.getaddrinfo

    def no_such_host(host, *args, **kwargs):
        if host == "gitlab.invalid":
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real(host, *args, **kwargs)
    monkeypatch.setattr(socket, "getaddrinfo", no_such_host)
    config = GitLabConfig(url="https://gitlab.invalid", api_url="https://gitlab.invalid", group="shop", concurrency=1)
    with pytest.raises(DiscoveryError, match=r"Could not reach GitLab .*cannot be resolved \(DNS\)"):
        fetch_inventory(config, TOKEN, progress=None)
    assert len(waits) == 2


def test_an_api_serving_only_the_listing_still_identifies_a_group_given_by_path(shop):
    shop.serve_group = False
    messages: list[str] = []
    inventory = fetch_inventory(cfg(shop), TOKEN, progress=messages.append)
    assert inventory.group.full_path == "shop" and inventory.group.id is None and len(inventory.projects) == 34
    assert any("identifying the group by its configured path 'shop'" in m for m in messages)
    with pytest.raises(DiscoveryError, match=r"group '10' was not found"):
        fetch_inventory(cfg(shop, group="10"), TOKEN, progress=None)  # an id alone says nothing of the path


def test_a_wrong_api_path_is_told_apart_from_a_missing_group(shop):
    shop.prefix = "/gitlab"  # GitLab served under /gitlab: its API is at <url>/gitlab/api/v4
    with pytest.raises(DiscoveryError) as info:
        fetch_inventory(cfg(shop), TOKEN, progress=None)
    message = str(info.value)
    assert message.startswith(f"{shop.url}/api/v4 is not GitLab's API (404 for the group's projects and for GET /version)")
    assert "set fleet:gitlab.apiUrl (or --api-url)" in message and "was not found" not in message
    assert len(fetch_inventory(cfg(shop, api_url=shop.url + "/gitlab"), TOKEN, progress=None).projects) == 34
    with pytest.raises(DiscoveryError) as info:
        fetch_inventory(cfg(shop, api_url=shop.url + "/gitlab", group="nope"), TOKEN, progress=None)
    assert str(info.value).startswith("GitLab group 'nope' was not found at") and "apiUrl" not in str(info.value)


def test_a_404_that_names_no_group_is_judged_by_get_version(shop):
    shop.faults.append(Fault(count=1, status=404))  # e.g. a proxy's bare 404 for the listing
    with pytest.raises(DiscoveryError, match=r"^GitLab group .shop. was not found at .*Reporter access\)\.$"):
        fetch_inventory(cfg(shop), TOKEN, progress=None)
    assert shop.requests[-1][0] == "/api/v4/version"
    shop.faults.append(Fault(count=2, status=404, path_contains="/api/v4/"))  # and GET /version: 404 too
    with pytest.raises(DiscoveryError, match=r"is not GitLab's API"):
        fetch_inventory(cfg(shop), TOKEN, progress=None)
    shop.faults.append(Fault(count=1, status=404))
    shop.faults.append(Fault(count=1, status=503, path_contains="/version"))
    with pytest.raises(DiscoveryError, match=r"was not found .* Or: .* is not GitLab's API"):
        fetch_inventory(cfg(shop, max_retries=0), TOKEN, progress=None)


@pytest.mark.parametrize("body", [{}, [], {"status": "ok"}])
def test_a_404_from_a_server_whose_version_answer_is_not_gitlabs_blames_the_api_address(shop, body):
    shop.version_body = body
    shop.faults.append(Fault(count=1, status=404))
    with pytest.raises(DiscoveryError, match=r"is not GitLab's API"):
        fetch_inventory(cfg(shop), TOKEN, progress=None)


def test_gitlabs_own_group_not_found_needs_no_second_request(shop):
    with pytest.raises(DiscoveryError, match=r"^GitLab group 'nope' was not found"):
        fetch_inventory(cfg(shop, group="nope"), TOKEN, progress=None)
    assert [path for path, _ in shop.requests] == ["/api/v4/groups/nope/projects"]


def test_the_request_gate_spaces_starts_so_no_second_holds_more_than_the_rate(monkeypatch):
    now = [100.0]
    starts: list[float] = []
    monkeypatch.setattr(gitlab_api, "pause", lambda s, cancel=None: now.__setitem__(0, now[0] + s))
    gate = gitlab_api.RequestGate(10, clock=lambda: now[0])
    cancel = __import__("threading").Event()
    for _ in range(45):
        gate.wait_turn(cancel)
        starts.append(now[0])
    assert busiest_second(starts) == 10
    assert starts[-1] - starts[0] < 4.7  # not much slower than the rate: 44 gaps of 1.05 x 0.1 s
    gate.hold(3.0)  # a 429: the next start waits it out
    before = now[0]
    gate.wait_turn(cancel)
    assert now[0] - before >= 3.0


def test_a_429_holds_requests_already_waiting_for_their_turn_and_a_longer_hold_holds_the_refused_one(monkeypatch):
    import threading
    now = [0.0]
    gate = gitlab_api.RequestGate(4, clock=lambda: now[0])
    cancel = threading.Event()

    def pause(seconds, cancel=None):
        if now[0] == 0.0 and seconds > 0:  # while the first waiting request sleeps, another request is refused
            gate.hold(5.0)
        now[0] += seconds
    monkeypatch.setattr(gitlab_api, "pause", pause)
    gate.wait_turn(cancel)  # the first request starts at once
    gate.wait_turn(cancel)  # the second waits for its turn (0.26 s); a 429 arrives meanwhile: it waits that out too
    assert now[0] == pytest.approx(5.0)
    mine = gate.hold(1.0)  # this request's own 429
    now[0] += 1.0  # ... which it waited out
    gate.wait_turn(cancel, waited_until=mine)
    assert now[0] == pytest.approx(6.0)  # not held twice by its own 429
    later = gate.hold(0.5)
    other = gate.hold(3.0)  # another request's longer 429 came meanwhile
    start = now[0]
    gate.wait_turn(cancel, waited_until=later)
    assert now[0] >= other and now[0] - start >= 3.0 - 1e-9


def test_the_listing_keeps_to_the_configured_request_rate(monkeypatch):
    sent: list[float] = []
    attempt = gitlab_api.GitLabAPI._attempt

    def timed(self, path, query):
        sent.append(time.monotonic())  # when the request leaves (the server sees it later, by however the OS delays it)
        return attempt(self, path, query)
    monkeypatch.setattr(gitlab_api.GitLabAPI, "_attempt", timed)
    with big_group(1500) as double:  # 15 pages: more than a second's worth at 8 requests per second
        inventory = fetch_inventory(cfg(double, group="big", max_requests_per_second=8, concurrency=8), TOKEN, progress=None)
        assert len(inventory.projects) == 1500
        assert len(sent) == len(double.requests) >= 15
        # The gate spaces starts 1.05 / 8 s apart; a thread descheduled between its turn and the send (a loaded test
        # machine) can shorten one gap by more than the 5% margin. Without the gate all would leave at once.
        assert busiest_second(sent) <= 8 + 1
        assert sent[-1] - sent[0] >= (len(sent) - 1) / 8


def test_a_429_holds_every_reader_not_only_the_one_refused():
    with big_group(2500) as double:
        refused: list[float] = []

        def refuse_one(request: int) -> None:
            if request == 6:  # the 7th listing request on is answered 429 with Retry-After: 1, once
                double.faults.append(Fault(count=1, status=429, retry_after="1"))
        double.on_listing = refuse_one
        original = double._send

        def noting(req, status, body, headers=None, content_type="application/json"):
            if status == 429:
                refused.append(time.monotonic())
            return original(req, status, body, headers, content_type)
        double._send = noting
        messages: list[str] = []
        inventory = fetch_inventory(cfg(double, group="big", concurrency=8), TOKEN, progress=messages.append)
        assert len(inventory.projects) == 2500 and len(refused) == 1
        assert any("HTTP 429" in m and "(all requests wait)" in m for m in messages)
        # Requests already under way arrive at once; after that nothing until the second is over.
        quiet = [t for t in double.arrivals if refused[0] + 0.3 < t < refused[0] + 0.95]
        assert quiet == []
        assert double.arrivals[-1] > refused[0] + 0.95


def test_a_failure_of_one_reader_stops_the_listing_with_its_error(monkeypatch):
    monkeypatch.setattr(gitlab_api, "pause", lambda s, cancel=None: None)
    with big_group(2500) as double:
        double.on_listing = lambda request: double.faults.append(Fault(count=100, status=503)) if request == 4 else None
        start = time.monotonic()
        with pytest.raises(DiscoveryError, match=r"failed while listing the projects of 'big' \(HTTP 503\) after 4 retries"):
            fetch_inventory(cfg(double, group="big", concurrency=8), TOKEN, progress=None)
        assert time.monotonic() - start < 10
        assert len(project_requests(double)) < 60  # the other readers stopped too


def test_ci_logs_get_lines_not_a_bar(tmp_path):
    """`python -m fleet inventory` in a CI job: stderr holds plain lines, never a terminal's escape codes."""
    import os
    import subprocess
    import sys
    with big_group(450) as double:
        stacks = tmp_path / "stacks"
        stacks.mkdir()
        (stacks / "Pulumi.ci.yaml").write_text(
            f'config:\n  fleet:accountId: "123456789012"\n  fleet:gitlab:\n    url: https://gitlab.example.com\n'
            f'    apiUrl: {double.url}\n    group: big\n')
        done = subprocess.run([sys.executable, "-m", "fleet", "inventory", "--stack", "ci", "--stacks-dir", str(stacks)],
                              env={**os.environ, "GITLAB_TOKEN": TOKEN, "CI": "true"}, capture_output=True, text=True,
                              timeout=60, check=False)
        assert done.returncode == 0, done.stderr
        assert "\x1b" not in done.stderr
        assert "discovered 450 projects of big" in done.stderr
        assert len(json.loads(done.stdout)["projects"]) == 450


def test_with_readers_the_newest_page_is_read_alongside_the_first_and_its_failure_counts_only_when_needed(shop, monkeypatch):
    monkeypatch.setattr(gitlab_api, "pause", lambda s, cancel=None: None)
    newest_fails = Fault(count=100, status=500, query={"sort": "desc"})
    shop.faults.append(newest_fails)
    # One page holds the group: the newest page is not needed, and its failure is not the listing's.
    assert len(fetch_inventory(cfg(shop, concurrency=8), TOKEN, progress=None).projects) == 34
    assert {q["sort"] for q in project_requests(shop)} == {"asc", "desc"}
    with big_group(450) as double:  # more pages: the newest page is needed, and its failure stops the listing
        double.faults.append(Fault(count=100, status=500, query={"sort": "desc"}))
        with pytest.raises(DiscoveryError, match=r"failed while listing the projects of 'big' \(HTTP 500\) after 4 retries"):
            fetch_inventory(cfg(double, group="big", concurrency=8), TOKEN, progress=None)


def test_a_group_of_one_page_does_not_wait_for_the_newest_pages_retries(shop):
    shop.faults.append(Fault(count=100, status=500, query={"sort": "desc"}))  # 1 + 2 + 4 + 8 s of backoff if waited for
    start = time.monotonic()
    assert len(fetch_inventory(cfg(shop, concurrency=8), TOKEN, progress=None).projects) == 34
    assert time.monotonic() - start < 5


def test_with_readers_the_first_pages_failure_is_the_one_reported(shop):
    shop.tokens = {"good"}
    with pytest.raises(DiscoveryError, match=r"rejected the token \(401 Unauthorized\)"):
        fetch_inventory(cfg(shop, concurrency=8), "bad", progress=None)
    assert len(project_requests(shop)) <= 2  # the newest page too, unless the first page's failure stopped it first


def test_never_more_requests_at_once_than_the_concurrency(monkeypatch):
    import threading
    in_flight, most = [0], [0]
    lock = threading.Lock()
    attempt = gitlab_api.GitLabAPI._attempt

    def counting(self, path, query):
        with lock:
            in_flight[0] += 1
            most[0] = max(most[0], in_flight[0])
        try:
            return attempt(self, path, query)
        finally:
            with lock:
                in_flight[0] -= 1
    monkeypatch.setattr(gitlab_api.GitLabAPI, "_attempt", counting)
    with big_group(3000) as double:
        double.latency = 0.05
        assert len(fetch_inventory(cfg(double, group="big", concurrency=4), TOKEN, progress=None).projects) == 3000
        assert most[0] == 4  # the readers, the newest page, the group and /version share 4 slots


def test_when_a_hold_ends_the_waiting_requests_keep_to_the_rate():
    """Real threads and clock: eight requests wait their turn at 4 a second when a 429 holds them for 2 s."""
    import threading
    gate = gitlab_api.RequestGate(4)
    cancel = threading.Event()
    starts: list[float] = []

    def request() -> None:
        gate.wait_turn(cancel)
        starts.append(time.monotonic())
    threads = [threading.Thread(target=request) for _ in range(8)]
    for thread in threads:
        thread.start()
    time.sleep(0.1)
    held = time.monotonic()
    gate.hold(2.0)
    for thread in threads:
        thread.join(timeout=30)
    assert len(starts) == 8 and busiest_second(starts) <= 4
    assert sum(1 for t in starts if t > held) >= 7 and all(t >= held + 2.0 - 0.01 for t in starts if t > held)


def test_a_refused_request_still_waits_for_a_longer_hold_set_before_its_own(monkeypatch):
    import threading
    now = [0.0]
    gate = gitlab_api.RequestGate(None, clock=lambda: now[0])
    monkeypatch.setattr(gitlab_api, "pause", lambda s, cancel=None: now.__setitem__(0, now[0] + s))
    gate.hold(10.0)  # another request's 429: everything waits until t=10
    now[0] = 0.5
    mine = gate.hold(1.0)  # this request's own 429, Retry-After 1
    now[0] += 1.0  # it waited that out
    gate.wait_turn(threading.Event(), waited_until=mine)
    assert now[0] == pytest.approx(10.0)


@pytest.mark.parametrize(("ids", "match"), [([5, 3], r"ignores id_after, id_before or sort"),
                                            ([5, "6"], r"listed a project without an integer id")])
def test_a_first_page_out_of_order_or_without_ids_is_refused(shop, monkeypatch, ids, match):
    page = gitlab_api.ProjectsPage([{"id": i, "path_with_namespace": f"shop/p{i}"} for i in ids], True, len(ids))
    monkeypatch.setattr(gitlab_api.GitLabAPI, "projects_page", lambda self, *a, **k: page)
    for concurrency in (1, 8):
        with pytest.raises(DiscoveryError, match=match):
            fetch_inventory(cfg(shop, concurrency=concurrency), TOKEN, progress=None)
