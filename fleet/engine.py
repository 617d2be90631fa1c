"""The Pulumi engine through the Automation API: select a stack, run preview / refresh preview / up (optionally limited
to --target URNs), collect events; read the stack's outputs and config.

Only this module talks to the Pulumi CLI. It returns the engine's own events (pulumi.automation.events) for the
functional core to read, and turns the CLI's failures into FleetErrors that say what to do.
"""

from __future__ import annotations

import os
import re
import shutil
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pulumi import automation as auto
from pulumi.automation import errors as auto_errors
from pulumi.automation.events import EngineEvent

from .errors import FleetError
from .versions import PULUMI_VERSION

INSTALL_HINT = f"curl -fsSL https://get.pulumi.com | sh -s -- --version {PULUMI_VERSION}"
# The CLI's one error line when --expect-no-changes finds changes ("... were proposed" in preview).
NO_CHANGES_EXPECTED = re.compile(r"error: no changes were expected (for \w+ )?but changes (were proposed|occurred)")

Log = Callable[[str], None]


class EngineError(FleetError):
    """The Pulumi CLI is missing, refused, or failed; the message says which and what to do."""


class StackLockedError(EngineError):
    """Another run holds the stack's lock."""


@dataclass
class Run:
    """What one engine operation reported: its events in order, and whether --expect-no-changes tripped."""

    events: list[EngineEvent] = field(default_factory=list)
    stderr: list[str] = field(default_factory=list)
    changes_unexpected: bool = False

    def __post_init__(self) -> None:
        self._lock = threading.Lock()

    def add(self, event: EngineEvent) -> None:  # the SDK calls this from its event-stream thread
        with self._lock:
            self.events.append(event)

    def error_line(self, line: str) -> None:
        self.stderr.append(line)

    def only_changes_proposed(self) -> bool:
        """The run failed only because --expect-no-changes found changes: the CLI's one error line is that, the
        preview completed (its summary arrived) and nothing failed on the way."""
        errors = [line.strip() for line in self.stderr if line.strip().startswith("error:")]
        failed = any((e.diagnostic_event is not None and e.diagnostic_event.severity == "error")
                     or e.res_op_failed_event is not None for e in self.events)
        summary = any(e.summary_event is not None for e in self.events)
        return bool(errors) and all(NO_CHANGES_EXPECTED.fullmatch(line) for line in errors) and summary and not failed


def pulumi_command(*, which: Callable[[str], str | None] = shutil.which) -> auto.PulumiCommand:
    """The `pulumi` on PATH, checked against the SDK's minimum version; one sentence when there is none."""
    found = which("pulumi")
    if found is None:
        raise EngineError(f"the Pulumi CLI (pulumi) is not installed or not on PATH: install version {PULUMI_VERSION} "
                          f"with `{INSTALL_HINT}` and add ~/.pulumi/bin to PATH.")
    binary = Path(found)
    try:
        if binary.parent.name == "bin":
            return auto.PulumiCommand(root=str(binary.parent.parent))
        return auto.PulumiCommand()
    except auto_errors.InvalidVersionError as err:
        raise EngineError(f"the Pulumi CLI at {found} is too old for this program ({err}); install version "
                          f"{PULUMI_VERSION} with `{INSTALL_HINT}`.") from err
    except OSError as err:
        raise EngineError(f"the Pulumi CLI at {found} cannot be run ({err}); reinstall version {PULUMI_VERSION} "
                          f"with `{INSTALL_HINT}`.") from err


def _explain(err: auto_errors.CommandError, stack: str, doing: str) -> EngineError:
    """One sentence for a failed CLI command, keeping the CLI's own error lines (secrets are masked by the CLI)."""
    text = str(err)
    # The SDK's message is "code: N / stdout: … / stderr: …"; the first line of each stream carries its label.
    lines = [re.sub(r"^(stdout|stderr): ", "", line.strip()) for line in text.splitlines()]
    if isinstance(err, auto_errors.ConcurrentUpdateError):
        holders = [line for line in lines if "created by" in line] or [line for line in lines if "locked by" in line]
        return StackLockedError(f"stack {stack} is locked by another run ({'; '.join(holders) or 'holder not reported'}): "
                                "wait for it to finish; if it died, check that nothing runs and remove the lock with "
                                f"`pulumi cancel --stack {stack}`. Nothing was changed.")
    if isinstance(err, auto_errors.StackNotFoundError):
        backend = os.environ.get("PULUMI_BACKEND_URL", "the backend you are logged in to")
        return EngineError(f"stack {stack} does not exist in {backend}: create it once with `pulumi stack init {stack}` "
                           "(see the README, \"From the demo to your first pulumi up\"), or set PULUMI_BACKEND_URL.")
    errors = [line for line in lines if line.startswith("error:")]
    detail = "; ".join(errors) if errors else _tail(text)
    return EngineError(f"pulumi failed while {doing} stack {stack}: {detail}")


