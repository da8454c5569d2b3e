"""The position-wise feed-forward network: the same MLP applied to every token."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from atenea.nn.linear import Linear

ACTIVATIONS = {
    "gelu": F.gelu,  # exact (erf) GELU: BERT
    "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"),  # GPT-2's "gelu_new"
    "relu": F.relu,  # the original Transformer
    "silu": F.silu,
}


class FeedForward(nn.Module):
    """``down(act(up(x)))``, or with ``activation="swiglu"`` (Llama)
    ``down(silu(gate(x)) * up(x))``. ``x (B, L, dim)`` -> ``(B, L, dim)``."""

    def __init__(
        self,
        dim: int,
        hidden: int,
        activation: str = "gelu",
        bias: bool = True,
        dropout: float = 0.0,
    ):
        super().__init__()
        if activation != "swiglu" and activation not in ACTIVATIONS:
            raise ValueError(
                f"activation: expected one of {', '.join([*ACTIVATIONS, 'swiglu'])}, "
                f"got {activation!r}"
            )
        self.activation = activation
        self.up = Linear(dim, hidden, bias=bias)
        self.gate = Linear(dim, hidden, bias=bias) if activation == "swiglu" else None
        self.down = Linear(hidden, dim, bias=bias)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        if self.gate is not None:
            hidden = F.silu(self.gate(x)) * self.up(x)
        else:
            hidden = ACTIVATIONS[self.activation](self.up(x))
        return self.down(self.dropout(hidden))
