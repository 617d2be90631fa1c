"""Building the plan: (stack config, project listing, names already deployed) -> Plan. Pure Python, no I/O."""

from __future__ import annotations

import dataclasses
import re
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
from .selection import check_group, in_shard, select_projects
from .spelling import spell
from .trust import (
    DEFAULT_COMPONENTS,
    GITLAB_COM,
    SWITCHING,
    TRUST_POLICY_MAX_CHARS,
    Components,
    HeldSubClaims,
    ProjectRef,
    SubjectPlan,
    condition_prefix,
    plan_subject,
    policy_size,
    provider_arn,
    resolve_refs,
    trust_policy,
    wanted_components,
)

# The first GitLab release whose docs list project_id (as first element) and ref_protected among the
# ci_id_token_sub_claim_components (shared reference: 18.7; see the README's security model).
SUB_COMPONENTS_VERSION = (18, 7)
_VERSION_RE = re.compile(r"([0-9]+)\.([0-9]+)(\.[0-9]+)?([-+.][0-9A-Za-z.-]*)?")


def clip(value: str, limit: int) -> str:
    """Cut a display value (tag, description) to an IAM limit, marking the cut."""
    return value if len(value) <= limit else value[: limit - 3] + "..."


def version_of(text: str) -> tuple[int, int] | None:
    """(major, minor) of a GitLab version such as "18.7.1-ee", None for anything else."""
    match = _VERSION_RE.fullmatch(text)
    return (int(match.group(1)), int(match.group(2))) if match else None


def wanted_sub(config: FleetConfig) -> tuple[Components, str | None]:
    """The components the stack's projects get, and the setting that makes the stack set them (None: GitLab's
    default, which the stack leaves to each project)."""
    on_gitlab_com = condition_prefix(config.issuer) == GITLAB_COM
    in_sub = config.protected_refs_only and not on_gitlab_com  # gitlab.com: the ref_protected condition key
    wanted = wanted_components(config.subject, in_sub)
    if wanted == DEFAULT_COMPONENTS:
        return wanted, None
    return wanted, "fleet:trust.subject id" if config.subject == "id" else "fleet:trust.protectedRefsOnly true"


def check_version(config: FleetConfig, inventory: Inventory, setting: str) -> None:
    """Refuse, in one sentence, a setting the instance's version cannot honour."""
    needed = ".".join(map(str, SUB_COMPONENTS_VERSION))
    what = ("a sub starting with project_id" if config.subject == "id" else "ref_protected in the sub")
    version = inventory.gitlab_version
    if version is None:
        raise PlanError(f"{setting} needs GitLab {needed} or later ({what}), and the listing does not say the "
                        f"instance's version (GET /version): list the group again with `fleet inventory`.")
    parsed = version_of(version)
    if parsed is None:
        raise PlanError(f"{setting} needs GitLab {needed} or later ({what}), and the instance's GET /version answered "
                        f"{spell(version)}, which could not be read as a version: check what the instance answers (or "
                        "the listing's gitlab_version), or remove the setting.")
    if parsed < SUB_COMPONENTS_VERSION:
        raise PlanError(f"{setting} needs GitLab {needed} or later for {what}, but the instance runs {version}: "
                        "upgrade GitLab or remove the setting.")


def plan_subjects(config: FleetConfig, projects: list[Project], restoring: Mapping[int, HeldSubClaims],
                  skipped: list[Skipped]) -> dict[int, SubjectPlan]:
    """Each project's subject plan; projects whose hand-made `sub` cannot be trusted go to `skipped`."""
    wanted, setting = wanted_sub(config)
    if setting is not None:
        hidden = [p.path for p in projects if p.sub_claim_components is None]
        if hidden:
            shown = ", ".join(hidden[:10]) + (f" and {len(hidden) - 10} more" if len(hidden) > 10 else "")
            raise PlanError(f"{setting} makes the stack set each project's ci_id_token_sub_claim_components, which "
                            f"GitLab lists only to Maintainers, and the token is not Maintainer of {len(hidden)} "
                            f"project(s): {shown}; give the token's user the Maintainer role on them (setting "
                            "variables needs it too) or exclude them.")
    out: dict[int, SubjectPlan] = {}
    for p in projects:
        subject = plan_subject(p.sub_claim_components, wanted, managed=setting is not None,
                               restoring=restoring.get(p.id))
        if isinstance(subject, str):
            skipped.append(Skipped(p.id, p.path, "custom-sub-claim", f"ci_id_token_sub_claim_components changed by "
                                                                     f"hand: {subject}"))
        else:
            out[p.id] = subject
    return out


