"""Planning each role's permission policies: which library entries it gets, how each is attached, within IAM's quotas.

Pure Python: (policy config, library, projects) -> the policies of each project and the stack's shared managed
policies. An entry with per-project placeholders becomes an inline policy on each role; one without becomes a
single customer managed policy of the stack, attached to every role that selects it; an AWS managed ARN is
attached as it is. Every rendered document is linted before anything is applied.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import PoliciesConfig, QuotasConfig
from .deployed import DeployedPolicies
from .errors import ConfigError, PolicyError
from .globs import path_glob
from .inventory import Project
from .naming import path_slug
from .plan import MANAGED_BY, ManagedPolicyPlan, PolicyPlan
from .policy_library import Entry, RenderContext, library_for, render, unknown_names
from .policy_lint import document_size, lint, privileged
from .spelling import spell

SELF_SERVICE_PREFIX = "aws:"
MANAGED_POLICY_PATH = f"/{MANAGED_BY}/"
INLINE_CHARS_PER_ROLE = 10_240  # IAM: all inline policies of a role together, whitespace not counted
MANAGED_POLICY_CHARS = 6_144  # IAM: one managed policy document, whitespace not counted
POLICY_NAME_MAX = 128  # IAM: a managed policy's name
_REGION_RE = re.compile(r"[a-z]{2}(-[a-z]+)+-[0-9]{1,2}")


@dataclass(frozen=True)
class StackContext:
    """What every rendered document of a stack shares."""

    account_id: str
    region: str
    partition: str
    stack: str


def check_names(config: PoliciesConfig, library: Mapping[str, Entry]) -> None:
    """Every entry the config names must be in the library (reported with the closest known name)."""
    problems = []
    named = [("fleet:policies.default", config.default), ("fleet:policies.selfService.allowed", config.self_service),
             ("fleet:policies.allowPrivileged", config.allow_privileged),
             *((f"fleet:policies.rules[{i}].attach", rule.attach) for i, rule in enumerate(config.rules))]
    for key, names in named:
        problems += [f"{key}: {p}" for p in unknown_names(names, library)]
    if problems:
        raise ConfigError(problems)


def stack_library(config: PoliciesConfig, project_dir: Path) -> dict[str, Entry]:
    """The library a stack plans with, its entry names checked: read before GitLab is asked, so a bad
    library or selection is refused without a request."""
    library = library_for(config.libraries, project_dir)
    check_names(config, library)
    return library


def select(config: PoliciesConfig, project: Project) -> tuple[dict[str, str], list[str]]:
    """The entries a project gets, each with its first reason ("default", "rule N", "topic aws:<entry>"), in order;
    and a warning for each `aws:*` topic the config does not allow."""
    chosen: dict[str, str] = {}
    for name in config.default:
        chosen.setdefault(name, "default")
    for number, rule in enumerate(config.rules, start=1):
        paths_hold = not rule.paths or any(path_glob(g).fullmatch(project.path) for g in rule.paths)
        topics_hold = all(t in project.topics for t in rule.topics)
        if paths_hold and topics_hold:
            for name in rule.attach:
                chosen.setdefault(name, f"rule {number}")
    refused = []
    for topic in project.topics:
        if not topic.startswith(SELF_SERVICE_PREFIX):
            continue
        name = topic.removeprefix(SELF_SERVICE_PREFIX)
        if name in config.self_service:
            chosen.setdefault(name, f"topic {topic}")
        else:
            refused.append(topic)
    warnings = [f"{project.path} asks for {', '.join(spell(t) for t in refused)}, which fleet:policies.selfService.allowed "
                f"does not list ({', '.join(config.self_service) or 'none'}): not attached"] if refused else []
    return chosen, warnings


def _check_document(entry: Entry, document: Mapping[str, Any], config: PoliciesConfig) -> list[str]:
    """Why a rendered document may not be applied: lint findings the entry does not accept, privileges not allowed."""
    problems = [f"{f.code}: {f.message}" + ("" if f.acceptable else " (cannot be accepted)")
                for f in lint(document) if not (f.acceptable and entry.accepts(f.code))]
    if entry.name not in config.allow_privileged:
        problems += [f"privileged: {why} (list the entry in fleet:policies.allowPrivileged if this is intended)"
                     for why in privileged(document)]
    return [f"policy library entry {entry.name} ({entry.source}): {p}" for p in problems]


def managed_policy_arn(account_id: str, stack: str, entry: str) -> str:
    return f"arn:aws:iam::{account_id}:policy{MANAGED_POLICY_PATH}{managed_policy_name(stack, entry)}"


def managed_policy_name(stack: str, entry: str) -> str:
    """The IAM name of a shared entry's customer managed policy: one per stack and entry. Entry names hold no
    '.', so stack `a` with entry `b-c` and stack `a-b` with entry `c` never share a name."""
    return f"fleet-{stack}.{entry}"


def plan_policies(config: PoliciesConfig, quotas: QuotasConfig, library: Mapping[str, Entry],
                  projects: Sequence[tuple[Project, str]], stack: StackContext,
                  deployed: Mapping[int, DeployedPolicies] | None = None,
                  ) -> tuple[dict[int, tuple[PolicyPlan, ...]], tuple[ManagedPolicyPlan, ...], list[str]]:
    """The policies of each (project, role name), the stack's shared managed policies, and warnings.

    Refuses (PolicyError, naming entries and projects) a document IAM or the linter would refuse, a privilege
    not allowed, and any quota the plan would exceed; nothing is applied then.
    """
    check_names(config, library)
    warnings: list[str] = []
    chosen: dict[int, dict[str, str]] = {}
    for project, _ in projects:
        chosen[project.id], refused = select(config, project)
        warnings += refused
    used = sorted({name for names in chosen.values() for name in names})
    problems: list[str] = []
    base = RenderContext(account_id=stack.account_id, region=stack.region, partition=stack.partition, stack=stack.stack)
    if any(library[n].document is not None and "region" in library[n].placeholders for n in used) and not _REGION_RE.fullmatch(stack.region):
        problems.append(f"entries use ${{region}}, but the stack's aws:region is {spell(stack.region) if stack.region else 'missing'}; "
                        "set it to an AWS region such as eu-west-1")
    # An AWS managed policy's document is not shipped with the program, so it cannot be linted: only allowed by name.
    problems += [f"policy library entry {n} ({library[n].source}): attaches the AWS managed policy {library[n].arn}, which "
                 "cannot be checked offline; list the entry in fleet:policies.allowPrivileged once you have reviewed it"
                 for n in used if library[n].arn is not None and n not in config.allow_privileged]
    # Shared entries are rendered and checked once; per-project ones for every project (reported for the first).
    shared: dict[str, dict[str, Any]] = {}
    failing: dict[str, list[str]] = {}  # per-project entry -> the projects whose rendered document is refused
    for name in used:
        entry = library[name]
        if entry.document is not None and not entry.per_project:
            shared[name] = render(entry, base)
            problems += _check_document(entry, shared[name], config)
            if len(managed_policy_name(stack.stack, name)) > POLICY_NAME_MAX:
                problems.append(f"policy library entry {name}: the managed policy name {managed_policy_name(stack.stack, name)} is "
                                f"over IAM's {POLICY_NAME_MAX} characters; use a shorter entry or stack name")
            size = document_size(shared[name])
            if size > MANAGED_POLICY_CHARS:
                problems.append(f"policy library entry {name}: {size} characters, over IAM's {MANAGED_POLICY_CHARS} for a managed policy")
    plans: dict[int, tuple[PolicyPlan, ...]] = {}
    attached_to: dict[str, int] = dict.fromkeys(shared, 0)
    for project, role_name in projects:
        context = dataclasses.replace(base, project_path=project.path, project_slug=path_slug(project.path),
                                      project_id=str(project.id), role_name=role_name)
        policies = []
        for name, reason in chosen[project.id].items():
            entry = library[name]
            if entry.arn is not None:
                policies.append(PolicyPlan(name, "aws-managed", reason, arn=entry.arn))
            elif name in shared:
                attached_to[name] += 1
                policies.append(PolicyPlan(name, "managed", reason, arn=managed_policy_arn(stack.account_id, stack.stack, name)))
            else:
                document = render(entry, context)
                refused = _check_document(entry, document, config)
                if refused and not failing.get(name):
                    problems += [f"{p} (rendered for {project.path})" for p in refused]
                if refused:
                    failing.setdefault(name, []).append(project.path)
                policies.append(PolicyPlan(name, "inline", reason, document=document, size=document_size(document)))
        problems += _role_quotas(project, policies, quotas, (deployed or {}).get(project.id, DeployedPolicies()))
        plans[project.id] = tuple(policies)
    problems += [f"policy library entry {name}: refused for {len(paths) - 1} more project(s) too: {', '.join(paths[1:6])}"
                 + (" ..." if len(paths) > 6 else "") for name, paths in failing.items() if len(paths) > 1]
    if len(shared) > quotas.customer_managed_policies_per_account:
        problems.append(f"the stack needs {len(shared)} customer managed policies, over fleet:quotas.customerManagedPoliciesPerAccount "
                        f"({quotas.customer_managed_policies_per_account})")
    if len(projects) > quotas.roles_per_account:
        problems.append(f"the stack plans {len(projects)} roles, over fleet:quotas.rolesPerAccount ({quotas.roles_per_account}); "
                        "raise the quota with AWS and here, or split the group over stacks")
    if problems:
        raise PolicyError("the policy plan cannot be applied:\n" + "\n".join(f"  - {p}" for p in _first(problems, 50)))
    managed = tuple(ManagedPolicyPlan(name=name, policy_name=managed_policy_name(stack.stack, name), path=MANAGED_POLICY_PATH,
                                      arn=managed_policy_arn(stack.account_id, stack.stack, name), document=shared[name],
                                      # Fixed: IAM replaces a policy whose description changes (delete first).
                                      description=f"{MANAGED_BY} stack {stack.stack}: policy library entry {name}",
                                      attached_to=attached_to[name])
                    for name in sorted(shared) if attached_to[name])
    return plans, managed, warnings


def _role_quotas(project: Project, policies: Iterable[PolicyPlan], quotas: QuotasConfig, now: DeployedPolicies) -> list[str]:
    """IAM's per-role quotas, for the new policies and for the change: Pulumi attaches and writes the new
    policies before it detaches and deletes the old ones, so for a moment the role holds both."""
    policies = list(policies)
    problems = []
    attached = [p.name for p in policies if p.document is None]
    during = now.attached | {p.arn or "" for p in policies if p.document is None}
    if len(attached) > quotas.managed_policies_per_role:
        problems.append(f"{project.path}: {len(attached)} managed policies ({', '.join(attached)}), over "
                        f"fleet:quotas.managedPoliciesPerRole ({quotas.managed_policies_per_role})")
    elif len(during) > quotas.managed_policies_per_role:
        problems.append(f"{project.path}: the change holds {len(during)} managed policies at once (the new are attached before "
                        f"the old are detached), over fleet:quotas.managedPoliciesPerRole ({quotas.managed_policies_per_role}); "
                        "make the change in two runs: first remove entries, then add")
    inline = {p.name: p.size for p in policies if p.document is not None}
    total = sum(inline.values())
    peak = sum(max(inline.get(n, 0), now.inline.get(n, 0)) for n in {*inline, *now.inline})
    if total > INLINE_CHARS_PER_ROLE:
        problems.append(f"{project.path}: inline policies of {total} characters ({', '.join(f'{n} {s}' for n, s in inline.items())}), "
                        f"over IAM's {INLINE_CHARS_PER_ROLE} per role")
    elif peak > INLINE_CHARS_PER_ROLE:
        problems.append(f"{project.path}: the change holds {peak} characters of inline policies at once (the new are written "
                        f"before the old are deleted), over IAM's {INLINE_CHARS_PER_ROLE} per role; make the change in two runs")
    return problems


def _first(problems: list[str], limit: int) -> list[str]:
    return problems if len(problems) <= limit else [*problems[:limit], f"... and {len(problems) - limit} more"]
