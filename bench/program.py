"""The Pulumi program's cost against a bare program registering the same resources, under constant-time mocks.

    .venv/bin/python bench/program.py                 # 1,000 / 5,000 / 10,000 projects (~4 min, 7 GB at most)
    .venv/bin/python bench/program.py --sizes 50,500  # fewer or smaller sizes
    .venv/bin/python bench/program.py --pause-bare    # like for like: the bare program's collector paused too

"The program" is fleet/program.py main(): config -> discovery -> plan -> checks -> resources.declare -> outputs,
under pulumi.runtime.set_mocks with mocks that answer every resource and invoke at once with canned ids and ARNs.
Discovery is served in memory (fleet.program.fetch_inventory returns a parsed listing; the GitLab side is
benchmarked apart), and the stack is in its steady state: its previous outputs already hold every project, every
role exists, and its OIDC provider is its own (scheduled runs and previews). The run is an `up` (the guard runs
too). IAM allows at most 5,000 roles per account, so fleet:quotas.rolesPerAccount is raised in-process to plan
10,000 in one stack.

The stack attaches two library entries to every role: `caller-identity` (one customer managed policy of the stack,
attached to each role) and `s3-artifacts` (rendered per project: an inline policy), so a project has 8 resources:
the component, its role, the inline policy, the attachment, the two exclusive resources and two CI/CD variables.

"Bare" is a plain program registering the same resource types and counts (the OIDC provider, the GitLab provider,
the managed policy; per project a role, an inline policy, an attachment, the two exclusive resources and two CI/CD
variables; checked against what the program registered) with constant inputs, no component, no planning, no
outputs, under the same mocks and the SDK's default settings (the collector on, as in any plain program;
`--pause-bare` pauses it as fleet/program.py's entry does, to see what the program itself adds).

Each (program or bare, size) runs in its own subprocess, so peak memory is per size and one run cannot warm or
fill another. The bare and the program of one size run side by side (each keeps one core busy; on 2 idle cores
their times were within 6% of those measured one by one), so the default sizes take about 4 minutes;
`--one-at-a-time` runs them one after the other (about 7 minutes). Memory is the process's ru_maxrss (Linux:
KiB): it counts every allocation (the SDK's protobuf and gRPC objects live outside Python's allocator, which
tracemalloc misses) and costs nothing while measured, where tracemalloc would slow every allocation and skew the
time. Memory per project is the peak minus the resident size just before the run (after imports and the
listing), over the projects.

The last line is machine-readable: `program ratio_vs_bare=R ms_per_project_10k=M peak_mb_10k=P`, R the worst
ratio of wall times over the sizes, M and P the program's at the largest size run (named 10k whatever it is).
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

ACCOUNT = "111111111111"
STACK = "bench"
ISSUER = "https://gitlab.example.com"
SIZES = (1_000, 5_000, 10_000)
NOT_IN_BARE = {"gitlab-aws-oidc-fleet:index:ProjectAccess", "pulumi:pulumi:StackReference"}  # the component; a read
CONFIG = {
    "aws:region": "eu-west-1",
    "fleet:accountId": ACCOUNT,
    "fleet:gitlab": json.dumps({"url": ISSUER, "group": "shop"}),
    "fleet:trust": json.dumps({"refs": ["branch:{default_branch}", "tag:v*"]}),
    "fleet:variables": json.dumps({"environmentScope": "production", "protected": True}),
    # one shared managed policy attached to every role, and one rendered per project (inline): 8 resources a project
    "fleet:policies": json.dumps({"default": ["caller-identity", "s3-artifacts"]}),
}


def listing(n: int) -> dict[str, Any]:
    """A group of `n` projects in 50 subgroups, as GitLab lists it."""
    from tests.gitlab_double import make_group, make_project
    groups = [make_group(1, "shop")] + [make_group(2 + i, f"shop/team-{i}", 1) for i in range(50)]
    return {"group": {"id": 1, "full_path": "shop"},
            "projects": [make_project(10_000 + i, f"shop/team-{i % 50}/svc-{i}", groups) for i in range(n)]}


def resident_kib() -> int:
    """The process's resident size now (Linux)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


