"""Command line: the offline plan and the project listing, wired from the functional core."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn, TypeVar

from .config import FleetConfig, account_problem, group_problem, is_numeric_id, normalise_url
from .discovery import fetch_inventory, resolve_token
from .errors import ConfigError, FleetError, UsageError
from .inventory import Inventory, dump_listing, is_project_path, load_inventory
from .spelling import spell
from .stacks import (
    DEFAULT_STACKS_DIR,
    StackFile,
    check_overlaps,
    config_target,
    display_path,
    list_stacks,
    other_targets,
    read_stack,
    region_of,
    stack_config,
    stack_path,
)
from .versions import PULUMI_VERSION

if TYPE_CHECKING:
    from . import operations

T = TypeVar("T")

EXIT_CODES = f"""exit codes:
  0   done
  1   an error while working: GitLab unreachable or refusing, an incomplete listing, a plan that
      cannot be made safely, overlapping stacks, an unreadable --inventory or --deployed file; the
      guard or a collision refusing; the Pulumi CLI missing or failing; a stack locked by another run
  2   drift found (drift; reconcile when it leaves the drift to a person): never an error
  {UsageError.exit_code}  usage: an unknown command, flag or stack, or a bad flag value (the message names the flag)
  {ConfigError.exit_code}  configuration: the stack file is invalid (each problem names the file and the key to edit), or a
      CI/CD variable --mr-note or --issue needs is missing (the message names it)"""


AUDIT_EXIT_CODES = f"""exit codes:
  0   clean: no role that trusts the issuer has a finding
  1   an error while working: GitLab or AWS unreachable or refusing, AWS credentials of another account than
      fleet:accountId, an incomplete listing, a plan that cannot be made safely, an unreadable --inventory file
  2   findings (each with its severity): never an error
  {UsageError.exit_code}  usage: an unknown command, flag or stack, or a bad flag value (the message names the flag)
  {ConfigError.exit_code}  configuration: the stack file is invalid (each problem names the file and the key to edit)"""


DRIFT_EXIT_CODES = EXIT_CODES.replace("  0   done", "  0   no drift")
RECONCILE_EXIT_CODES = EXIT_CODES.replace("  0   done", "  0   no drift, or drift reconciled by up")


class _Parser(argparse.ArgumentParser):
    """argparse, with usage errors on their own exit code (2 is `drift`'s "drift found")."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(UsageError.exit_code, f"{self.prog}: error: {message}\n")


def _checked(problem: Callable[[str], str | None]) -> Callable[[str], str]:
    """An argparse type that refuses a value with the same words as the stack file's validation."""
    def check(text: str) -> str:
        wrong = problem(text)
        if wrong:
            raise argparse.ArgumentTypeError(f"{json.dumps(text)} is not allowed; {wrong}")
        return text
    return check


def _stack_name(text: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", text) or text in (".", ".."):
        raise argparse.ArgumentTypeError(f"{json.dumps(text)} is not a stack name (letters, digits, '_', '.', '-'); "
                                         "the stack file is stacks/Pulumi.<NAME>.yaml")
    return text


def _api_url(text: str) -> str:
    url, wrong = normalise_url(text, issuer=False)
    if url is None:
        raise argparse.ArgumentTypeError(f"{json.dumps(text)} is not allowed; {wrong}")
    return url


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{json.dumps(text)} is not a number of seconds") from None
    if not 0 < value <= 600:
        raise argparse.ArgumentTypeError(f"{text} is not allowed; expected more than 0 and at most 600 seconds")
    return value


def _retries(text: str) -> int:
    if not text.isascii() or not text.isdigit() or int(text) > 10:
        raise argparse.ArgumentTypeError(f"{json.dumps(text)} is not allowed; expected a whole number from 0 to 10")
    return int(text)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--stack", required=True, type=_stack_name, help="stack name: reads stacks/Pulumi.<NAME>.yaml")
    parser.add_argument("--api-url", type=_api_url, help="GitLab API base to list projects from (overrides fleet:gitlab.apiUrl)")
    parser.add_argument("--group", type=_checked(group_problem), help="group full path or id (overrides fleet:gitlab.group; a what-if: the "
                                        "overlap check with other stacks is skipped)")
    parser.add_argument("--timeout", type=_positive_seconds, metavar="SECONDS",
                        help="seconds per GitLab request attempt (overrides fleet:gitlab.timeout, default 20)")
    parser.add_argument("--max-retries", type=_retries, metavar="N",
                        help="retries after a timeout, 429 or 5xx (overrides fleet:gitlab.maxRetries, default 4)")
    parser.add_argument("--stacks-dir", type=Path, default=DEFAULT_STACKS_DIR,
                        help=f"directory of the stack files (default: {DEFAULT_STACKS_DIR})")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m fleet", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="gitlab-aws-oidc-fleet: one keyless, least-privilege AWS role per GitLab project.",
        epilog="The GitLab token is read from GITLAB_TOKEN (the stack secret gitlab:token is read only by `pulumi up`).\n"
               "plan, inventory and policies touch no AWS; audit reads IAM; preview, drift, up and reconcile run the Pulumi CLI.\n\n"
               f"{EXIT_CODES}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    plan = commands.add_parser("plan", help="show what the stack would declare, offline (no AWS credentials)",
                               description="Compute exactly what `pulumi up` would declare for a stack, with no AWS access.",
                               epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter)
    _common(plan)
    plan.add_argument("--account-id", type=_checked(account_problem), help="AWS account id (overrides fleet:accountId)")
    plan.add_argument("--inventory", metavar="FILE", help="read a saved project listing instead of calling GitLab")
    plan.add_argument("--deployed", metavar="FILE",
                      help="the stack's outputs (`pulumi stack output --json > FILE`): role names already deployed "
                           "stay, as under `pulumi up`")
    plan.add_argument("--format", choices=("table", "json"), default="table", help="output format (default: table)")

    inventory = commands.add_parser("inventory", help="save the group's project listing as JSON on stdout",
                                    description="Print {\"group\": ..., \"projects\": [...]} as GitLab lists them, before any filtering.",
                                    epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter)
    _common(inventory)

    policies = commands.add_parser("policies", help="the policy library: list its entries, show one rendered",
                                   description="The policy library: the bundled entries and the stack's fleet:policies.libraries.",
                                   epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = policies.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="every entry: name, how it is attached, where it comes from, what it allows")
    show = actions.add_parser("show", help="one entry rendered for a project, and what the linter says of it")
    show.add_argument("name", metavar="NAME", help="the entry's name")
    show.add_argument("--project", required=True, metavar="PATH", help="the project's full path, e.g. acme/apps/cart")
    show.add_argument("--project-id", type=int, metavar="ID", help="the project's id, for ${project_id} (default: 0)")
    for sub in (listing, show):
        sub.add_argument("--stack", type=_stack_name, help="read the stack's fleet:policies.libraries, account, region and name")
        sub.add_argument("--stacks-dir", type=Path, default=DEFAULT_STACKS_DIR,
                         help=f"directory of the stack files (default: {DEFAULT_STACKS_DIR})")
    audit_parser = commands.add_parser(
        "audit", help="judge the account's IAM roles that trust the issuer: whom they admit, findings (exit 2 when found)",
        description="Read every IAM role of the stack's account whose trust names the issuer's OIDC provider (AWS credentials\n"
                    "from the environment, of fleet:accountId), evaluate it as IAM would against tokens of every project of\n"
                    "the group and of one outside it, and report whom it admits and what is wrong. Writes nothing.",
        epilog=AUDIT_EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter)
    _common(audit_parser)
    audit_parser.add_argument("--inventory", metavar="FILE", help="read a saved project listing instead of calling GitLab")
    audit_parser.add_argument("--format", choices=("table", "json"), default="table", help="output format (default: table)")
    _engine_commands(commands)
    return parser


def _max_deletes(text: str) -> int:
    if not text.isascii() or not text.isdigit() or int(text) > 10000:
        raise argparse.ArgumentTypeError(f"{json.dumps(text)} is not allowed; expected a whole number from 0 to 10000")
    return int(text)


ENGINE_NOTE = (f"These commands run the Pulumi CLI {PULUMI_VERSION} (on PATH) on the project in the current directory, with\n"
               "the state backend it is logged in to (PULUMI_BACKEND_URL) and the AWS credentials of the environment.")


def _engine_commands(commands: argparse._SubParsersAction[_Parser]) -> None:
    def add(name: str, help_text: str, description: str, codes: str = EXIT_CODES) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=f"{description}\n\n{ENGINE_NOTE}", epilog=codes,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
        sub.add_argument("--stack", required=True, type=_stack_name, help="stack name: reads stacks/Pulumi.<NAME>.yaml")
        sub.add_argument("--stacks-dir", type=Path, default=DEFAULT_STACKS_DIR,
                         help=f"directory of the stack files; the Pulumi project is its parent (default: {DEFAULT_STACKS_DIR})")
        return sub

    preview = add("preview", "preview the stack's changes as a Markdown report (optionally a merge-request note)",
                  "Refresh and preview the stack with Pulumi (nothing is written), and print a Markdown report of what would\n"
                  "change: a summary line, then per project its trust, policies and variables. Secret values are never shown.")
    preview.add_argument("--mr-note", action="store_true",
                         help="create or update this stack's one note on the merge request (CI_PROJECT_ID, CI_MERGE_REQUEST_IID, "
                              "token in FLEET_NOTE_TOKEN)")
    drift = add("drift", "detect drift: IAM or variables edited outside, fleet membership changed (exit 2 when found)",
                "A refresh in preview mode and a preview that expects no changes; writes nothing to the stack.",
                DRIFT_EXIT_CODES)
    drift.add_argument("--issue", action="store_true",
                       help="open, update, or close (when clean) this stack's one drift issue in the fleet repository "
                            "(CI_PROJECT_ID, token in FLEET_NOTE_TOKEN)")
    up = add("up", "refresh and update the stack, refusing past the blast-radius guard",
             "Refresh and preview; refuse before touching anything when the run would delete or replace more roles than\n"
             "allowed (fleet:guard.maxDeletes, default 5, and never more than 10% of the stack's roles), or every role;\n"
             "then ask (or need --yes) and update. With --new-only, only the projects created since the stack's last\n"
             "run get their role and variables (the short schedule's job); anything else waits for a full up.")
    up.add_argument("--max-deletes", type=_max_deletes, metavar="N",
                    help="allow this run to delete or replace up to N roles (replaces fleet:guard.maxDeletes and the 10%% cap)")
    up.add_argument("--yes", action="store_true", help="do not ask (needed when not on a terminal, e.g. in CI)")
    up.add_argument("--new-only", action="store_true",
                    help="only the projects created since the stack's last run: list the group newest first down to the "
                         "first project the stack knows, and update only their resources (Pulumi --target); never "
                         "deletes or replaces anything, and does not run Pulumi's preview when nothing is new")
    reconcile = add("reconcile", "the scheduled job: drift, then with fleet:reconcile auto an up under the same guard",
                    "Run drift; when drift is found and the stack's fleet:reconcile is auto, run up under the same guard\n"
                    "(as with --yes). With fleet:reconcile report (the default) drift is only reported.",
                    RECONCILE_EXIT_CODES)
    reconcile.add_argument("--issue", action="store_true", help="keep this stack's drift issue, as drift --issue does")


# The stack keys each flag overrides.
FLAGS = {"gitlab.apiUrl": "--api-url", "gitlab.group": "--group", "gitlab.timeout": "--timeout",
         "gitlab.maxRetries": "--max-retries", "accountId": "--account-id"}


def _overrides(args: argparse.Namespace) -> dict[str, object]:
    values = {"gitlab.apiUrl": args.api_url, "gitlab.timeout": args.timeout, "gitlab.maxRetries": args.max_retries,
              "gitlab.group": int(args.group) if args.group and is_numeric_id(args.group) else args.group,
              "accountId": getattr(args, "account_id", None)}
    return {key: value for key, value in values.items() if value is not None and value != ""}


def _list_group(config: FleetConfig) -> Inventory:
    """The group's listing from GitLab, with the token from GITLAB_TOKEN (refused before any request without one)."""
    return fetch_inventory(config.gitlab, resolve_token(os.environ.get("GITLAB_TOKEN")))


def _from_flag(flag: str, load: Callable[[str], T], value: str) -> T:
    """`load(value)`, its errors naming the flag that gave the value."""
    try:
        return load(value)
    except FleetError as err:
        raise type(err)(f"{flag}: {err}") from err


def _stack(args: argparse.Namespace) -> StackFile:
    if not args.stacks_dir.is_dir():
        raise UsageError(f"--stacks-dir: {display_path(args.stacks_dir)} is not a directory")
    if not stack_path(args.stacks_dir, args.stack).is_file():
        known = ", ".join(list_stacks(args.stacks_dir)) or "none"
        raise UsageError(f"--stack: no stack file {display_path(stack_path(args.stacks_dir, args.stack))} "
                         f"(stacks in {display_path(args.stacks_dir)}: {known})")
    return read_stack(args.stacks_dir, args.stack)


def _policies(args: argparse.Namespace) -> int:
    from .naming import helper_role_name, path_slug
    from .policy_library import RenderContext, library_for, unknown_names
    from .render import render_entry, render_library

    stack = _stack(args) if args.stack else None
    config = stack_config(stack) if stack else None
    library = library_for(config.policies.libraries if config else (), args.stacks_dir.parent)
    if args.action == "list":
        render_library(library, sys.stdout)
        return 0
    if args.name not in library:
        raise UsageError(f"NAME: {unknown_names([args.name], library)[0]}")
    if not is_project_path(args.project):
        raise UsageError(f"--project: {spell(args.project)} is not a GitLab project path such as acme/apps/cart")
    context = RenderContext(
        account_id=config.account_id if config else "123456789012", region=region_of(stack) if stack else "eu-west-1",
        partition="aws", stack=args.stack or "STACK", project_path=args.project, project_slug=path_slug(args.project),
        project_id=str(args.project_id or 0), role_name=helper_role_name(args.project))
    render_entry(library[args.name], context, sys.stdout)
    return 0


def _engine(args: argparse.Namespace, context: operations.Context | None = None) -> int:
    from . import operations  # the Pulumi SDK loads only for the commands that run Pulumi

    config = stack_config(_stack(args))  # a bad stack file is refused before Pulumi runs
    ctx = context or operations.Context(project_dir=args.stacks_dir.resolve().parent, env=os.environ, out=sys.stdout,
                                        interactive=sys.stdin.isatty() and sys.stderr.isatty() and not os.environ.get("CI"))
    if args.command == "preview":
        return operations.preview(ctx, args.stack, mr_note=args.mr_note)
    if args.command == "drift":
        return operations.drift(ctx, args.stack, issue=args.issue)
    if args.command == "up":
        return operations.up(ctx, config, args.stack, max_deletes=args.max_deletes, yes=args.yes, new_only=args.new_only)
    return operations.reconcile(ctx, config, args.stack, issue=args.issue)


def _listing_for_plan(args: argparse.Namespace, config: FleetConfig) -> Inventory:
    """The listing `plan` and `audit` plan from: a saved one (checked to be the stack's group), else GitLab's."""
    from .selection import check_group

    listing = _from_flag("--inventory", load_inventory, args.inventory) if args.inventory else _list_group(config)
    if args.inventory:  # a saved listing can be of any group
        _from_flag("--inventory", lambda _: check_group(config, listing, "--group" if args.group else "fleet:gitlab.group"), args.inventory)
    return listing


def _audit(args: argparse.Namespace, stack: StackFile, config: FleetConfig) -> int:
    """`audit`: the plan from the listing (as `plan` makes it), the account's roles, the report; 2 when it has findings."""
    from . import audit  # boto3 loads only for the audit
    from .planner import build_plan
    from .policies import stack_library
    from .render import render_audit_json, render_audit_table

    library = stack_library(config.policies, args.stacks_dir.parent)
    listing = _listing_for_plan(args, config)
    plan = build_plan(config, listing, args.stack, library=library, region=region_of(stack))
    iam, sts = audit.connect(region_of(stack))
    account = audit.read_account(iam, sts, issuer=config.issuer, expected_account=config.account_id)
    report = audit.run_audit(plan, listing.projects, account)
    if args.format == "json":
        render_audit_json(report, sys.stdout)
    else:
        render_audit_table(report, sys.stdout)
    return 0 if report.clean else 2


def run(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "policies":
        return _policies(args)
    if args.command in ("preview", "drift", "up", "reconcile"):
        return _engine(args)
    stack = _stack(args)
    overrides = _overrides(args)
    config = stack_config(stack, overrides, {key: FLAGS[key] for key in overrides})
    if args.command == "audit":
        return _audit(args, stack, config)
    if args.command == "inventory":
        inventory = _list_group(config)
        dump_listing(inventory.raw, sys.stdout)
        return 0
    return _plan(args, stack, config)


def _plan(args: argparse.Namespace, stack: StackFile, config: FleetConfig) -> int:
    """`plan`: the listing (GitLab's, or a saved one), the plan, the checks GitLab answers, the table or JSON."""
    from .adoption import plan_checks
    from .deployed import load_deployed
    from .planner import build_plan
    from .policies import stack_library
    from .render import render_json, render_table

    others = other_targets(args.stacks_dir, args.stack)
    library = stack_library(config.policies, args.stacks_dir.parent)
    listing = _listing_for_plan(args, config)
    deployed = _from_flag("--deployed", lambda path: load_deployed(path, listing.projects), args.deployed) if args.deployed else None
    plan = build_plan(config, listing, args.stack, deployed, library=library, region=region_of(stack),
                      restoring=deployed.sub_claims if deployed else None)
    if deployed is None:
        print("note: role names assume the stack holds no roles yet; for a deployed stack, pass --deployed FILE "
              "(pulumi stack output --json) to see the names pulumi up keeps", file=sys.stderr)
    if args.group:
        print("note: --group plans a what-if; the overlap check with other stacks is skipped", file=sys.stderr)
    else:
        check_overlaps(config_target(args.stack, config), others, listing, (p.id for p in plan.projects))
    token = None if args.inventory else resolve_token(os.environ.get("GITLAB_TOKEN"))
    for note in plan_checks(config, plan, deployed, token, args.stacks_dir):
        print(f"note: {note}", file=sys.stderr)
    if args.format == "json":
        render_json(plan, sys.stdout)
        for warning in plan.all_warnings:  # in the JSON too; here for a person watching the run
            print(f"warning: {warning}", file=sys.stderr)
    else:
        render_table(plan, sys.stdout)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return run(argv)
    except FleetError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    except BrokenPipeError:  # the reader went away (`... | head`): stop quietly, as the Python docs advise
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
