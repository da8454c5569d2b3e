"""The functional core: ``attention()``, masks, score modifiers, backends, weight recovery."""

from atenea.attention import masks, scores
from atenea.attention.core import attention, select_backend
from atenea.attention.weights import attention_weights

__all__ = ["attention", "attention_weights", "masks", "scores", "select_backend"]
