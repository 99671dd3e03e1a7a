"""Without a GPU, Triton kernels run in its CPU interpreter. TRITON_INTERPRET must be set before
triton is first imported (transformers may import it), so it is set here, at collection."""
from __future__ import annotations

import os
import sys

import torch

if not torch.cuda.is_available() and "triton" not in sys.modules:
    os.environ.setdefault("TRITON_INTERPRET", "1")