def _tail(text: str, lines: int = 12) -> str:
    kept = [line for line in text.splitlines() if line.strip()]
    return "\n  " + "\n  ".join(kept[-lines:]) if kept else "(no output)"


@dataclass
class Engine:
    """One stack of the project in `project_dir`, run by the Pulumi CLI."""

    project_dir: Path
    stack_name: str
    env: Mapping[str, str] = field(default_factory=dict)  # extra environment for the CLI and the program
    command: auto.PulumiCommand | None = None
    log: Log | None = None  # the CLI's own progress lines (stderr in the command line)

    def __post_init__(self) -> None:
        if not (self.project_dir / "Pulumi.yaml").is_file():
            raise EngineError(f"{self.project_dir} holds no Pulumi.yaml: run from the project's directory.")
        command = self.command or pulumi_command()
        try:
            workspace = auto.LocalWorkspace(work_dir=str(self.project_dir), pulumi_command=command, env_vars=dict(self.env))
            self._stack = auto.Stack.select(self.stack_name, workspace)
        except auto_errors.CommandError as err:
            raise _explain(err, self.stack_name, "selecting") from err

    def _output(self, line: str) -> None:
        if self.log is not None:
            self.log(line)

    @property
    def project_name(self) -> str:
        """The Pulumi project's name (Pulumi.yaml `name`): the second part of every URN of the stack."""
        return str(self._stack.workspace.project_settings().name)

    def outputs(self) -> dict[str, Any]:
        """The stack's outputs from its last update (`pulumi stack output --json`), secrets in plain text; empty
        for a stack never updated."""
        try:
            return {key: output.value for key, output in self._stack.outputs().items()}
        except auto_errors.CommandError as err:
            raise _explain(err, self.stack_name, "reading the outputs of") from err

    def config_value(self, key: str) -> str | None:
        """One key of the stack's config as `pulumi config` reads it (a secret decrypted), None when it is not set."""
        try:
            value = self._stack.get_all_config().get(key)
        except auto_errors.CommandError as err:
            raise _explain(err, self.stack_name, "reading the config of") from err
        return None if value is None else value.value

    def preview(self, *, expect_no_changes: bool = False, target: Sequence[str] = (),
                env: Mapping[str, str] | None = None) -> Run:
        """A preview with a diff (refreshing first, as Pulumi.yaml asks); writes nothing to the stack. `target`:
        URNs or globs (Pulumi's --target): only those resources may change. `env` as in `up`."""
        self._add_env(env)
        run = Run()
        try:
            self._stack.preview(diff=True, refresh=True, color="never", on_event=run.add, on_output=self._output,
                                on_error=run.error_line, expect_no_changes=expect_no_changes or None,
                                target=list(target) or None)
        except auto_errors.CommandError as err:
            if expect_no_changes and run.only_changes_proposed():
                run.changes_unexpected = True
                return run
            raise _explain(err, self.stack_name, "previewing") from err
        return run

    def _add_env(self, env: Mapping[str, str] | None) -> None:
        """Variables for the CLI and the program of this and later commands of the workspace."""
        workspace = self._stack.workspace
        workspace.env_vars = {**workspace.env_vars, **(env or {})}

    def refresh_preview(self) -> Run:
        """`pulumi refresh --preview-only`: what the cloud holds that the state does not; writes nothing."""
        run = Run()
        try:
            self._stack.preview_refresh(color="never", on_event=run.add, on_output=self._output)
        except auto_errors.CommandError as err:
            raise _explain(err, self.stack_name, "refreshing (preview only)") from err
        return run

    def up(self, env: Mapping[str, str] | None = None, *, target: Sequence[str] = ()) -> Run:
        """Refresh, then update the stack; `env` is added to the environment of the CLI and the program; `target` as
        in `preview`."""
        self._add_env(env)
        run = Run()
        try:
            self._stack.up(refresh=True, color="never", on_event=run.add, on_output=self._output,
                           target=list(target) or None)
        except auto_errors.CommandError as err:
            raise _explain(err, self.stack_name, "updating") from err
        return run
