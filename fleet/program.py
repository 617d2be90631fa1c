"""The Pulumi program: stack config -> discovery -> plan -> resources, and the stack outputs.

The same functions as `python -m fleet plan` read the config and make the plan; only where the
config comes from (Pulumi's strings instead of the stack file) and declaring resources differ.
Every check runs before the first resource is declared, so a refusal leaves nothing half-applied.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_gitlab as gitlab
from pulumi.runtime import config as runtime_config
from pulumi.runtime.sync_await import _sync_await

from . import adoption as adopting
from . import guard
from .adoption import Adoption
from .config import FleetConfig, parse_config
from .deployed import OUTPUT as ROLE_NAMES_OUTPUT
from .deployed import POLICIES_OUTPUT, ROLES_OUTPUT, SUB_CLAIMS_OUTPUT, Deployed, deployed_names
from .discovery import fetch_inventory, open_api, resolve_token
from .errors import ConfigError, FleetError
from .onboarding import COUNTS_OUTPUT, NEW_ONLY_ENV, SKIPPED_OUTPUT, new_only_ids, outputs_of_targeted_run
from .plan import MANAGED_BY, Plan
from .planner import build_plan
from .policies import stack_library
from .resources import declare
from .spelling import spell
from .stacks import DEFAULT_STACKS_DIR, check_overlaps, config_target, display_path, fleet_values, other_targets, stack_path
from .trust import provider_arn


def config_from_pulumi() -> FleetConfig:
    """The `fleet:*` config of the running stack, decoded and validated exactly as `plan` reads a stack file.

    The SDK has no public way to list config keys; `CONFIG` and the config environment are where it keeps them.
    """
    keys = {*runtime_config.CONFIG.get(), *runtime_config.get_config_env()}
    strings = {key: value for key in keys if key.startswith("fleet:") and (value := runtime_config.get_config(key)) is not None}
    secret = [key for key in strings if runtime_config.is_config_secret(key)]
    try:
        return parse_config(fleet_values(strings, secret))
    except ConfigError as err:
        raise err.in_file(display_path(stack_path(DEFAULT_STACKS_DIR, pulumi.get_stack()))) from err


def gitlab_token() -> str:
    """The one token for listing and for the GitLab provider: GITLAB_TOKEN or the stack secret gitlab:token."""
    return resolve_token(os.environ.get("GITLAB_TOKEN"), pulumi.Config("gitlab").get("token"), secret_offered=True)


def check_account(config: FleetConfig) -> None:
    """`pulumi up` must run with credentials of the stack's own account, in the aws partition."""
    identity = aws.get_caller_identity()
    if identity.account_id != config.account_id:
        raise FleetError(f"fleet:accountId is {config.account_id}, but the AWS credentials are for account "
                         f"{identity.account_id}: select the right AWS profile or fix fleet:accountId.")
    if not identity.arn.startswith("arn:aws:"):
        raise FleetError(f"the AWS credentials are in another partition ({identity.arn}): only the aws partition is supported.")


def check_used_provider(config: FleetConfig) -> None:
    """A provider the stack uses without creating it (fleet:oidc.providerArn, or shard 0's for the other shards)
    must exist, must not be one this stack created (the next up would delete it), and must accept the audience,
    or every pipeline's assume would fail."""
    shard, arn = config.shard, config.oidc.provider_arn
    if arn is not None:
        setting = "fleet:oidc.providerArn"
        missing = f"{setting} {arn} cannot be read in account {config.account_id}: it holds no such OIDC provider."
        own = (f"{setting} {arn} is the provider this stack created: naming it there would make the next up delete it, "
               f"and every role trusting it would stop working. Remove {setting} from the stack file.")
        deaf = "add it to the provider, or set fleet:oidc.audience to one it lists."
        which = f"the OIDC provider {arn} ({setting})"
    elif shard is not None and not shard.owns_provider:
        arn = provider_arn(config.account_id, config.issuer)
        missing = (f"this stack is shard {shard.index} of {shard.count} (fleet:shard), which uses the OIDC provider "
                   f"shard 0 creates, and account {config.account_id} holds no {arn} yet: run shard 0 first.")
        own = (f"stack {pulumi.get_stack()} created the OIDC provider {arn}, and as shard {shard.index} of {shard.count} "
               "(fleet:shard) it would delete it, and with it the trust of every shard's roles: make this stack shard 0, "
               "or keep it unsharded. Nothing was changed.")
        deaf = "give every shard of the group the same fleet:oidc.audience."
        which = f"the OIDC provider {arn}, which shard 0 manages,"
    else:
        return  # the stack creates the provider itself
    found = provider_tags(config, arn)
    if found is None:
        raise FleetError(missing)
    tags, audiences = found
    if tags.get("managed-by") == MANAGED_BY and tags.get("fleet-stack") == pulumi.get_stack():
        raise FleetError(own)
    if config.oidc.audience not in audiences:
        raise FleetError(f"{which} does not list the audience {spell(config.oidc.audience)} among its client IDs "
                         f"{audiences}: {deaf}")


