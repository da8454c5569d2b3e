"""``RNNConfig``: the recurrent translators of ``models/rnn.py`` (RNNsearch and the RNN
encoder-decoder without attention), one config with named presets.

=============  =========  =======  =========  ======  =================================
preset         embedding  hidden   alignment  maxout  what it is
=============  =========  =======  =========  ======  =================================
rnnsearch-50   620        1000     1000       500     Bahdanau et al. (2015), Appendix A
rnnsearch-tiny 64         96       96         64      a few minutes on two CPU cores
=============  =========  =======  =========  ======  =================================

The same presets build ``RNNEncDec`` (the baseline of the paper, "RNNencdec", has the same
sizes). The paper's vocabularies are 30,000 words per language; a task sets its own.
"""

from __future__ import annotations

from dataclasses import dataclass

from atenea.models.config import _Presets


@dataclass
class RNNConfig(_Presets):
    """A bidirectional GRU encoder (``hidden_dim`` per direction) and a GRU decoder
    (``decoder_dim``, default ``hidden_dim``) with a deep output. Defaults: RNNsearch-50.

    - ``score``: the alignment model, ``"additive"`` (the paper), ``"dot"`` or ``"general"``
      (Luong et al. 2015; dot needs ``decoder_dim == 2 * hidden_dim``). RNNEncDec has none.
    - ``output``: ``"maxout"`` (the paper's deep output: ``t = maxout(U_o s_i + V_o E y_{i-1} +
      C_o c_i)``, then ``W_o t``) or ``"linear"`` (logits straight from the decoder state).
    - ``dropout``: on the embeddings and before the output layer (the paper used none).
    """

    src_vocab_size: int = 30000
    tgt_vocab_size: int = 30000
    embedding_dim: int = 620
    hidden_dim: int = 1000
    decoder_dim: int | None = None  # None: hidden_dim
    alignment_dim: int = 1000
    maxout_dim: int = 500
    score: str = "additive"  # additive | dot | general
    output: str = "maxout"  # maxout | linear
    dropout: float = 0.0
    share_embeddings: bool = False  # one table for source and target (a shared vocabulary)
    pad_token_id: int = 0
    bos_token_id: int = 1
    eos_token_id: int = 2

    PRESETS = {
        "rnnsearch-50": {},
        "rnnsearch-tiny": dict(
            src_vocab_size=1000, tgt_vocab_size=1000, embedding_dim=64, hidden_dim=96,
            alignment_dim=96, maxout_dim=64,
        ),
    }  # fmt: skip

    def __post_init__(self):
        self._check_ranges()
        if self.output not in ("maxout", "linear"):
            raise ValueError(f"output: expected 'maxout' or 'linear', got {self.output!r}")
        for name in ("embedding_dim", "hidden_dim", "alignment_dim", "maxout_dim"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: expected an integer >= 1, got {getattr(self, name)}")

    @property
    def decoder_width(self) -> int:
        return self.decoder_dim or self.hidden_dim
