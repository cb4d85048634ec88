"""The package version (single source, read by pyproject through importlib.metadata when installed)."""

__version__ = "0.1.0"
