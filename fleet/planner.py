"""Building the plan: (stack config, project listing, names already deployed) -> Plan. Pure Python, no I/O."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from .config import FleetConfig
from .deployed import Deployed
from .errors import PlanError
from .inventory import Inventory, Project
from .naming import assign_role_names
from .plan import (
    ACCOUNT_VARIABLE,
    DESCRIPTION_MAX,
    MANAGED_BY,
    ROLE_VARIABLE,
    TAG_VALUE_MAX,
    Plan,
    ProjectPlan,
    Skipped,
    VariablePlan,
)
from .policies import StackContext, plan_policies
from .policy_library import Entry
from .selection import check_group, select_projects
from .spelling import spell
from .trust import TRUST_POLICY_MAX_CHARS, ProjectRef, policy_size, provider_arn, resolve_refs, trust_policy


def clip(value: str, limit: int) -> str:
    """Cut a display value (tag, description) to an IAM limit, marking the cut."""
    return value if len(value) <= limit else value[: limit - 3] + "..."


def build_plan(config: FleetConfig, inventory: Inventory, stack: str, deployed: Deployed | None = None, *,
               library: Mapping[str, Entry] | None = None, region: str = "") -> Plan:
    """The plan for one stack. `deployed`: the role names the stack holds now (none before its first `up`);
    `library`: the policy library (`policy_library.load_library`); `region`: the stack's aws:region."""
    check_group(config, inventory)
    candidates, skipped, warnings = select_projects(config, inventory)
    selected = []
    no_default_branch: list[str] = []  # roles planned without the {default_branch} rule (empty repositories)
    uses_default_branch = any(rule.is_default_branch for rule in config.refs)
    for p in candidates:
        if uses_default_branch and p.default_branch_problem:
            skipped.append(Skipped(p.id, p.path, "bad-default-branch",
                                   f"its default branch {p.default_branch_problem}; fleet:trust.refs uses {{default_branch}}"))
            continue
        refs = resolve_refs(config.refs, p.default_branch)
        if refs and uses_default_branch and p.default_branch is None:
            no_default_branch.append(p.path)
        if refs:
            selected.append((p, refs))
        else:
            skipped.append(Skipped(p.id, p.path, "no-refs", "no default branch (empty repository) and fleet:trust.refs allows only {default_branch}"))
    # Names are decided over every listed project, so skipping one never renames another.
    deployed = deployed or Deployed()
    try:
        names = assign_role_names(((p.id, p.path) for p in inventory.projects), deployed.names, deployed.reserved)
    except ValueError as err:
        raise PlanError(f"the deployed role names cannot be used: {err}") from err
    provider = config.oidc.provider_arn or provider_arn(config.account_id, config.issuer)
    role_path = config.role.path
    scope = config.variables.environment_scope
    protected = config.variables.protected
    managed = f"Managed by {MANAGED_BY} (stack {stack}); edits are overwritten."
    projects: list[ProjectPlan] = []
    too_large: list[str] = []
    def policy_for(p: Project, refs: list[ProjectRef]) -> dict[str, Any]:
        return trust_policy(issuer=config.issuer, provider=provider, audience=config.oidc.audience,
                            project_id=p.id, project_path=p.path, refs=refs)

    for p, refs in selected:
        policy = policy_for(p, refs)
        size = policy_size(policy)
        if size > TRUST_POLICY_MAX_CHARS:
            # A default branch is one project's choice: it sets that project aside, not the fleet.
            others = [r for r in refs if r != ProjectRef("branch", p.default_branch or "")]
            if len(others) < len(refs) and (not others or policy_size(policy_for(p, others)) <= TRUST_POLICY_MAX_CHARS):
                skipped.append(Skipped(p.id, p.path, "bad-default-branch",
                                       f"its default branch ({len(p.default_branch or '')} characters) makes the trust "
                                       f"policy {size} characters, over IAM's {TRUST_POLICY_MAX_CHARS}"))
                continue
            too_large.append(f"{p.path} ({size} characters)")
        role_name = names[p.id]
        role_arn = f"arn:aws:iam::{config.account_id}:role{role_path}{role_name}"
        projects.append(ProjectPlan(
            id=p.id, path=p.path, role_name=role_name, role_arn=role_arn,
            refs=tuple(f"{r.ref_type}:{r.ref}" for r in refs), trust_policy=policy,
            description=clip(f"GitLab CI of {p.path} (project {p.id}); managed by {MANAGED_BY} stack {stack}", DESCRIPTION_MAX),
            tags={"gitlab-project-id": str(p.id), "gitlab-project-path": clip(p.path, TAG_VALUE_MAX),
                  "fleet-stack": stack, "managed-by": MANAGED_BY},
            variables=(
                VariablePlan(ACCOUNT_VARIABLE, config.account_id, scope, protected, managed),
                VariablePlan(ROLE_VARIABLE, role_arn, scope, protected, managed),
            ),
        ))
    if too_large:
        raise PlanError(f"trust policies over IAM's {TRUST_POLICY_MAX_CHARS}-character limit; allow fewer refs in "
                        f"fleet:trust.refs (use a glob) for: {', '.join(too_large)}")
    by_id = {p.id: p for p in inventory.projects}
    policies, managed_policies, policy_warnings = plan_policies(
        config.policies, config.quotas, library or {}, [(by_id[p.id], p.role_name) for p in projects],
        StackContext(account_id=config.account_id, region=region, partition="aws", stack=stack),
        # A renamed role is a new role: it holds nothing of the old one's policies.
        {pid: held for pid, held in deployed.policies.items() if deployed.names.get(pid, "").casefold() == names[pid].casefold()})
    projects = [dataclasses.replace(p, policies=policies[p.id]) for p in projects]
    warnings += policy_warnings
    suffixed = [p for p in projects if not p.helper_compatible]
    if suffixed:
        warnings.append(f"{len(suffixed)} role name(s) carry an id suffix because another project's path gives the same "
                        f"name; their pipelines must use ROLE_ARN or give the credential helper --role-name: "
                        f"{', '.join(p.path + ' -> ' + p.role_name for p in suffixed)}")
    if no_default_branch:
        warnings.append(f"{len(no_default_branch)} project(s) have no default branch (empty repository), so their roles "
                        f"leave out branch:{{default_branch}} until one is pushed and the stack runs again: "
                        f"{', '.join(no_default_branch)}")
    if role_path != "/":
        warnings.append(f"fleet:role.path is {spell(role_path)}: gitlab-aws-credential-helper assumes roles at path '/', so pipelines must use ROLE_ARN")
    skipped.sort(key=lambda s: s.id)
    return Plan(
        stack=stack, account_id=config.account_id, issuer=config.issuer, audience=config.oidc.audience,
        provider_arn=provider, create_provider=config.oidc.provider_arn is None, group=inventory.group.full_path,
        role_path=role_path, max_session_duration=config.role.max_session_duration,
        permissions_boundary=config.role.permissions_boundary,
        projects=tuple(projects), skipped=tuple(skipped), warnings=tuple(warnings), managed_policies=managed_policies,
    )
