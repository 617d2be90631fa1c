"""Adopting what exists: CI/CD variables, IAM roles and the OIDC provider made before the stack (by hand).

The shells read GitLab and AWS (`program.py` under Pulumi, `cli.py` for `plan`) and hand what they found
here. By default every collision is refused, all of them in one message; with `fleet:adopt.<kind>: true`
the program declares those resources with Pulumi's `import` option. Since pulumi/pulumi#19339 (Pulumi
3.17x; this project pins 3.272) the engine imports and then diffs the program's inputs against what it
read, so `pulumi preview` shows `= import` with the first `~ update` of each, and `up` applies both.

A role or provider is adopted only once an administrator has tagged it managed-by=<this program>: the
deployer's policy (iam/pulumi-up-policy.json) changes nothing else, and `up` would stop right after the import.
What is never adopted: another fleet stack's role, variable or provider (two stacks would fight over it),
a role whose ARN differs from the planned one (IAM cannot rename or move a role: the replacement would
fail halfway), and a hidden variable (GitLab cannot unhide one: the same).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import ADOPT_KINDS, AdoptConfig, FleetConfig
from .deployed import Deployed
from .discovery import open_api
from .errors import FleetError
from .gitlab_api import GitLabAPI, GitLabError
from .plan import MANAGED_BY, Plan, ProjectPlan
from .progress import meter
from .stacks import display_path, stack_path

# Looks up one variable: (project id, key, environment scope) -> GitLab's answer, or None when it is absent.
VariableLookup = Callable[[int, str, str], Mapping[str, Any] | None]


class CollisionError(FleetError):
    """What the stack would create exists already and is not (or cannot be) adopted."""


@dataclass(frozen=True)
class Collision:
    """One thing that exists already where the stack would create its own: adoptable with fleet:adopt.<kind>."""

    kind: str  # one of ADOPT_KINDS
    text: str  # names the project path (or the issuer) and what exists
    import_id: str  # the id Pulumi's import option takes
    project_id: int | None = None
    key: str | None = None  # variables: the variable's key
    untagged: bool = False  # a role or provider without managed-by=<this program>: the deployer may not change it yet

    def tag_command(self) -> str:
        """The administrator's command that hands an untagged role or provider over to the program."""
        tag = f"--tags Key=managed-by,Value={MANAGED_BY}"
        if self.kind == "roles":
            return f"aws iam tag-role --role-name {self.import_id} {tag}"
        return f"aws iam tag-open-id-connect-provider --open-id-connect-provider-arn {self.import_id} {tag}"


@dataclass(frozen=True)
class Adoption:
    """What the program declares with `import`: the ids by (project id, key), by project id, and the provider's ARN."""

    variables: Mapping[tuple[int, str], str] = field(default_factory=dict)
    roles: Mapping[int, str] = field(default_factory=dict)
    provider: str | None = None

    def __len__(self) -> int:
        return len(self.variables) + len(self.roles) + (self.provider is not None)

    def notes(self) -> list[str]:
        """What is imported, for the preview's log; empty when nothing is."""
        parts = [f"{n} {what}" for n, what in ((len(self.variables), "CI/CD variable(s)"), (len(self.roles), "IAM role(s)"),
                                               (int(self.provider is not None), "OIDC provider")) if n]
        if not parts:
            return []
        return [f"adopting {', '.join(parts)} that already exist (fleet:adopt): each is imported, then changed to what "
                "the stack declares; the preview shows each import (=) and its first change (~)."]


def variable_import_id(project_id: int, key: str, environment_scope: str) -> str:
    """pulumi-gitlab's ProjectVariable import id: `project:key:environment_scope`."""
    return f"{project_id}:{key}:{environment_scope}"


def managed_description(stack: str) -> str:
    """The description the stack gives its variables (planner.build_plan): how its own are told from others'."""
    return f"Managed by {MANAGED_BY} (stack {stack}); edits are overwritten."


def new_projects(plan: Plan, deployed: Deployed | None) -> list[ProjectPlan]:
    """The planned projects this stack does not hold yet (not in its deployed role names)."""
    held = deployed.names if deployed else {}
    return [p for p in plan.projects if p.id not in held]


