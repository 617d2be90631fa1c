"""The Pulumi layer: turn a Plan into resources. It decides nothing the plan has not decided.

Logical names are keyed by project id, so a renamed or transferred project updates its own
resources instead of one project's role being deleted and another's created.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_gitlab as gitlab

from .adoption import Adoption
from .deployed import OUTPUT as ROLE_NAMES_OUTPUT
from .deployed import POLICIES_OUTPUT, ROLES_OUTPUT, SUB_CLAIMS_OUTPUT, deployed_output
from .plan import MANAGED_BY, ROLE_VARIABLE, Plan, PolicyPlan, ProjectPlan
from .sub_claims import SubClaimComponents

COMPONENT_TYPE = "gitlab-aws-oidc-fleet:index:ProjectAccess"


def _must_equal(planned: str, what: str) -> Callable[[str], str]:
    """An apply() check: the cloud's value must be what the plan showed (e.g. an ARN)."""

    def check(actual: str) -> str:
        if actual != planned:
            raise pulumi.RunError(f"{what} is {actual}, but the plan says {planned}")
        return actual

    return check


@dataclass(frozen=True)
class RoleSettings:
    """What every role of a stack shares."""

    path: str
    max_session_duration: int
    permissions_boundary: str | None

    @classmethod
    def of(cls, plan: Plan) -> RoleSettings:
        return cls(plan.role_path, plan.max_session_duration, plan.permissions_boundary)


class ProjectAccess(pulumi.ComponentResource):
    """One project's AWS access: its role, its policies and its two CI/CD variables."""

    role: aws.iam.Role

    def __init__(self, project: ProjectPlan, settings: RoleSettings, *, depends_on: list[pulumi.Resource],
                 gitlab_provider: pulumi.ProviderResource | None, managed_arns: Mapping[str, pulumi.Input[str]] | None = None,
                 adoption: Adoption | None = None, api_url: str | None = None,
                 opts: pulumi.ResourceOptions | None = None):
        name = f"project-{project.id}"
        super().__init__(COMPONENT_TYPE, name, {"projectId": project.id, "path": project.path}, opts)
        adoption = adoption or Adoption()  # what fleet:adopt takes over: declared with Pulumi's import option
        self.role = aws.iam.Role(
            f"{name}-role",
            name=project.role_name,
            path=settings.path,
            description=project.description,
            assume_role_policy=json.dumps(project.trust_policy),
            max_session_duration=settings.max_session_duration,
            permissions_boundary=settings.permissions_boundary,
            tags=project.tags,
            opts=pulumi.ResourceOptions(parent=self, depends_on=depends_on, import_=adoption.roles.get(project.id)),
        )
        role_arn = self.role.arn.apply(_must_equal(project.role_arn, f"role ARN of {project.path}"))
        self.sub_claim: SubClaimComponents | None = None
        if project.manage_sub_claim:
            if api_url is None:
                raise ValueError(f"project {project.path}: its sub claim components are managed, but no GitLab API URL was given")
            # Set only after the role trusts the new form too (in a switching run it trusts both).
            self.sub_claim = SubClaimComponents(f"{name}-sub-claim", project_id=project.id, api_url=api_url,
                                                components=list(project.sub_components),
                                                opts=pulumi.ResourceOptions(parent=self, depends_on=[self.role]))
        self._attach(name, project.policies, managed_arns or {})
        # The ARN reaches ROLE_ARN from the created role (checked against the plan), so it waits for the role.
        values: dict[str, pulumi.Input[str]] = {v.key: v.value for v in project.variables}
        values[ROLE_VARIABLE] = role_arn
        self.variables = [
            gitlab.ProjectVariable(
                f"{name}-{v.key}",
                project=str(project.id),
                key=v.key,
                value=values[v.key],
                environment_scope=v.environment_scope,
                protected=v.protected,
                masked=v.masked,
                raw=True,
                description=v.description,
                opts=pulumi.ResourceOptions(parent=self, provider=gitlab_provider,
                                            import_=adoption.variables.get((project.id, v.key))),
            )
            for v in project.variables
        ]
        self.register_outputs({"roleArn": role_arn})

    def _attach(self, name: str, policies: Sequence[PolicyPlan], managed_arns: Mapping[str, pulumi.Input[str]]) -> None:
        """The role's policies, exclusively: inline ones and attachments someone adds by hand are removed on the next up."""
        inline = [p for p in policies if p.document is not None]
        attached = [p for p in policies if p.document is None]
        arns: list[pulumi.Input[str]] = [managed_arns[p.name] if p.attachment == "managed" else p.arn or "" for p in attached]
        opts = pulumi.ResourceOptions(parent=self)  # shared: each resource merges it into a copy of its own
        declared: list[pulumi.Resource] = [
            aws.iam.RolePolicy(f"{name}-policy-{p.name}", role=self.role.name, name=p.name, policy=json.dumps(p.document), opts=opts)
            for p in inline]
        declared += [aws.iam.RolePolicyAttachment(f"{name}-attach-{p.name}", role=self.role.name, policy_arn=arn, opts=opts)
                     for p, arn in zip(attached, arns, strict=True)]
        after = pulumi.ResourceOptions(parent=self, depends_on=declared)
        aws.iam.RolePoliciesExclusive(f"{name}-inline-exclusive", role_name=self.role.name,
                                      policy_names=[p.name for p in inline], opts=after)
        aws.iam.RolePolicyAttachmentsExclusive(f"{name}-attachments-exclusive", role_name=self.role.name,
                                               policy_arns=arns, opts=after)


def declare_managed_policies(plan: Plan) -> dict[str, pulumi.Output[str]]:
    """One customer managed policy per shared library entry; its ARN (checked against the plan) by entry name."""
    arns = {}
    for m in plan.managed_policies:
        policy = aws.iam.Policy(f"policy-{m.name}", name=m.policy_name, path=m.path, description=m.description[:1000],
                                policy=json.dumps(m.document), tags={"managed-by": MANAGED_BY, "fleet-stack": plan.stack})
        arns[m.name] = policy.arn.apply(_must_equal(m.arn, f"the ARN of managed policy {m.name}"))
    return arns


def declare(plan: Plan, *, gitlab_provider: pulumi.ProviderResource | None = None,
            adoption: Adoption | None = None, api_url: str | None = None) -> dict[str, Any]:
    """Declare every resource of the plan, importing what `adoption` names; returns the stack outputs.
    `api_url`: the GitLab instance (without /api/v4) where managed sub claim components are set."""
    depends_on: list[pulumi.Resource] = []
    provider_arn: pulumi.Input[str] = plan.provider_arn
    if plan.create_provider:
        provider = aws.iam.OpenIdConnectProvider(
            "gitlab-oidc-provider",
            url=plan.issuer,
            client_id_lists=[plan.audience],
            tags={"managed-by": MANAGED_BY, "fleet-stack": plan.stack},
            opts=pulumi.ResourceOptions(import_=adoption.provider if adoption else None),
        )
        provider_arn = provider.arn.apply(_must_equal(plan.provider_arn, "the OIDC provider's ARN"))
        depends_on.append(provider)
    settings = RoleSettings.of(plan)
    managed_arns = declare_managed_policies(plan)
    access = {p.path: ProjectAccess(p, settings, depends_on=depends_on, gitlab_provider=gitlab_provider, managed_arns=managed_arns,
                                    adoption=adoption, api_url=api_url)
              for p in plan.projects}
    return {
        ROLES_OUTPUT: {path: a.role.arn for path, a in access.items()},
        ROLE_NAMES_OUTPUT: deployed_output({p.id: p.role_name for p in plan.projects}),
        POLICIES_OUTPUT: {str(p.id): p.policies_output() for p in plan.projects},
        "skipped": [s.to_json() for s in plan.skipped],
        "counts": plan.counts(),
        "providerArn": provider_arn,
        SUB_CLAIMS_OUTPUT: {str(p.id): {"components": list(p.sub_components), "original": claim.original}
                            for p, claim in ((p, access[p.path].sub_claim) for p in plan.projects) if claim is not None},
    }
