"""One module per format; importing this package registers them all."""
from . import auto_round, awq, compressed_tensors, fake, gptq  # noqa: F401
from . import gguf  # noqa: F401
