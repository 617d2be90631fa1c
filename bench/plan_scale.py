"""Planning cost as the fleet grows: prints per-project time ratios measured in one run.

    .venv/bin/python bench/plan_scale.py

A ratio near 1.0 between sizes means planning stays linear (names, trust, selection). Each size is
measured with CPython's garbage collector on (as users run it) and off (the planning code alone).
Measured 2026-11-23: GC on 1.83x at 10k and 2.29x at 20k (1.5 s for 20k projects); GC off 1.01x and 0.99x.
"""

from __future__ import annotations

import dataclasses
import gc
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fleet.config import QuotasConfig  # noqa: E402
from fleet.inventory import parse_inventory  # noqa: E402
from fleet.planner import build_plan  # noqa: E402
from tests.gitlab_double import make_group, make_project  # noqa: E402
from tests.helpers import make_config  # noqa: E402


def listing(n: int) -> dict:
    groups = [make_group(1, "shop")] + [make_group(2 + i, f"shop/team-{i}", 1) for i in range(50)]
    projects = [make_project(10_000 + i, f"shop/team-{i % 50}/{'svc' if i % 7 else 'svc_'}-{i // 7}", groups,
                             archived=i % 97 == 0) for i in range(n)]
    return {"group": {"id": 1, "full_path": "shop"}, "projects": projects}


def per_project(n: int, config) -> float:
    data = listing(n)
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        build_plan(config, parse_inventory(data), "bench")
        best = min(best, time.perf_counter() - start)
    return best / n


def main() -> None:
    config = make_config(trust={"refs": ["branch:{default_branch}", "branch:release/*", "tag:v*"]})
    # IAM allows at most 5,000 roles per account; planning cost is measured past it (the quota check is O(1)).
    config = dataclasses.replace(config, quotas=QuotasConfig(roles_per_account=10**6))
    sizes = (1_000, 10_000, 20_000)
    for label, collect in (("GC on ", True), ("GC off", False)):
        (gc.enable if collect else gc.disable)()
        costs = {n: per_project(n, config) for n in sizes}
        for n in sizes:
            print(f"{label} {n:>6} projects: per-project cost {costs[n] / costs[sizes[0]]:.2f}x that at {sizes[0]} "
                  f"({costs[n] * n:.2f} s in all)")
    gc.enable()


if __name__ == "__main__":
    main()
