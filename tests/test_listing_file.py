"""The saved listing (`python -m fleet inventory > FILE`): read back as it was, one project per line."""

from __future__ import annotations

import io
import json

from fleet.inventory import dump_listing, parse_inventory
from tests.gitlab_double import make_group, make_project


def test_a_saved_listing_reads_back_the_same_with_one_project_per_line():
    groups = [make_group(1, "shop"), make_group(2, "shop/sub", 1)]
    raw = {"group": {"id": 1, "full_path": "shop"}, "gitlab_version": "18.7.0", "note": "café",
           "projects": [make_project(10 + n, f"shop/{'sub/' if n % 2 else ''}p-{n}", groups) for n in range(5)]}
    out = io.StringIO()
    dump_listing(raw, out)
    text = out.getvalue()
    assert json.loads(text) == raw
    assert parse_inventory(json.loads(text)).projects == parse_inventory(raw).projects
    lines = text.splitlines()
    assert len(lines) == 2 + len(raw["projects"]) and all(line.lstrip('{"').startswith("id") for line in lines[1:-1])


def test_an_empty_listing_and_a_listing_without_other_keys():
    for raw in ({"group": {"id": 1, "full_path": "shop"}, "projects": []}, {"projects": []}):
        out = io.StringIO()
        dump_listing(raw, out)
        assert json.loads(out.getvalue()) == raw
