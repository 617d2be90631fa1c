"""The README, checked against behaviour: every command it shows runs as written after the quick start.

Each command in a ```sh block is run in a copy of the project (sharing its .venv), in the order the
README gives them; those that list a group talk to the GitLab API double on 127.0.0.1 through an
edited `dev` stack, as a user's would talk to their instance after editing it. Commands that need
what this machine cannot have (the Pulumi CLI, AWS, an installer from the internet) are listed
below with the reason, and a command in no list fails the test: a new README command needs a decision.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest
import yaml

from tests.gitlab_double import GitLabDouble
from tests.sample_group import build_shop

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")

# (pattern on the command, why it is not run here); matched with re.fullmatch.
NOT_RUN_HERE = [
    (r"make test", "the test suite itself: CI runs it on a clean clone (.ci/run)"),
    (r"make bench-(discovery|program)", "a benchmark of minutes, run by hand; tests/test_bench.py runs each script small"),
    (r"curl -fsSL https://get\.pulumi\.com \| sh .*", "installs the Pulumi CLI from the internet, which this machine cannot reach"),
    (r"export PATH=\"\$HOME/\.pulumi/bin:\$PATH\"", "part of installing the Pulumi CLI"),
    (r"(mkdir -p \S+ && )?pulumi .*", "needs the Pulumi CLI (the program itself runs under Pulumi's mocks in test_program.py)"),
    (r"aws .*", "needs AWS credentials"),
    (r"\.venv/bin/python -m fleet audit .*", "needs AWS credentials of the stack's account"),
    (r"export (GITLAB_TOKEN|PULUMI_CONFIG_PASSPHRASE|AWS_PROFILE)=.*", "a secret or profile the user has; the test sets GITLAB_TOKEN itself"),
]
# What a command not run here leaves behind for the next ones: `pulumi stack output --json > outputs.json`.
STAND_INS = {r"pulumi stack output --json > (\S+)": "outputs"}
RUNNABLE = r"(\.venv/bin/python -m fleet|make|sed) .*"


def test_every_shell_block_is_marked_sh():
    """Commands in ```bash/```shell/```console blocks would escape the checks below."""
    assert not re.findall(r"^[ ]*```(bash|shell|console|zsh)\b", README, flags=re.M)


def readme_commands() -> list[str]:
    """The commands of every ```sh block, comments dropped and `\\` continuations joined."""
    commands = []
    for block in re.findall(r"^[ ]*```sh\n(.*?)^[ ]*```", README, flags=re.S | re.M):
        for line in textwrap.dedent(block).replace("\\\n", " ").splitlines():
            command = re.sub(r"(^|\s)#\s.*$", "", line).strip()
            if command:
                commands.append(command)
    return commands


