"""Errors of ar-core."""
from ar_schemes import ArError


class QuantizeError(ArError, ValueError):
    """Bad options, a model ar-core cannot walk, or a numerical failure, with the fix in the message."""