def make_mocks(previous_outputs: dict[str, Any], role_names: list[str], counts: Counter[str]) -> Any:
    """Mocks that answer at once: canned ids and ARNs, the stack's previous outputs, every role already existing.
    `counts` gets the resources registered, by type."""
    import pulumi

    class ConstantMocks(pulumi.runtime.Mocks):
        def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
            inputs = args.inputs
            counts[args.typ] += 1
            if args.typ == "pulumi:pulumi:StackReference":
                return inputs["name"], {"name": inputs["name"], "outputs": previous_outputs, "secretOutputNames": []}
            if args.typ == "aws:iam/role:Role":
                return inputs["name"], {**inputs, "arn": f"arn:aws:iam::{ACCOUNT}:role{inputs.get('path', '/')}{inputs['name']}"}
            if args.typ == "aws:iam/policy:Policy":
                return inputs["name"], {**inputs, "arn": f"arn:aws:iam::{ACCOUNT}:policy{inputs.get('path', '/')}{inputs['name']}"}
            if args.typ == "aws:iam/openIdConnectProvider:OpenIdConnectProvider":
                arn = f"arn:aws:iam::{ACCOUNT}:oidc-provider/{inputs['url'].removeprefix('https://')}"
                return arn, {**inputs, "arn": arn}
            return f"{args.name}-id", inputs

        def call(self, args: pulumi.runtime.MockCallArgs) -> dict[str, Any]:
            if args.token == "aws:index/getCallerIdentity:getCallerIdentity":
                return {"accountId": ACCOUNT, "arn": f"arn:aws:iam::{ACCOUNT}:user/ci", "userId": "AIDA", "id": ACCOUNT}
            if args.token == "aws:iam/getRoles:getRoles":
                return {"names": role_names, "arns": [], "id": ACCOUNT}
            if args.token == "aws:iam/getOpenIdConnectProvider:getOpenIdConnectProvider":
                return {"arn": args.args["arn"], "url": ISSUER, "clientIdLists": [ISSUER],
                        "tags": {"managed-by": "gitlab-aws-oidc-fleet", "fleet-stack": STACK}}
            raise NotImplementedError(args.token)

    return ConstantMocks()


def run_program(n: int) -> tuple[float, int, int, Counter[str]]:
    """fleet.program.main() for `n` projects in the steady state: seconds, peak KiB, resident KiB before, resources."""
    import pulumi

    from fleet import program
    from fleet.config import QuotasConfig
    from fleet.deployed import Deployed, deployed_output
    from fleet.inventory import parse_inventory
    from fleet.planner import build_plan
    from fleet.policies import stack_library

    inventory = parse_inventory(listing(n))
    parse = program.parse_config
    program.parse_config = lambda values: dataclasses.replace(parse(values), quotas=QuotasConfig(roles_per_account=10**6))
    program.fetch_inventory = lambda *args, **kwargs: inventory
    os.environ["GITLAB_TOKEN"] = "glpat-bench"
    scratch = tempfile.TemporaryDirectory(prefix="fleet-bench-")  # removed when the process ends
    stacks_dir = Path(scratch.name) / "stacks"
    stacks_dir.mkdir()
    pulumi.runtime.set_all_config(dict(CONFIG))
    config = program.config_from_pulumi()
    plan = build_plan(config, inventory, STACK, Deployed(), library=stack_library(config.policies, ROOT), region="eu-west-1")
    previous = {"roleNames": deployed_output({p.id: p.role_name for p in plan.projects}),
                "roles": {p.path: p.role_arn for p in plan.projects},
                "policies": {str(p.id): p.policies_output() for p in plan.projects}}
    counts: Counter[str] = Counter()
    mocks = make_mocks(previous, [p.role_name for p in plan.projects], counts)
    del plan
    pulumi.runtime.set_mocks(mocks, project="gitlab-aws-oidc-fleet", stack=STACK, preview=False, organization="organization")
    pulumi.runtime.set_all_config(dict(CONFIG))
    outputs: dict[str, Any] = {}

    @pulumi.runtime.test
    def go() -> Any:
        return pulumi.Output.all(**program.main(stacks_dir)).apply(outputs.update)

    restore = program.pause_collector()  # as __main__.py does, for the rest of the run
    before = resident_kib()
    start = time.perf_counter()
    go()
    seconds = time.perf_counter() - start
    restore()
    if outputs["counts"]["roles"] != n or len(outputs["roles"]) != n:
        raise SystemExit(f"the program declared {outputs['counts']['roles']} roles, not {n}")
    return seconds, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, before, counts


