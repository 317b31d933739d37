"""The ``frigo`` command line: one entry point for the edge, the cloud, the simulator and operators."""

__all__ = ["admin", "cli", "demo", "evaluate"]