def _answers(projects: Sequence[ProjectPlan], lookup: VariableLookup, concurrency: int,
             progress: Callable[[str], None] | None) -> list[list[Mapping[str, Any] | None]]:
    """GitLab's answer for each variable of each project, asked `concurrency` projects at a time; the first failure
    stops the rest."""
    shown = meter(progress, "checking CI/CD variables", "projects", len(projects), bar=False)
    pool = ThreadPoolExecutor(max(1, concurrency), thread_name_prefix="variables")
    try:
        futures = [pool.submit(lambda p: [lookup(p.id, v.key, v.environment_scope) for v in p.variables], p)
                   for p in projects]
        answers = []
        for done, future in enumerate(futures, 1):
            answers.append(future.result())
            shown.update(done)
        return answers
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        shown.close()


def variable_collisions(projects: Iterable[ProjectPlan], lookup: VariableLookup, stack: str, *, concurrency: int = 1,
                        progress: Callable[[str], None] | None = None) -> tuple[list[Collision], list[str]]:
    """Variables the projects already have in the stack's scope: (adoptable, refused). Other scopes are not asked."""
    found: list[Collision] = []
    refused: list[str] = []
    asked = list(projects)
    for p, answers in zip(asked, _answers(asked, lookup, concurrency, progress), strict=True):
        for v, existing in zip(p.variables, answers, strict=True):
            if existing is None:
                continue
            description = str(existing.get("description") or "")
            where = f"{p.path}: CI/CD variable {v.key} in scope {v.environment_scope}"
            if description == managed_description(stack):
                continue  # this stack's own, written by an `up` whose outputs were not saved
            if description.startswith(f"Managed by {MANAGED_BY} (stack "):
                refused.append(f"{where} is written by another stack ({description.split('(', 1)[1].split(')', 1)[0]}): "
                               "give each stack its own fleet:variables.environmentScope, or leave the project to one stack")
            elif existing.get("hidden"):
                refused.append(f"{where} is hidden, and GitLab cannot unhide a variable: delete it, and the stack "
                               "creates its own")
            else:
                found.append(Collision("variables", where, variable_import_id(p.id, v.key, v.environment_scope), p.id, v.key))
    return found, refused


def role_collision(project: ProjectPlan, arn: str, tags: Mapping[str, str], stack: str) -> Collision | str | None:
    """An existing role with the project's planned name (ignoring case): None when this stack's own for the project,
    a Collision when adoptable, else why it is refused."""
    if tags.get("fleet-stack") == stack and tags.get("gitlab-project-id") == str(project.id):
        return None
    if "fleet-stack" in tags:
        return (f"{project.role_name} for {project.path} (stack {tags['fleet-stack']}, project "
                f"{tags.get('gitlab-project-path', '?')})")
    text = f"IAM role {project.role_name} for {project.path} (not made by this program)"
    if arn != project.role_arn:
        return (f"{text} is {arn}, not the planned {project.role_arn}: IAM cannot rename or move a role, so it cannot "
                "be adopted; remove or rename it")
    name = arn.rsplit("/", 1)[1]
    return Collision("roles", text, name, project.id, untagged=tags.get("managed-by") != MANAGED_BY)


def provider_collision(plan: Plan, tags: Mapping[str, str], client_ids: Sequence[str] = ()) -> Collision | str | None:
    """The account's OIDC provider for the issuer, when the stack would create one: None when this stack's own,
    a Collision when adoptable, else why it is refused."""
    owner = tags.get("fleet-stack")
    if owner == plan.stack:
        return None
    if owner is not None:
        return (f"the OIDC provider {plan.provider_arn} for {plan.issuer} was made by stack {owner}: set "
                f"fleet:oidc.providerArn: {plan.provider_arn} to use it without managing it")
    others = sorted(set(client_ids) - {plan.audience})
    if others:  # the stack declares one audience: adopting would remove these, and the roles that rely on them
        return (f"the OIDC provider {plan.provider_arn} for {plan.issuer} also lists the audiences "
                f"{', '.join(others)}, which roles outside the fleet may rely on; adopting it would remove them: set "
                f"fleet:oidc.providerArn: {plan.provider_arn} to use it without managing it")
    return Collision("provider", f"{plan.issuer}: OIDC provider {plan.provider_arn} (not made by this program)",
                     plan.provider_arn, untagged=tags.get("managed-by") != MANAGED_BY)