def run_bare(n: int, paused: bool = False) -> tuple[float, int, int, Counter[str]]:
    """A plain program registering the same resources with constant inputs: seconds, peak KiB, resident KiB before,
    resources. `paused`: with the collector paused as the program pauses it (like for like)."""
    import pulumi
    import pulumi_aws as aws
    import pulumi_gitlab as gitlab

    document = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:GetCallerIdentity",
                                                                   "Resource": "*"}]})
    counts: Counter[str] = Counter()
    pulumi.runtime.set_mocks(make_mocks({}, [], counts), project="gitlab-aws-oidc-fleet", stack=STACK, preview=False,
                             organization="organization")
    pulumi.runtime.set_all_config(dict(CONFIG))
    arn = f"arn:aws:iam::{ACCOUNT}:policy/gitlab-aws-oidc-fleet/fleet-{STACK}.caller-identity"
    inline = json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"],
         "Resource": f"arn:aws:s3:::gitlab-artifacts-{ACCOUNT}-eu-west-1/shop/team/svc/*"},
        {"Effect": "Allow", "Action": "s3:ListBucket", "Resource": f"arn:aws:s3:::gitlab-artifacts-{ACCOUNT}-eu-west-1",
         "Condition": {"StringLike": {"s3:prefix": ["shop/team/svc/*"]}}}]})

    @pulumi.runtime.test
    def go() -> Any:
        provider = aws.iam.OpenIdConnectProvider("gitlab-oidc-provider", url=ISSUER, client_id_lists=[ISSUER])
        gitlab_provider = gitlab.Provider("gitlab", base_url=f"{ISSUER}/api/v4/")
        aws.iam.Policy("policy-caller-identity", name=f"fleet-{STACK}.caller-identity", path="/gitlab-aws-oidc-fleet/",
                       policy=document)
        for i in range(n):
            role = aws.iam.Role(f"role-{i}", name=f"gitlab-{i}", assume_role_policy=document,
                                opts=pulumi.ResourceOptions(depends_on=[provider]))
            aws.iam.RolePolicy(f"policy-{i}", role=f"gitlab-{i}", name="s3-artifacts", policy=inline)
            aws.iam.RolePolicyAttachment(f"attach-{i}", role=f"gitlab-{i}", policy_arn=arn)
            aws.iam.RolePoliciesExclusive(f"inline-{i}", role_name=f"gitlab-{i}", policy_names=["s3-artifacts"])
            aws.iam.RolePolicyAttachmentsExclusive(f"attachments-{i}", role_name=f"gitlab-{i}", policy_arns=[arn])
            for key in ("GITLAB_AWS_ACCOUNT_ID", "ROLE_ARN"):
                gitlab.ProjectVariable(f"var-{i}-{key}", project=str(i), key=key, value=ACCOUNT, environment_scope="production",
                                       opts=pulumi.ResourceOptions(provider=gitlab_provider))
        return role.arn

    if paused:
        gc.disable()
    before = resident_kib()
    start = time.perf_counter()
    go()
    seconds = time.perf_counter() - start
    return seconds, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, before, counts


def child(kind: str, n: int) -> None:
    seconds, peak, before, counts = run_program(n) if kind == "program" else run_bare(n, paused=kind == "bare-paused")
    print(json.dumps({"seconds": seconds, "peak_kib": peak, "before_kib": before, "resources": counts}))


def measure(kinds: tuple[str, ...], n: int, together: bool) -> list[dict[str, Any]]:
    """Each kind's run for `n` projects in a process of its own: side by side when `together`, else one by one."""
    results = []
    running: list[tuple[str, subprocess.Popen[str]]] = []
    for kind in kinds:
        running.append((kind, subprocess.Popen([sys.executable, __file__, "--child", kind, str(n)], stdout=subprocess.PIPE,
                                               stderr=subprocess.PIPE, text=True)))
        if not together:
            results.append(finish(*running.pop(), n))
    results += [finish(kind, process, n) for kind, process in running]
    return results


def finish(kind: str, process: subprocess.Popen[str], n: int) -> dict[str, Any]:
    out, err = process.communicate()
    if process.returncode != 0:
        raise SystemExit(f"bench/program.py: the {kind} run for {n} projects failed:\n{err[-4000:]}")
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


def sizes_arg(text: str) -> tuple[int, ...]:
    sizes = tuple(int(part) for part in text.split(","))
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError("sizes are positive whole numbers separated by commas, e.g. 1000,5000")
    return sizes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=sizes_arg, default=SIZES, help="project counts, e.g. 1000,5000,10000")
    parser.add_argument("--pause-bare", action="store_true",
                        help="pause the bare program's collector too (like for like; the target compares to a plain program)")
    parser.add_argument("--one-at-a-time", action="store_true",
                        help="run the bare and the program one after the other (the default runs them side by side on "
                             "machines with 2 cores or more)")
    parser.add_argument("--child", nargs=2, metavar=("KIND", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]))
        return
    together = not args.one_at_a_time and (os.cpu_count() or 1) >= 2
    ratios = []
    for n in sorted(args.sizes):
        bare, prog = measure(("bare-paused" if args.pause_bare else "bare", "program"), n, together)
        declared = {typ: count for typ, count in prog["resources"].items() if typ not in NOT_IN_BARE}
        if declared != bare["resources"]:
            raise SystemExit(f"bench/program.py: the bare program does not register what the program does: {declared} "
                             f"against {bare['resources']}")
        ratio = prog["seconds"] / bare["seconds"]
        ratios.append(ratio)
        per_project_kib = (prog["peak_kib"] - prog["before_kib"]) / n
        print(f"{n:>6} projects: program {prog['seconds']:7.2f} s {prog['seconds'] * 1000 / n:6.2f} ms/project "
              f"peak {prog['peak_kib'] / 1024:6.0f} MB ({per_project_kib:5.1f} KB/project) | bare {bare['seconds']:7.2f} s "
              f"{bare['seconds'] * 1000 / n:6.2f} ms/project peak {bare['peak_kib'] / 1024:6.0f} MB "
              f"({(bare['peak_kib'] - bare['before_kib']) / n:5.1f} KB/project) | ratio {ratio:.2f}", flush=True)
    print(f"program ratio_vs_bare={max(ratios):.2f} ms_per_project_10k={prog['seconds'] * 1000 / n:.1f} "
          f"peak_mb_10k={prog['peak_kib'] / 1024:.0f}")


if __name__ == "__main__":
    main()
