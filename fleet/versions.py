"""Versions pinned outside requirements.txt, in a module that imports nothing (the command line starts fast)."""

PULUMI_VERSION = "3.272.0"  # the CLI the README, the pipeline and the SDK in requirements.txt agree on
