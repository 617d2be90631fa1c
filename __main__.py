"""Pulumi entry point: `pulumi up` runs the fleet program for the selected stack."""

from fleet.program import main, pause_collector

pause_collector()  # for the whole run: this process runs the program once and exits (see pause_collector)
main()
