"""ar-cli: the `ar` command (quantize, eval, list); no logic a library user would need."""
from .__about__ import __version__

__all__ = ["__version__"]