def is_excused(command: str) -> bool:
    return any(re.fullmatch(pattern, command) for pattern, _ in NOT_RUN_HERE)


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A copy of the project as a user has it after the quick start, with `dev` edited to use the API double."""
    copy = tmp_path_factory.mktemp("checkout")
    for name in ("fleet", "stacks", "samples", "iam", "examples"):
        if (ROOT / name).exists():
            shutil.copytree(ROOT / name, copy / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("Makefile", "Pulumi.yaml", "__main__.py", "requirements.txt", "requirements-test.txt"):
        shutil.copy2(ROOT / name, copy / name)
    (copy / ".venv").symlink_to(ROOT / ".venv")
    marker = ROOT / ".venv/.installed"
    if marker.exists():  # the shared .venv is current: make must not rebuild it through the link
        installed = marker.stat().st_mtime
        for name in ("requirements.txt", "requirements-test.txt"):
            os.utime(copy / name, (installed - 1, installed - 1))
    groups, projects = build_shop()
    with GitLabDouble(groups=groups, projects=projects, tokens={"glpat-readme"}) as double:
        dev = copy / "stacks/Pulumi.dev.yaml"
        text = dev.read_text()
        text = re.sub(r'"<your dev AWS account id[^"]*>"', '"444444444444"', text)
        text = text.replace('"<https://your-gitlab-instance>"', f"https://gitlab.acme.test\n    apiUrl: {double.url}")
        text = text.replace("\"<your group's full path or id>\"", "shop")
        assert "<" not in text.split("config:", 1)[1].split("#")[0], text
        dev.write_text(text)
        yield copy


def test_every_readme_command_is_run_or_excused_with_a_reason():
    commands = readme_commands()
    assert len(commands) >= 10, commands
    runnable = [c for c in commands if not is_excused(c)]
    assert any("--stack dev" in c or "STACK=dev" in c for c in runnable), "the README shows no command on an edited stack"
    unknown = [c for c in runnable if not re.fullmatch(RUNNABLE, c)]
    assert not unknown, f"README commands this test does not know how to run: {unknown}"


def write_outputs(project: Path, env: dict[str, str], path: Path) -> None:
    """The outputs a deployed `dev` stack would have: its planned role names as `roleNames`."""
    plan = subprocess.run([".venv/bin/python", "-m", "fleet", "plan", "--stack", "dev", "--format", "json"], cwd=project,
                          env=env, capture_output=True, text=True, timeout=120, check=True)
    names = {str(p["id"]): p["role_name"] for p in json.loads(plan.stdout)["projects"]}
    path.write_text(json.dumps({"roleNames": names, "counts": {"roles": len(names)}}))


def output_problem(command: str, stdout: str, cwd: Path) -> str | None:
    """What is wrong with what a command printed or wrote, judged by what the README says it does."""
    redirect = re.search(r">\s*(\S+)$", command)
    out = (cwd / redirect.group(1)).read_text() if redirect else stdout
    if not out.strip():
        return "printed nothing"
    if redirect and redirect.group(1).endswith(".json"):
        try:
            data = json.loads(out)
        except json.JSONDecodeError as err:
            return f"wrote no JSON to {redirect.group(1)} ({err})"
        if ("plan" in command or "inventory" in command) and not data.get("projects"):
            return f"wrote no projects to {redirect.group(1)}"
    elif "--help" in command:
        return None if "usage:" in out else "printed no usage"
    elif "policies show" in command:
        return None if '"Statement"' in out else "printed no policy document"
    elif re.search(r"-m fleet plan\b|\bmake (plan|demo)\b", command) and "Roles planned for stack" not in out:
        return "printed no plan table"
    return None


def test_every_readme_command_runs_as_written(project):
    # A user's shell: no token but the test's, no virtualenv activated, not inside another make (`make test`).
    env = {k: v for k, v in os.environ.items()
           if k not in ("GITLAB_TOKEN", "VIRTUAL_ENV", "MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES")}
    env["GITLAB_TOKEN"] = "glpat-readme"
    failures = []
    ran = 0
    for command in readme_commands():
        if is_excused(command):
            for pattern in STAND_INS:
                if match := re.fullmatch(pattern, command):
                    write_outputs(project, env, project / match.group(1))
            continue
        result = subprocess.run(["bash", "-c", command], cwd=project, env=env, capture_output=True, text=True, timeout=120)
        ran += 1
        wrong = f"exit {result.returncode}" if result.returncode else output_problem(command, result.stdout, project)
        if wrong:
            failures.append(f"{command}\n  {wrong}: {result.stderr[-800:]}")
    assert ran >= 8
    assert not failures, "\n".join(failures)


def test_the_readme_pipeline_job_is_the_tested_example():
    """The job the README shows is the one tests/test_docs_files.py validates against GitLab's CI schema."""
    example = yaml.safe_load((ROOT / "examples/consumer.gitlab-ci.yml").read_text())
    section = README.split("## Using the variables in a pipeline", 1)[1].split("\n## ", 1)[0]
    blocks = [yaml.safe_load(textwrap.dedent(b)) for b in re.findall(r"```yaml\n(.*?)^\s*```", section, flags=re.S | re.M)]
    assert blocks, "no pipeline job in the README"
    for block in blocks:
        for job, body in block.items():
            assert example.get(job) == body, f"README job {job} differs from examples/consumer.gitlab-ci.yml"
