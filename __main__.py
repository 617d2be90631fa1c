"""Pulumi entry point: `pulumi up` runs the fleet program for the selected stack."""

from fleet.program import main

main()
