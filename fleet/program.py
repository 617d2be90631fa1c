"""The Pulumi program: stack config -> discovery -> plan -> resources, and the stack outputs.

The same functions as `python -m fleet plan` make the plan; only reading config (from Pulumi)
and declaring resources differ.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_gitlab as gitlab
from pulumi.runtime import config as runtime_config

from .config import SECTIONS, FleetConfig, parse_config
from .discovery import fetch_inventory, gitlab_token
from .errors import FleetError
from .plan import Plan, build_plan
from .resources import declare
from .stacks import DEFAULT_STACKS_DIR, check_conflicts, config_target


def _fleet_keys() -> set[str]:
    """Every `fleet:*` key the stack sets, so a misspelt key is refused as `plan` refuses it.

    The SDK has no public way to list config keys; these are where it keeps them.
    """
    keys = {*runtime_config.CONFIG.get(), *runtime_config.get_config_env()}
    return {k.split(":", 1)[1] for k in keys if k.startswith("fleet:")}


def config_from_pulumi() -> FleetConfig:
    """The `fleet:*` config of the running stack, validated like a stack file."""
    fleet = pulumi.Config("fleet")
    raw: dict[str, Any] = {name: fleet.get_object(name) if name in SECTIONS else fleet.get(name) for name in _fleet_keys()}
    return parse_config(raw)


def check_account(config: FleetConfig) -> None:
    """`pulumi up` must run with credentials of the stack's own account."""
    caller = aws.get_caller_identity().account_id
    if caller != config.account_id:
        raise FleetError(f"fleet:accountId is {config.account_id}, but the AWS credentials are for account {caller}: "
                         "select the right AWS profile or fix fleet:accountId.")


def check_adopted_provider(config: FleetConfig) -> None:
    """An adopted provider must exist and accept the audience, or every pipeline's assume would fail."""
    arn = config.oidc.provider_arn
    if arn is None:
        return
    try:
        provider = aws.iam.get_open_id_connect_provider(arn=arn)
    except Exception as err:  # the SDK raises a plain Exception for a failed invoke
        raise FleetError(f"fleet:oidc.providerArn {arn} cannot be read in account {config.account_id}: {err}") from err
    if config.oidc.audience not in provider.client_id_lists:
        raise FleetError(
            f"the OIDC provider {arn} (fleet:oidc.providerArn) does not list the audience {config.oidc.audience!r} "
            f"among its client IDs {list(provider.client_id_lists)}: add it to the provider, or set fleet:oidc.audience "
            "to one it lists.")


def gitlab_provider(config: FleetConfig) -> gitlab.Provider:
    """An explicit GitLab provider at the configured API, so variables land on the instance that was listed."""
    token = pulumi.Config("gitlab").get_secret("token")
    return gitlab.Provider("gitlab", base_url=f"{config.gitlab.api_url}/api/v4/", token=token)


def make_plan(config: FleetConfig, stack: str, stacks_dir: Path = DEFAULT_STACKS_DIR) -> Plan:
    check_conflicts(stacks_dir, stack, config_target(config))
    log = pulumi.log.info
    inventory = fetch_inventory(config.gitlab, gitlab_token(pulumi.Config("gitlab").get("token")), progress=log)
    return build_plan(config, inventory, stack)


def main(stacks_dir: Path = DEFAULT_STACKS_DIR) -> dict[str, Any]:
    """Run the program; exports and returns the stack outputs. Any error stops before a resource exists."""
    try:
        config = config_from_pulumi()
        check_account(config)
        check_adopted_provider(config)
        plan = make_plan(config, pulumi.get_stack(), stacks_dir)
    except FleetError as err:
        raise pulumi.RunError(str(err)) from err
    for warning in plan.warnings:
        pulumi.log.warn(warning)
    outputs = declare(plan, gitlab_provider=gitlab_provider(config))
    for key, value in outputs.items():
        pulumi.export(key, value)
    return outputs
