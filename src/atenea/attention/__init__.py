"""The functional core: ``attention()``, masks, score modifiers, backends, weight recovery.

``atenea.attention`` is both this package and the function: calling the package calls
``atenea.attention.core.attention``. (The design names the layer and its one function alike;
a module cannot be both otherwise, and ``import atenea.attention.masks`` must keep working.)
"""

import sys
import types

from atenea.attention import masks, scores
from atenea.attention.core import attention, select_backend
from atenea.attention.weights import attention_weights

__all__ = ["attention", "attention_weights", "masks", "scores", "select_backend"]


class _CallablePackage(types.ModuleType):
    def __call__(self, *args, **kwargs):
        return attention(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage
