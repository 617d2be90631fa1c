"""The lean program: what the engine is told stays the same, the collector pause stays in the Pulumi entry's
process, and bench/program.py ends with its machine-readable line."""

from __future__ import annotations

import gc
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from moto import mock_aws
from pulumi.runtime.mocks import MockMonitor

from fleet import program
from tests.test_adoption import PROVIDER_ARN, hand_made  # noqa: F401 (a fixture)
from tests.test_adoption import run as run_adopting
from tests.test_program import ACCOUNT, iam_client, library_folder, run, stack_config

ROOT = Path(__file__).resolve().parent.parent
STACK_URN = "urn:pulumi:prod::gitlab-aws-oidc-fleet::pulumi:pulumi:Stack::gitlab-aws-oidc-fleet-prod"
COMPONENT = "gitlab-aws-oidc-fleet:index:ProjectAccess"
LAST_LINE = re.compile(r"program ratio_vs_bare=([0-9]+\.[0-9]{2}) ms_per_project_10k=([0-9]+\.[0-9]) peak_mb_10k=([0-9]+)")


@pytest.fixture
def moto_account(monkeypatch, token):
    monkeypatch.setenv("MOTO_ACCOUNT_ID", ACCOUNT)


def short(urn: str) -> str:
    """`<type chain>::<name>` of a URN, or of a provider reference (`<urn>::<id>`). The mocks put the stack's type in
    front of every chain, where the engine leaves it out (`pulumi:pulumi:Stack$`): dropped."""
    return "::".join(urn.split("::")[2:4]).removeprefix("pulumi:pulumi:Stack$")


def registrations(monkeypatch) -> dict[str, dict[str, Any]]:
    """What each RegisterResource call tells the engine (filled while the program runs), by short URN."""
    seen: dict[str, dict[str, Any]] = {}
    register = MockMonitor.RegisterResource

    def recording(self, request):
        urn = self.make_urn(request.parent, request.type, request.name)
        seen[short(urn)] = {"parent": short(request.parent) if request.parent != STACK_URN else "stack",
                            "dependencies": sorted(short(d) for d in request.dependencies),
                            "provider": short(request.provider) if request.provider else None,
                            "import": request.importId or None}
        return register(self, request)

    monkeypatch.setattr(MockMonitor, "RegisterResource", recording)
    return seen


def test_one_projects_resources_keep_their_urns_parents_dependencies_and_provider(shop, tmp_path, moto_account, monkeypatch):
    """A changed URN would replace every role of a live fleet: names, types, parents and ordering stay as deployed
    (this is what the program told the engine before it was made lean)."""
    monkeypatch.setenv("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")
    library_folder(tmp_path)
    config = stack_config(shop)
    config["fleet:policies"] = {"libraries": ["policies"], "default": ["caller-identity"], "allowPrivileged": ["read-only"],
                                "rules": [{"match": {"paths": ["shop/web/**"]}, "attach": ["own-prefix", "read-only"]}]}
    seen = registrations(monkeypatch)
    with mock_aws():
        run(tmp_path, config, iam=iam_client())
    storefront = {urn: what for urn, what in seen.items() if urn.split("::")[-1].startswith("project-122")}
    parent = f"{COMPONENT}::project-122"
    role = f"{COMPONENT}$aws:iam/role:Role::project-122-role"
    inline = f"{COMPONENT}$aws:iam/rolePolicy:RolePolicy::project-122-policy-own-prefix"
    shared = f"{COMPONENT}$aws:iam/rolePolicyAttachment:RolePolicyAttachment::project-122-attach-caller-identity"
    aws_managed = f"{COMPONENT}$aws:iam/rolePolicyAttachment:RolePolicyAttachment::project-122-attach-read-only"
    managed_policy = "aws:iam/policy:Policy::policy-caller-identity"
    gitlab_provider = "pulumi:providers:gitlab::gitlab"

    def child(*dependencies: str, provider: str | None = None) -> dict[str, Any]:
        return {"parent": parent, "dependencies": sorted(dependencies), "provider": provider, "import": None}

    assert storefront == {
        parent: {"parent": "stack", "dependencies": [], "provider": None, "import": None},
        role: child("aws:iam/openIdConnectProvider:OpenIdConnectProvider::gitlab-oidc-provider"),
        inline: child(role),
        shared: child(role, managed_policy),
        aws_managed: child(role),
        f"{COMPONENT}$aws:iam/rolePoliciesExclusive:RolePoliciesExclusive::project-122-inline-exclusive":
            child(role, inline, shared, aws_managed),
        f"{COMPONENT}$aws:iam/rolePolicyAttachmentsExclusive:RolePolicyAttachmentsExclusive::project-122-attachments-exclusive":
            child(role, inline, shared, aws_managed, managed_policy),
        f"{COMPONENT}$gitlab:index/projectVariable:ProjectVariable::project-122-ROLE_ARN": child(role, provider=gitlab_provider),
        f"{COMPONENT}$gitlab:index/projectVariable:ProjectVariable::project-122-GITLAB_AWS_ACCOUNT_ID":
            child(provider=gitlab_provider),
    }


