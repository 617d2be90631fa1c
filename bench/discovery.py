"""Discovery of a large group, against the GitLab API double: figures and ratios measured in one run.

    make bench-discovery        (or, once `make test` has set up .venv: .venv/bin/python bench/discovery.py)

The double (tests/gitlab_double.py) serves 10,000 projects in 200 nested subgroups, ids in bursts and gaps as a
real group's are, answering every request after 50 ms (a distant GitLab). It runs in this process; everything
measured runs in its own Python process, as a user runs it. Printed:

- our discovery (fleet.discovery.fetch_inventory, default fleet:gitlab.concurrency): requests, wall time, the floor
  (listing pages x latency / workers) and our time / floor;
- end to end, process start included: `python -m fleet inventory` against python-gitlab's plain
  `group.projects.list(get_all=True, include_subgroups=True)` (one request at a time, 20 per page);
- a run limited to fleet:gitlab.maxRequestsPerSecond: its floor (pages / rate) and the most requests that
  arrived in any one second (sliding), which must not exceed the rate.

The last line is for scripts: `discovery floor_ratio=… speedup_vs_plain=… requests=…`.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.gitlab_double import GitLabDouble, busiest_second, make_group, make_project  # noqa: E402

TOKEN = "glpat-bench"
PER_PAGE = 100



def group_tree(subgroups: int) -> list[dict[str, Any]]:
    """The group `big` and `subgroups` nested below it: 20 top-level teams, the rest one level further down."""
    groups = [make_group(1, "big")]
    teams = min(20, subgroups)
    for t in range(teams):
        groups.append(make_group(2 + t, f"big/team-{t}", 1))
    for n in range(subgroups - teams):
        parent = groups[1 + n % teams]
        groups.append(make_group(2 + teams + n, f"{parent['full_path']}/squad-{n}", parent["id"]))
    return groups


def project_ids(n: int, seed: int) -> list[int]:
    """Ascending ids as an instance hands them out to one group among many: bursts, neighbours and long gaps."""
    rng = random.Random(seed)
    ids, current = [], 1_000_000
    while len(ids) < n:
        current += rng.choice([1, 1, 2, 3, 7, rng.randint(20, 400), rng.randint(1_000, 50_000)])
        ids.append(current)
    return ids


def make_double(projects: int, subgroups: int, latency: float, fields: int = 0) -> GitLabDouble:
    groups = group_tree(subgroups)
    listed = []
    for n, project_id in enumerate(project_ids(projects, seed=7)):
        project = make_project(project_id, f"{groups[1 + n % subgroups]['full_path']}/service-{n}", groups)
        project.update({f"field_{f}": "enabled" if f % 3 else None for f in range(fields)})
        listed.append(project)
    return GitLabDouble(groups=groups, projects=listed, latency=latency, static=True, keep_alive=True)


def python(code: str, env: dict[str, str]) -> tuple[float, str]:
    """Run `code` in a new Python process: (seconds from start to exit, its stdout)."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    if done.returncode:
        sys.exit(f"bench: a measured process failed:\n{done.stderr[-3000:]}")
    return elapsed, done.stdout


def our_discovery(url: str, env: dict[str, str], **settings: Any) -> dict[str, Any]:
    """fetch_inventory in its own process, timed inside it (imports excluded)."""
    code = f"""
import json, time
from fleet.config import GitLabConfig
from fleet.discovery import fetch_inventory
config = GitLabConfig(url="https://gitlab.example.com", api_url={url!r}, group="big", **{settings!r})
start = time.perf_counter()
inventory = fetch_inventory(config, {TOKEN!r}, progress=None)
print(json.dumps({{"seconds": time.perf_counter() - start, "projects": len(inventory.projects),
                  "concurrency": config.concurrency}}))
"""
    return json.loads(python(code, env)[1])


def end_to_end(stacks: Path, env: dict[str, str]) -> float:
    """`python -m fleet inventory` from process start to exit."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "fleet", "inventory", "--stack", "bench", "--stacks-dir", str(stacks)],
                          cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=False)
    elapsed = time.perf_counter() - start
    if done.returncode:
        sys.exit(f"bench: python -m fleet inventory failed:\n{done.stderr[-3000:]}")
    return elapsed


def plain(url: str, env: dict[str, str]) -> tuple[float, int]:
    code = f"""
