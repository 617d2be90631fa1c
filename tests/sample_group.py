"""The bundled sample group `shop`, served by the GitLab double and saved as samples/shop.inventory.json.

Regenerate the saved listing with: `python -m tests.sample_group` (it runs `fleet inventory`
against the double, so the file is exactly what the command saves).
"""

from __future__ import annotations

from typing import Any

from tests.gitlab_double import make_group, make_project

LONG = "shop/platform/tools/an-extraordinarily-long-project-name-for-the-terraform-state"


def build_shop() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    groups = [make_group(10, "shop"), make_group(11, "shop/platform", 10), make_group(12, "shop/platform/tools", 11),
              make_group(13, "shop/web", 10), make_group(14, "shop/sandbox", 10), make_group(15, "shop/data", 10),
              make_group(16, "shop/mobile", 10),
              make_group(20, "shop-legacy"), make_group(21, "shopping")]
    g = {x["full_path"]: x for x in groups}
    p = lambda *a, **k: make_project(*a, groups, **k)  # noqa: E731
    projects = [
        p(101, "shop/cart"),
        p(102, "shop/cart-v2"),
        p(103, "shop/Checkout", topics=["payments"]),
        p(104, "shop/api_gateway"),
        p(105, "shop/api-gateway"),          # same helper name as 104: gets a suffix
        p(106, "shop/web-ui"),
        p(107, "shop/web/ui"),               # same helper name as 106: gets a suffix
        p(108, "shop/platform/terraform-modules", default_branch="master"),
        p(109, LONG + "-eu"),
        p(110, LONG + "-us"),                # equal to 109 in the first 57 slug characters
        p(111, "shop/legacy-billing", archived=True),
        p(112, "shop/old-reports", pending_deletion=True),
        p(113, "shop/sandbox/experiment-1"),
        p(114, "shop/sandbox/experiment-2"),
        p(115, "shop-legacy/cart", shared_with=[g["shop"]]),       # shared in from a look-alike group
        p(116, "shopping/cart", shared_with=[g["shop"]]),
        p(117, "shop/empty-repo", default_branch=None),
        p(118, "shop/platform/k8s-clusters"),
        p(119, "shop/platform/observability"),
        p(120, "shop/platform/dns"),
        p(121, "shop/platform/tools/ci-images"),
        p(122, "shop/web/storefront", topics=["frontend"]),
        p(123, "shop/web/admin", topics=["frontend"]),
        p(124, "shop/web/search"),
        p(125, "shop/data/etl", topics=["data"]),
        p(126, "shop/data/warehouse", topics=["data"]),
        p(127, "shop/data/ml-features", default_branch="develop", topics=["data"]),
        p(128, "shop/mobile/ios"),
        p(129, "shop/mobile/android"),
        p(130, "shop/payments"),
        p(131, "shop/Payments.Service"),
        p(132, "shop/inventory", topics=["aws:ecr-push"]),      # self-service: an allowed entry
        p(133, "shop/notifications", archived=True),
        p(134, "shop/docs", topics=["docs", "aws:secrets-read"]),  # self-service outside the allowlist: reported
        p(135, "shop/web/design-system", topics=["frontend"]),
        p(136, "shop/platform/networking"),
    ]
    return groups, projects


def write_sample(path: str = "samples/shop.inventory.json") -> None:
    """Save the sample listing through fleet's own discovery against the double.

    It is listed with shared-in projects included (as `includeShared: true` would), so that the
    demo plan shows how they are skipped.
    """
    import dataclasses
    import json
    from pathlib import Path

    from fleet.discovery import fetch_inventory
    from fleet.stacks import DEFAULT_STACKS_DIR, read_stack, stack_config
    from tests.gitlab_double import GitLabDouble

    groups, projects = build_shop()
    config = stack_config(read_stack(DEFAULT_STACKS_DIR, "demo")).gitlab
    with GitLabDouble(groups=groups, projects=projects) as double:
        gitlab = dataclasses.replace(config, api_url=double.url, include_shared=True)
        inventory = fetch_inventory(gitlab, "sample-token", progress=None)
    Path(path).write_text(json.dumps(inventory.raw, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    write_sample()
