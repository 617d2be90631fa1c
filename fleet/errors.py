"""Errors the fleet raises for users: each carries a message that says what to fix."""


class FleetError(Exception):
    """Base class: the command line prints these without a traceback and exits non-zero."""


class ConfigError(FleetError):
    """One or more stack configuration values are invalid."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("invalid stack configuration:\n" + "\n".join(f"  - {p}" for p in self.problems))


class DiscoveryError(FleetError):
    """The GitLab group could not be listed completely."""


class InventoryError(FleetError):
    """A saved or fetched project listing has an unexpected shape."""


class PlanError(FleetError):
    """The plan cannot be made safely (e.g. a policy over IAM's size limit)."""