def role_path_of(arn: str) -> str:
    """The path of a role from its ARN (`arn:aws:iam::1:role/ci/gitlab-x` -> `/ci/`)."""
    resource = arn.split(":", 5)[-1].removeprefix("role")
    return resource.rsplit("/", 1)[0] + "/"


def previous_outputs() -> tuple[dict[str, Any], str]:
    """The outputs of this stack's last `up` that naming reads (none before the first), and where they came from.

    A StackReference to the running stack reads its last completed outputs. The program needs them as
    plain values before it declares anything, so it waits for them the way the SDK waits for invokes.
    """
    name = f"{pulumi.get_organization()}/{pulumi.get_project()}/{pulumi.get_stack()}"
    reference = pulumi.StackReference(f"{pulumi.get_stack()}-previous-outputs", stack_name=name)
    if not _sync_await(reference.outputs.is_known()):
        raise FleetError(f"the outputs of stack {name} are not known yet, so the role names it holds cannot be read; "
                         "nothing was planned.")
    outputs = {}
    for key in (ROLE_NAMES_OUTPUT, ROLES_OUTPUT, POLICIES_OUTPUT, SUB_CLAIMS_OUTPUT, SKIPPED_OUTPUT, COUNTS_OUTPUT):
        details = _sync_await(reference.get_output_details(key))
        outputs[key] = details.value if details.value is not None else details.secret_value  # a secret output too
    return outputs, f"the outputs of stack {name}"


def role_tags(name: str) -> dict[str, str] | None:
    """The tags of the role `name` in the account, None when it cannot be read (e.g. deleted by hand)."""
    try:
        return dict(aws.iam.get_role(name=name).tags or {})
    except Exception:  # the SDK raises a plain Exception for a failed invoke
        return None


def role_owner(name: str) -> int | None:
    """The project a role of this program belongs to, from its gitlab-project-id tag (None when unknown)."""
    owner = (role_tags(name) or {}).get("gitlab-project-id", "")
    return int(owner) if owner.isascii() and owner.isdigit() else None


def check_roles_fit_the_account(plan: Plan, deployed: Deployed, existing: Iterable[str], quota: int) -> None:
    """The account's other roles (service-linked, SSO, other stacks', hand-made) count against IAM's quota too:
    refuse before `up` rather than fail at the role that no longer fits."""
    mine = {name.casefold() for name in (*deployed.names.values(), *deployed.reserved)}
    planned = {p.role_name.casefold() for p in plan.projects}
    ours = mine | planned
    others = [name for name in existing if name.casefold() not in ours]
    # Pulumi creates new roles before it deletes old ones: this stack's roles that go (or are renamed) still count.
    during = planned | {name.casefold() for name in existing if name.casefold() in mine}
    if len(others) + len(during) > quota:
        raise FleetError(f"account {plan.account_id} holds {len(others)} other roles, and this stack needs {len(during)} at once "
                         f"({len(plan.projects)} planned, the rest deleted only after the new are created): "
                         f"over fleet:quotas.rolesPerAccount ({quota}). Nothing was changed; raise the quota with AWS and in "
                         "fleet:quotas.rolesPerAccount, or split the group over accounts.")