def resolve(collisions: Sequence[Collision], refused: Sequence[str], adopt: AdoptConfig, *, stack_file: str,
            taken: Sequence[str] = (), account: str = "") -> Adoption:
    """The Adoption for the collisions fleet:adopt allows; every other one, and every refused, in one CollisionError.

    `taken`: planned role names held by other stacks' roles (said in the words `up` has always used)."""
    pending = [c for c in collisions if not getattr(adopt, c.kind)]
    untagged = [c for c in collisions if c.untagged]
    blocked = [c for c in untagged if getattr(adopt, c.kind)]
    if pending or refused or taken or blocked:
        sentences = []
        if taken:
            sentences.append(f"role names already taken in account {account} by roles this stack does not hold: "
                             f"{'; '.join(taken)}; exclude the project, or remove or rename that role.")
        sentences += [f"{r}." for r in refused]
        if pending:
            kinds = [k for k in ADOPT_KINDS if any(c.kind == k for c in pending)]
            sentences.append(
                f"Already there, not made by this stack: {'; '.join(c.text for c in pending)}. To manage them with this "
                f"stack from now on (its settings replace theirs; the preview shows each change), set "
                f"{', '.join(f'fleet:adopt.{k}: true' for k in kinds)} in {stack_file}; or remove them.")
        if blocked:
            sentences.append(f"Not yet adoptable: {'; '.join(c.text for c in blocked)}.")
        if untagged:
            sentences.append(
                f"The deployer's policy (iam/pulumi-up-policy.json) changes only roles and OIDC providers tagged "
                f"managed-by={MANAGED_BY}, so `up` would stop right after importing an untagged one: hand each over "
                f"first, with administrator credentials: {'; '.join(c.tag_command() for c in untagged)}.")
        raise CollisionError(" ".join(sentences) + " Nothing was changed.")
    return Adoption(
        variables={(c.project_id, c.key): c.import_id for c in collisions
                   if c.kind == "variables" and c.project_id is not None and c.key is not None},
        roles={c.project_id: c.import_id for c in collisions if c.kind == "roles" and c.project_id is not None},
        provider=next((c.import_id for c in collisions if c.kind == "provider"), None))


# --- GitLab: the lookup both shells use -----------------------------------------------------------------

def gitlab_lookup(api: GitLabAPI, paths: Mapping[int, str]) -> VariableLookup:
    """A VariableLookup over GitLab's API; its errors as one sentence naming the project and what to do."""

    def lookup(project: int, key: str, scope: str) -> Mapping[str, Any] | None:
        try:
            return api.project_variable(project, key, scope)
        except GitLabError as err:
            path = paths.get(project, str(project))
            if err.kind in ("forbidden", "unauthorized"):
                raise CollisionError(
                    f"the GitLab token may not read the CI/CD variables of {path} ({err.status or err.kind}): checking "
                    f"for a {key} made by hand, and writing the stack's, needs the Maintainer role on each project and "
                    "a token with the api scope. Nothing was changed.") from err
            raise CollisionError(f"GitLab failed while checking whether {path} already has {key} in scope {scope} "
                                 f"({err}); nothing was changed, run again.") from err

    return lookup


def check_variables(plan: Plan, deployed: Deployed | None, lookup: VariableLookup, *, concurrency: int = 1,
                    progress: Callable[[str], None] | None = None) -> tuple[list[Collision], list[str]]:
    """The variable collisions of the projects new to the stack (the ones it holds are its own), asked of GitLab
    `concurrency` projects at a time (fleet:gitlab.concurrency)."""
    return variable_collisions(new_projects(plan, deployed), lookup, plan.stack, concurrency=concurrency, progress=progress)


def plan_checks(config: FleetConfig, plan: Plan, deployed: Deployed | None, token: str | None, stacks_dir: Path,
                *, progress: Callable[[str], None] | None = None) -> list[str]:
    """For `python -m fleet plan`: check the new projects' variables in GitLab (token None: the plan is offline and
    nothing is checked). Raises CollisionError as `pulumi up` would; returns the notes to print."""
    if token is None:
        return ["--inventory: nothing was checked for CI/CD variables, IAM roles or an OIDC provider that already "
                "exist; pulumi preview and pulumi up check them before declaring anything"]
    api = open_api(config.gitlab, token, progress)
    found, refused = check_variables(plan, deployed, gitlab_lookup(api, {p.id: p.path for p in plan.projects}),
                                     concurrency=config.gitlab.concurrency, progress=progress)
    stack_file = display_path(stack_path(stacks_dir, plan.stack))
    adoption = resolve(found, refused, AdoptConfig(variables=config.adopt.variables), stack_file=stack_file)
    return [*adoption.notes(), "IAM roles and an OIDC provider that already exist are checked by pulumi preview and "
                               "pulumi up (plan has no AWS access)"]
