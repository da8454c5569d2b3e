"""atenea: attention and the transformers built on it.

import atenea
from atenea import masks, scores

out = atenea.attention(q, k, v, mask=masks.causal())
"""

from atenea import attention  # the core package; calling it runs attention()
from atenea.attention import attention_weights, masks, scores
from atenea.generation import generate
from atenea.models import load_pretrained, save_pretrained

__version__ = "0.1.0"

__all__ = [
    "attention",
    "attention_weights",
    "generate",
    "load_pretrained",
    "masks",
    "save_pretrained",
    "scores",
    "__version__",
]