def existing_role(name: str) -> tuple[str, dict[str, str]] | None:
    """The ARN and tags of the role `name` in the account, None when it cannot be read (e.g. deleted meanwhile)."""
    try:
        role = aws.iam.get_role(name=name)
    except Exception:  # the SDK raises a plain Exception for a failed invoke
        return None
    return role.arn, dict(role.tags or {})


def provider_tags(config: FleetConfig, arn: str) -> tuple[dict[str, str], list[str]] | None:
    """The tags and client IDs (audiences) of the account's OIDC provider `arn`, None when there is none."""
    try:
        provider = aws.iam.get_open_id_connect_provider(arn=arn)
    except Exception as err:  # the SDK raises a plain Exception for a failed invoke
        if "couldn't find resource" in str(err):  # pulumi-aws's (terraform-provider-aws's) words for "none"
            return None
        raise FleetError(f"cannot tell whether account {config.account_id} holds the OIDC provider {arn}: {err}") from err
    return dict(provider.tags or {}), list(provider.client_id_lists or [])


def check_collisions(config: FleetConfig, plan: Plan, deployed: Deployed, token: str) -> Adoption:
    """Refuse, all in one message, what would be created but exists already, unless fleet:adopt takes it over.

    Roles: a planned name held in the account by a role this stack does not hold (IAM would refuse it halfway
    through `up`, EntityAlreadyExists). A project's own deployed name is its own; so is a role tagged with this
    stack and this project (one a failed run created, which the state holds although the outputs do not say so).
    The provider: the issuer's, when the stack would create one. Variables: ROLE_ARN and GITLAB_AWS_ACCOUNT_ID in
    the stack's scope, asked of GitLab for the projects new to the stack.
    """
    names = aws.iam.get_roles().names
    check_roles_fit_the_account(plan, deployed, names, config.quotas.roles_per_account)
    existing = {name.casefold(): name for name in names}
    taken: list[str] = []
    refused: list[str] = []
    found: list[adopting.Collision] = []
    for project in plan.projects:
        name = existing.get(project.role_name.casefold())
        if name is None or deployed.names.get(project.id, "").casefold() == project.role_name.casefold():
            continue
        role = existing_role(name)
        if role is None:
            refused.append(f"IAM role {name} for {project.path} exists but cannot be read")
            continue
        verdict = adopting.role_collision(project, role[0], role[1], plan.stack)
        if isinstance(verdict, adopting.Collision):
            found.append(verdict)
        elif verdict is not None:
            (taken if role[1].get("fleet-stack") else refused).append(verdict)
    if plan.create_provider:
        found_provider = provider_tags(config, plan.provider_arn)
        verdict_ = adopting.provider_collision(plan, *found_provider) if found_provider is not None else None
        if isinstance(verdict_, adopting.Collision):
            found.append(verdict_)
        elif verdict_ is not None:
            refused.append(verdict_)
    api = open_api(config.gitlab, token, pulumi.log.info)
    variables, refused_variables = adopting.check_variables(
        plan, deployed, adopting.gitlab_lookup(api, {p.id: p.path for p in plan.projects}),
        concurrency=config.gitlab.concurrency, progress=pulumi.log.info)
    stack_file = display_path(stack_path(DEFAULT_STACKS_DIR, plan.stack))
    return adopting.resolve([*found, *variables], [*refused, *refused_variables], config.adopt, stack_file=stack_file,
                            taken=taken, account=plan.account_id)


def gitlab_provider(config: FleetConfig, token: str) -> gitlab.Provider:
    """An explicit GitLab provider at the listed API, with the token that listed it.

    A provider's inputs are kept in the stack's state, which every holder of the passphrase can read (in the
    pipeline: merge-request jobs too). A token from GITLAB_TOKEN stays out of it: the provider reads that
    variable itself. Only a token that is already in the stack file (the secret gitlab:token) is passed.
    """
    from_environment = os.environ.get("GITLAB_TOKEN") == token
    return gitlab.Provider("gitlab", base_url=f"{config.gitlab.api_url}/api/v4/",
                           token=None if from_environment else pulumi.Output.secret(token))


