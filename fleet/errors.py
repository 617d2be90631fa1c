"""Errors the fleet raises for users: each carries a message that says what to fix."""

from __future__ import annotations


class FleetError(Exception):
    """Base class: the command line prints these without a traceback and exits with `exit_code`."""

    exit_code = 1


class UsageError(FleetError):
    """The command line is wrong: an unknown stack, a flag or its value."""

    exit_code = 64  # EX_USAGE (sysexits.h)


class ConfigError(FleetError):
    """One or more stack configuration values are invalid."""

    exit_code = 78  # EX_CONFIG (sysexits.h)

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("invalid stack configuration:\n" + "\n".join(f"  - {p}" for p in self.problems))

    def in_file(self, path: str) -> ConfigError:
        """The same problems, each saying which file to edit."""
        return ConfigError([f"edit {path}: {p}" for p in self.problems])


class StackFileError(FleetError):
    """A stack file is not YAML that `pulumi up` and `plan` read alike."""

    exit_code = 78  # EX_CONFIG (sysexits.h)


class DiscoveryError(FleetError):
    """The GitLab group could not be listed completely."""


class InventoryError(FleetError):
    """A saved or fetched project listing has an unexpected shape."""


class PlanError(FleetError):
    """The plan cannot be made safely (e.g. a trust policy over IAM's size limit)."""


class PolicyError(PlanError):
    """The stack's policy selection or library cannot be applied (a refused document, a privilege, a quota)."""

    exit_code = 78  # EX_CONFIG: fixed by editing the library, fleet:policies or fleet:quotas