def build_plan(config: FleetConfig, inventory: Inventory, stack: str, deployed: Deployed | None = None, *,
               library: Mapping[str, Entry] | None = None, region: str = "",
               restoring: Mapping[int, HeldSubClaims] | None = None) -> Plan:
    """The plan for one stack. `deployed`: the role names the stack holds now (none before its first `up`);
    `library`: the policy library (`policy_library.load_library`); `region`: the stack's aws:region;
    `restoring`: what the stack's sub-claim resources hold (`Deployed.sub_claims`); a project the stack no longer
    manages gets its `original` back in this run."""
    check_group(config, inventory)
    setting = wanted_sub(config)[1]
    if setting is not None:
        check_version(config, inventory, setting)
    candidates, skipped, warnings = select_projects(config, inventory)
    # Selected over the whole listing (exclude warnings stay true); then only this shard's projects are kept.
    other_shards = sum(not in_shard(p.id, config.shard) for p in inventory.projects)
    candidates = [p for p in candidates if in_shard(p.id, config.shard)]
    skipped = [s for s in skipped if in_shard(s.id, config.shard)]
    subjects = plan_subjects(config, candidates, restoring or {}, skipped)
    candidates = [p for p in candidates if p.id in subjects]
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
    # Names are decided over every listed project, so skipping one never renames another, and every shard
    # of the group gives a project the same name.
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
                            project_id=p.id, project_path=p.path, refs=refs, forms=subjects[p.id].trusted,
                            protected_only=config.protected_refs_only)

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
            both = " while its sub switches: both forms are trusted in this run" if subjects[p.id].phase == SWITCHING else ""
            too_large.append(f"{p.path} ({size} characters{both})")
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
            sub_components=subjects[p.id].components, sub_phase=subjects[p.id].phase,
            manage_sub_claim=subjects[p.id].managed,
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
    if config.shard is not None and len(managed_policies) * config.shard.count > config.quotas.customer_managed_policies_per_account:
        raise PlanError(f"this shard needs {len(managed_policies)} customer managed policies, and its "
                        f"{config.shard.count} shards (fleet:shard.count) each hold their own copies, up to "
                        f"{len(managed_policies) * config.shard.count} in the account: over "
                        f"fleet:quotas.customerManagedPoliciesPerAccount ({config.quotas.customer_managed_policies_per_account}); "
                        "raise the quota with AWS and there, use fewer shards, or make entries inline (per-project placeholders).")
    suffixed = [p for p in projects if not p.helper_compatible]
    if suffixed:
        warnings.append(f"{len(suffixed)} role name(s) carry an id suffix because another project's path gives the same "
                        f"name; their pipelines must use ROLE_ARN or give the credential helper --role-name: "
                        f"{', '.join(p.path + ' -> ' + p.role_name for p in suffixed)}")
    if no_default_branch:
        warnings.append(f"{len(no_default_branch)} project(s) have no default branch (empty repository), so their roles "
                        f"leave out branch:{{default_branch}} until one is pushed and the stack runs again: "
                        f"{', '.join(no_default_branch)}")
    switching = [p.path for p in projects if p.sub_phase == SWITCHING]
    in_sub = "ref_protected" in wanted_sub(config)[0]
    if switching:
        shown = ", ".join(switching[:10]) + (f" and {len(switching) - 10} more" if len(switching) > 10 else "")
        warnings.append(f"stack in transition: {len(switching)} project(s) trust both sub forms until the next run "
                        f"finds their ci_id_token_sub_claim_components applied (run again after this up to drop "
                        f"the old form{'; only then are protected refs enforced for them' if in_sub else ''}): "
                        f"{shown}")
    if role_path != "/":
        warnings.append(f"fleet:role.path is {spell(role_path)}: gitlab-aws-credential-helper assumes roles at path '/', so pipelines must use ROLE_ARN")
    skipped.sort(key=lambda s: s.id)
    return Plan(
        stack=stack, account_id=config.account_id, issuer=config.issuer, audience=config.oidc.audience,
        provider_arn=provider, group=inventory.group.full_path,
        create_provider=config.oidc.provider_arn is None and (config.shard is None or config.shard.owns_provider),
        role_path=role_path, max_session_duration=config.role.max_session_duration,
        permissions_boundary=config.role.permissions_boundary,
        projects=tuple(projects), skipped=tuple(skipped), warnings=tuple(warnings), managed_policies=managed_policies,
        shard=config.shard, other_shards=other_shards,
    )
