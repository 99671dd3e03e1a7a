"""One module per format; importing this package registers them all."""
from . import fake  # noqa: F401
from . import gguf  # noqa: F401