def test_adopted_resources_are_still_imported_and_a_variable_under_the_gitlab_provider(shop, tmp_path, request, monkeypatch):
    """fleet:adopt: each import id reaches the engine with the resource's other options (one options object each)."""
    iam, gitlab_side = request.getfixturevalue("hand_made")  # tests/test_adoption.py: shop/cart made by hand
    iam.tag_role(RoleName="gitlab-shop-cart", Tags=[{"Key": "managed-by", "Value": "gitlab-aws-oidc-fleet"}])
    iam.tag_open_id_connect_provider(OpenIDConnectProviderArn=PROVIDER_ARN,
                                     Tags=[{"Key": "managed-by", "Value": "gitlab-aws-oidc-fleet"}])
    seen = registrations(monkeypatch)
    run_adopting(tmp_path, stack_config(shop, adopt={"variables": True, "roles": True, "provider": True}), iam, [], gitlab_side)
    variable = seen[f"{COMPONENT}$gitlab:index/projectVariable:ProjectVariable::project-101-ROLE_ARN"]
    assert variable == {"parent": f"{COMPONENT}::project-101", "dependencies": [f"{COMPONENT}$aws:iam/role:Role::project-101-role"],
                        "provider": "pulumi:providers:gitlab::gitlab", "import": "101:ROLE_ARN:production"}
    role = seen[f"{COMPONENT}$aws:iam/role:Role::project-101-role"]
    assert role["import"] == "gitlab-shop-cart" and role["dependencies"] == [
        "aws:iam/openIdConnectProvider:OpenIdConnectProvider::gitlab-oidc-provider"]
    assert seen["aws:iam/openIdConnectProvider:OpenIdConnectProvider::gitlab-oidc-provider"]["import"] == PROVIDER_ARN


def test_the_program_leaves_the_collector_as_it_found_it(shop, tmp_path, moto_account):
    """Only the Pulumi entry (a process of its own) pauses the collector; main() run in-process does not."""
    assert gc.isenabled()
    thresholds = gc.get_threshold()
    run(tmp_path, stack_config(shop))
    assert gc.isenabled() and gc.get_threshold() == thresholds


def test_pause_collector_turns_it_back_on_only_if_it_was_on():
    assert gc.isenabled()
    restore = program.pause_collector()
    try:
        assert not gc.isenabled()
    finally:
        restore()
    assert gc.isenabled()
    gc.disable()
    try:
        program.pause_collector()()
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_the_pulumi_entry_runs_the_program_with_the_collector_paused():
    """__main__.py as the language host runs it (runpy), with main() replaced by a probe."""
    probe = ("import gc, runpy, sys; import fleet.program as p; seen = []; "
             "p.main = lambda: seen.append(gc.isenabled()); "
             f"runpy.run_path({str(ROOT / '__main__.py')!r}, run_name='__main__'); print(seen)")
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[False]"


def test_bench_program_ends_with_its_machine_readable_line():
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "program.py"), "--sizes", "20,40"], cwd=ROOT,
                          capture_output=True, text=True, timeout=240, check=False)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert [line.split()[0] for line in lines[:-1]] == ["20", "40"]  # one line per size
    found = LAST_LINE.fullmatch(lines[-1])
    assert found is not None, lines[-1]
    ratio, ms_per_project, peak_mb = float(found[1]), float(found[2]), int(found[3])
    assert ratio > 0 and ms_per_project > 0 and peak_mb > 50
    ratios = [float(line.rsplit("ratio ", 1)[1]) for line in lines[:-1]]
    assert f"{max(ratios):.2f}" == found[1]  # the worst size's ratio