def make_plan(config: FleetConfig, token: str, stack: str,
              stacks_dir: Path = DEFAULT_STACKS_DIR) -> tuple[Plan, Adoption, dict[str, Any]]:
    """List the group, plan it with the names already deployed, and refuse overlaps and taken names. Also returns
    the outputs of the stack's last run."""
    others = other_targets(stacks_dir, stack)
    library = stack_library(config.policies, stacks_dir.parent)
    outputs, source = previous_outputs()
    inventory = fetch_inventory(config.gitlab, token, progress=pulumi.log.info)
    deployed = deployed_names(outputs, inventory.projects, source, owner_of=role_owner)
    plan = build_plan(config, inventory, stack, deployed, library=library, region=pulumi.Config("aws").get("region") or "",
                      restoring=deployed.sub_claims)
    check_overlaps(config_target(stack, config), others, inventory, (p.id for p in plan.projects))
    adoption = check_collisions(config, plan, deployed, token)
    if not pulumi.runtime.is_dry_run():  # `up`: the guard, from the names held and planned (a preview shows them all)
        given = guard.program_limit()  # `python -m fleet up` passes what it allowed; by hand, fleet:guard applies
        held_paths = {role_path_of(arn) for arn in (outputs.get(ROLES_OUTPUT) or {}).values() if isinstance(arn, str)}
        guard.check_names(deployed.names, {p.id: p.role_name for p in plan.projects}, stack=stack,
                          max_deletes=config.guard.max_deletes if given is None else given, explicit=given is not None,
                          reserved=deployed.reserved, all_replaced=bool(held_paths - {plan.role_path}))
    return plan, adoption, outputs


def pause_collector() -> Callable[[], None]:
    """Stop CPython's cyclic garbage collector for the rest of the run; returns what turns it back on (if it was on).

    Nearly everything the SDK makes while it registers resources (the resources, their outputs, futures and tasks)
    lives until the run ends, so each collection walks a growing heap to free little: with the collector on, it took
    most of the run's time. Off, the run keeps its cyclic garbage: about 8% more peak memory (bench/program.py).
    `__main__.py` never turns it back on: Pulumi's language host runs the program in a process of its own, which
    exits when the engine is done with it.
    """
    was_enabled = gc.isenabled()
    gc.disable()

    def restore() -> None:
        if was_enabled:
            gc.enable()

    return restore


def main(stacks_dir: Path = DEFAULT_STACKS_DIR) -> dict[str, Any]:
    """Run the program; exports and returns the stack outputs. Any error stops before a resource exists."""
    try:
        config = config_from_pulumi()
        token = gitlab_token()
        check_account(config)
        check_used_provider(config)
        only = new_only_ids(os.environ)  # `up --new-only`: the projects this targeted run may record
        plan, adoption, previous = make_plan(config, token, pulumi.get_stack(), stacks_dir)
    except FleetError as err:
        raise pulumi.RunError(str(err)) from err
    for warning in plan.all_warnings:
        pulumi.log.warn(warning)
    for note in adoption.notes():
        pulumi.log.info(note)
    outputs = declare(plan, gitlab_provider=gitlab_provider(config, token), adoption=adoption, api_url=config.gitlab.api_url)
    if only is not None:  # Pulumi rewrites the stack's outputs in a targeted run too: record the targeted projects alone
        pulumi.log.warn(f"{NEW_ONLY_ENV} is set: the stack's outputs are recorded for projects "
                        f"{', '.join(map(str, sorted(only)))} alone, as `python -m fleet up --new-only` asks; in any other "
                        "run unset it.")
        outputs = outputs_of_targeted_run(previous, outputs, {p.id: p.path for p in plan.projects}, only)
    for key, value in outputs.items():
        pulumi.export(key, value)
    return outputs
