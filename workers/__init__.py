"""Processes: the Temporal worker, the intake service, the `quell` CLI and the scenario runner."""