import gitlab
gl = gitlab.Gitlab({url!r}, private_token={TOKEN!r})
print(len(gl.groups.get("big").projects.list(get_all=True, include_subgroups=True)))
"""
    elapsed, out = python(code, env)
    return elapsed, int(out)


def listing_requests(double: GitLabDouble, since: int) -> int:
    return sum(1 for path, _ in double.requests[since:] if path.endswith("/projects"))


def write_stack(directory: Path, url: str) -> None:
    (directory / "Pulumi.bench.yaml").write_text(
        "config:\n"
        '  fleet:accountId: "123456789012"\n'
        "  fleet:gitlab:\n"
        "    url: https://gitlab.example.com\n"
        f"    apiUrl: {url}\n"
        "    group: big\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--projects", type=int, default=10_000)
    parser.add_argument("--subgroups", type=int, default=200)
    parser.add_argument("--latency", type=float, default=0.05, help="seconds before each answer (default 0.05)")
    parser.add_argument("--rate", type=float, default=20.0, help="requests per second for the limited run (default 20)")
    parser.add_argument("--fields", type=int, default=0,
                        help="fields to add to each project (GitLab's own answers carry ~60 more than the double's; default 0)")
    parser.add_argument("--runs", type=int, default=3, help="runs of ours; the median is reported (default 3)")
    parser.add_argument("--skip-plain", action="store_true", help="do not time the plain python-gitlab call")
    args = parser.parse_args()
    env = {**os.environ, "GITLAB_TOKEN": TOKEN, "PYTHONPATH": str(ROOT)}
    env.pop("CI", None)

    print(f"building the double: {args.projects:,} projects in {args.subgroups} subgroups, "
          f"{args.latency * 1000:.0f} ms per request", flush=True)
    with make_double(args.projects, args.subgroups, args.latency, args.fields) as double, tempfile.TemporaryDirectory() as tmp:
        stacks = Path(tmp)
        write_stack(stacks, double.url)
        pages = math.ceil(args.projects / PER_PAGE)

        our_discovery(double.url, env)  # once untimed: the double builds its index and encodes each project
        runs, requests = [], []
        for _ in range(args.runs):
            before = len(double.requests)
            result = our_discovery(double.url, env)
            assert result["projects"] == args.projects, result
            runs.append(result["seconds"])
            requests.append(listing_requests(double, before))
        workers = result["concurrency"]
        ours = statistics.median(runs)
        floor = pages * args.latency / workers
        print(f"ours: {requests[-1]} listing requests (+ the group and /version), {ours:.2f} s "
              f"(median of {args.runs}: {', '.join(f'{r:.2f}' for r in runs)}); floor {pages} pages x "
              f"{args.latency * 1000:.0f} ms / {workers} workers = {floor:.2f} s; ratio {ours / floor:.2f} (target <= 1.5)",
              flush=True)

        ends = [end_to_end(stacks, env) for _ in range(args.runs)]
        ours_e2e = statistics.median(ends)
        print(f"end to end, python -m fleet inventory: {ours_e2e:.2f} s (median of {args.runs}, process start included)",
              flush=True)
        speedup = float("nan")
        if not args.skip_plain:
            before = len(double.requests)
            plain_s, count = plain(double.url, env)
            assert count == args.projects, count
            speedup = plain_s / ours_e2e
            print(f"plain python-gitlab group.projects.list(get_all=True, include_subgroups=True): {plain_s:.2f} s, "
                  f"{listing_requests(double, before)} requests; ours is {speedup:.1f}x faster (target >= 20)", flush=True)

        before_times = len(double.arrivals)
        before = len(double.requests)
        limited = our_discovery(double.url, env, max_requests_per_second=args.rate)
        busiest = busiest_second(double.arrivals[before_times:])
        limited_floor = max(pages / args.rate, floor)
        print(f"limited to {args.rate:g} requests/s: {listing_requests(double, before)} listing requests, "
              f"{limited['seconds']:.2f} s, floor {limited_floor:.2f} s, ratio {limited['seconds'] / limited_floor:.2f}; "
              f"busiest second {busiest} requests (must be <= {args.rate:g})", flush=True)
        if busiest > args.rate:
            print("RATE EXCEEDED", flush=True)
    print(f"discovery floor_ratio={ours / floor:.2f} speedup_vs_plain={speedup:.1f} requests={requests[-1]}")


if __name__ == "__main__":
    main()
