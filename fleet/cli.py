"""Command line: the offline plan and the project listing, wired from the functional core."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

from .discovery import fetch_inventory, gitlab_token
from .errors import FleetError
from .inventory import Inventory, load_inventory
from .plan import build_plan
from .render import render_json, render_table
from .stacks import DEFAULT_STACKS_DIR, check_conflicts, file_target, read_stack, stack_config


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--stack", required=True, help="stack name: reads stacks/Pulumi.<NAME>.yaml")
    parser.add_argument("--api-url", help="GitLab API base to list projects from (overrides fleet:gitlab.apiUrl)")
    parser.add_argument("--group", help="group full path or id (overrides fleet:gitlab.group)")
    parser.add_argument("--stacks-dir", type=Path, default=DEFAULT_STACKS_DIR,
                        help=f"directory of the stack files (default: {DEFAULT_STACKS_DIR})")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m fleet",
        description="gitlab-aws-oidc-fleet: one keyless, least-privilege AWS role per GitLab project.",
        epilog="The GitLab token is read from GITLAB_TOKEN. Nothing here touches AWS.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    plan = commands.add_parser("plan", help="show what the stack would declare, offline (no AWS credentials)",
                               description="Compute exactly what `pulumi up` would declare for a stack, with no AWS access.")
    _common(plan)
    plan.add_argument("--account-id", help="AWS account id (overrides fleet:accountId)")
    plan.add_argument("--inventory", metavar="FILE", help="read a saved project listing instead of calling GitLab")
    plan.add_argument("--format", choices=("table", "json"), default="table", help="output format (default: table)")

    inventory = commands.add_parser("inventory", help="save the group's project listing as JSON on stdout",
                                    description="Print {\"group\": ..., \"projects\": [...]} as GitLab lists them, before any filtering.")
    _common(inventory)
    return parser


def _overrides(args: argparse.Namespace) -> dict[str, object]:
    overrides: dict[str, object] = {}
    if args.api_url:
        overrides["gitlab.apiUrl"] = args.api_url
    if args.group:
        overrides["gitlab.group"] = int(args.group) if args.group.isdigit() else args.group
    if getattr(args, "account_id", None):
        overrides["accountId"] = args.account_id
    return overrides


def run(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    stack = read_stack(args.stacks_dir, args.stack)
    config = stack_config(stack, _overrides(args))
    if args.command == "inventory":
        inventory = fetch_inventory(config.gitlab, gitlab_token())
        json.dump(inventory.raw, sys.stdout, indent=1)
        sys.stdout.write("\n")
        return 0
    check_conflicts(args.stacks_dir, args.stack, file_target(stack))
    listing: Inventory = load_inventory(args.inventory) if args.inventory else fetch_inventory(config.gitlab, gitlab_token())
    plan = build_plan(config, listing, args.stack)
    (render_json if args.format == "json" else render_table)(plan, sys.stdout)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return run(argv)
    except FleetError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
