"""Errors of ar-export."""
from ar_schemes import ArError


class ExportError(ArError, ValueError):
    """A format that cannot carry a scheme, or a failed write."""
