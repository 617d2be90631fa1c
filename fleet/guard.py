"""The blast-radius guard of `up`: how many roles one run may delete or replace, and the refusal when it would do more.

A role deleted wrongly locks a project's pipelines out of AWS, so a run that would delete or replace more roles
than `fleet:guard.maxDeletes` (default 5), or more than 10% of the stack's roles, stops before anything changes.
An operator who means it says so with `--max-deletes N`, which replaces both limits for that run. A run that would
leave a stack holding roles with none at all (an empty listing) is refused whatever the limits.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from .errors import FleetError

SHARE = 10  # percent of the stack's roles one run may delete or replace
ENV = "FLEET_GUARD_MAX_DELETES"  # how many the command line allowed, for the program's own check during `up`


class GuardError(FleetError):
    """The run would delete or replace more roles than the guard allows; nothing was changed."""


@dataclass(frozen=True)
class RoleStep:
    """What a run does to one role: `op` is create, update, same, delete or replace."""

    role: str  # the role's name (or, when unknown, its logical name)
    project: str  # the project's path, or its id when the path is unknown
    op: str


def allowed(max_deletes: int, roles: int, *, explicit: bool) -> int:
    """The most roles one run may delete or replace in a stack holding `roles`."""
    return max_deletes if explicit else min(max_deletes, roles * SHARE // 100)


def check(steps: Iterable[RoleStep], *, stack: str, max_deletes: int, explicit: bool, provider_op: str | None = None) -> None:
    """Refuse (GuardError, listing the roles) when the steps delete or replace more roles than allowed.

    `provider_op` "delete" or "replace": the run deletes or replaces the OIDC provider every role trusts, which
    locks out every role the stack holds (and any role elsewhere that trusts it): it counts as replacing them all.
    """
    steps = list(steps)
    if provider_op in ("delete", "replace"):
        steps = [s if s.op in ("create", "delete", "replace") else RoleStep(s.role, s.project, "replace") for s in steps]
        if not explicit or max_deletes < sum(1 for s in steps if s.op != "create"):
            raise GuardError(f"stack {stack}: this run would {provider_op} the account's GitLab OIDC provider, which every "
                             f"role of the stack trusts ({sum(1 for s in steps if s.op != 'create')} roles, and any "
                             "other role that trusts it): their pipelines lose AWS access. Nothing was changed. Check "
                             "fleet:gitlab.url and fleet:oidc; if it is intended, run again with --max-deletes set to "
                             "at least the number of roles.")
    before = [s for s in steps if s.op != "create"]
    doomed = sorted((s for s in steps if s.op in ("delete", "replace")), key=lambda s: (s.project, s.role))
    after = [s for s in steps if s.op != "delete"]
    listing = "; ".join(f"{s.op} {s.role} ({s.project})" for s in doomed)
    if before and not after:
        raise GuardError(f"stack {stack} holds {len(before)} roles and this run would delete every one ({listing}): the "
                         "GitLab listing found no project to keep. Nothing was changed. Check fleet:gitlab.group, the "
                         "token's access and the exclusions; to remove the fleet on purpose, run `pulumi destroy`.")
    limit = allowed(max_deletes, len(before), explicit=explicit)
    if len(doomed) > limit:
        why = (f"--max-deletes {max_deletes}" if explicit else
               f"fleet:guard.maxDeletes {max_deletes} and {SHARE}% of the stack's {len(before)} roles allow {limit}")
        raise GuardError(f"stack {stack}: this run would delete or replace {len(doomed)} roles, more than allowed ({why}): "
                         f"{listing}. Nothing was changed. Pipelines of those projects lose AWS access until their new "
                         f"roles exist; if that is intended, run again with --max-deletes {len(doomed)}.")


def program_limit(env: Mapping[str, str] = os.environ) -> int | None:
    """The limit the command line gave the program (None when `pulumi up` runs by hand)."""
    value = env.get(ENV)
    if value is None:
        return None
    if not value.isascii() or not value.isdigit():
        raise GuardError(f"{ENV}={value!r} is not a whole number; it is set by `python -m fleet up`.")
    return int(value)


def check_names(deployed: Mapping[int, str], planned: Mapping[int, str], *, stack: str, max_deletes: int,
                explicit: bool, reserved: Iterable[str] = (), all_replaced: bool = False) -> None:
    """The program's own check in `up`, from the names it holds and plans: it cannot be outrun by a listing that
    changed since the preview the command line guarded. `reserved`: names of roles the stack holds for projects
    the listing no longer shows (they go); `all_replaced`: a stack-wide setting (the role path) replaces every role."""
    steps = [RoleStep(name, str(pid), "delete" if pid not in planned else
                      "replace" if all_replaced or planned[pid].casefold() != name.casefold() else "same")
             for pid, name in deployed.items()]
    planned_names = {name.casefold() for name in planned.values()}
    steps += [RoleStep(name, "a project the listing no longer shows", "delete")
              for name in sorted(reserved) if name.casefold() not in planned_names]
    steps += [RoleStep(name, str(pid), "create") for pid, name in planned.items() if pid not in deployed]
    check(steps, stack=stack, max_deletes=max_deletes, explicit=explicit)
