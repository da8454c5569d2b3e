"""Model configurations: one typed dataclass per family, with named presets.

    EncoderConfig          BERT-style encoders (bert-base, minilm-l6, bert-tiny)
    DecoderConfig          GPT-2 and Llama-style decoders from one config (gpt2-small, llama-tiny)
    EncoderDecoderConfig   the original Transformer (transformer-base, transformer-tiny)

A model is built from its config alone: ``DecoderModel(DecoderConfig.from_name("gpt2-small"))``.
``from_name(name, **overrides)`` starts from a preset and changes any field.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from atenea.nn.block import BlockConfig


def block_config(config, **fixed) -> BlockConfig:
    """The ``BlockConfig`` of a model config: every block field the config has, under the same
    name, then ``fixed`` (what the family decides for itself, e.g. BERT's LayerNorm)."""
    names = {f.name for f in dataclasses.fields(BlockConfig)}
    shared = {
        f.name: getattr(config, f.name) for f in dataclasses.fields(config) if f.name in names
    }
    return BlockConfig(**{**shared, **fixed})


class _Presets:
    """``from_name`` and ``presets()`` for a config dataclass with a ``PRESETS`` table."""

    PRESETS: dict = {}

    @classmethod
    def from_name(cls, name: str, **overrides):
        if name not in cls.PRESETS:
            known = ", ".join(sorted(cls.PRESETS))
            raise ValueError(f"{cls.__name__}: unknown preset {name!r}; known presets: {known}")
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(overrides) - fields)
        if unknown:
            raise ValueError(f"{cls.__name__}: unknown fields {', '.join(unknown)}")
        return cls(**{**cls.PRESETS[name], **overrides})

    @classmethod
    def presets(cls) -> list[str]:
        return sorted(cls.PRESETS)

    def __post_init__(self):
        self._check_ranges()

    def _check_ranges(self) -> None:
        """A ValueError naming the first size below 1 or dropout outside [0, 1): such a model
        would build (zero layers, empty tensors) and fail far from the setting."""
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in SIZES and (type(value) is not int or value < 1):
                raise ValueError(f"{f.name}: expected an integer >= 1, got {value!r}")
            if f.name in DROPOUTS and not (isinstance(value, (int, float)) and 0 <= value < 1):
                raise ValueError(f"{f.name}: expected a probability in [0, 1), got {value!r}")


# the fields every config above checks (``_check_ranges``), where it has them
SIZES = ("vocab_size", "src_vocab_size", "tgt_vocab_size", "dim", "num_layers",
         "num_encoder_layers", "num_decoder_layers", "num_heads", "ffn_hidden", "max_positions",
         "image_size", "patch_size", "num_channels")  # fmt: skip
DROPOUTS = ("dropout", "attention_dropout")


@dataclass
class EncoderConfig(_Presets):
    """A bidirectional encoder: token + position (+ segment) embeddings, ``num_layers`` blocks.
    Defaults are BERT-base's."""

    vocab_size: int = 30522
    dim: int = 768
    num_layers: int = 12
    num_heads: int = 12
    ffn_hidden: int = 3072
    max_positions: int = 512
    type_vocab_size: int = 2  # segments (sentence A / B); 0 for none
    positions: str = "learned"  # learned | sinusoidal
    activation: str = "gelu"
    norm_eps: float = 1e-12
    norm_position: str = "post"  # BERT is post-norm; "pre" adds a final norm instead
    dropout: float = 0.1
    attention_dropout: float = 0.1
    pooler: bool = True  # BERT's dense + tanh on the [CLS] state
    pad_token_id: int = 0
    # A classifier's label names by class index (Hugging Face's ``config.id2label``); None for
    # models without labels. JSON's string keys become integers again.
    id2label: dict[int, str] | None = None

    def __post_init__(self):
        self._check_ranges()
        if self.id2label is not None:
            self.id2label = {int(index): str(label) for index, label in self.id2label.items()}

    PRESETS = {
        "bert-base": {},
        "minilm-l6": dict(dim=384, num_layers=6, num_heads=12, ffn_hidden=1536),
        "bert-tiny": dict(dim=128, num_layers=2, num_heads=2, ffn_hidden=512),
    }

    def block(self) -> BlockConfig:
        return block_config(self, norm="layernorm", bias=True)


@dataclass
class DecoderConfig(_Presets):
    """A causal decoder with a language-model head. One config covers GPT-2 (learned positions,
    LayerNorm, GELU, biases, fused q/k/v, tied head) and Llama (rotary positions, RMSNorm,
    SwiGLU, no biases, grouped-query attention, untied head). Defaults are GPT-2 small's."""

    vocab_size: int = 50257
    dim: int = 768
    num_layers: int = 12
    num_heads: int = 12
    num_kv_heads: int | None = None  # None: as many as num_heads
    head_dim: int | None = None  # None: dim // num_heads
    ffn_hidden: int = 3072
    max_positions: int = 1024
    positions: str = "learned"  # learned | rotary | alibi (a linear bias on the scores)
    rope_theta: float = 10000.0
    rope_layout: str = "half"  # half (NeoX / Llama / HF) | interleaved (GPT-J)
    rope_scaling: dict | None = None  # e.g. Llama 3's {"rope_type": "llama3", ...}
    norm: str = "layernorm"  # layernorm | rmsnorm
    norm_eps: float = 1e-5
    activation: str = "gelu_tanh"  # gelu_tanh | gelu | relu | silu | swiglu
    bias: bool = True
    fused_qkv: bool = True
    tie_embeddings: bool = True
    dropout: float = 0.0
    attention_dropout: float = 0.0
    bos_token_id: int | None = 50256
    eos_token_id: int | None = 50256
    pad_token_id: int | None = None
    # Segment memory (Transformer-XL): keys/values of the last memory_len positions, per layer;
    # compressed_len slots more, each the average of compression_rate older ones (nn/memory.py).
    memory_len: int = 0
    compressed_len: int = 0
    compression_rate: int = 4

    PRESETS = {
        "gpt2-small": {},
        "gpt2-tiny": dict(dim=64, num_layers=2, num_heads=4, ffn_hidden=256, max_positions=256),
        "llama-tiny": dict(
            vocab_size=32000, dim=64, num_layers=2, num_heads=4, num_kv_heads=2, ffn_hidden=172,
            max_positions=2048, positions="rotary", norm="rmsnorm", norm_eps=1e-6,
            activation="swiglu", bias=False, fused_qkv=False, tie_embeddings=False,
            rope_theta=10000.0, bos_token_id=1, eos_token_id=2,
        ),
        "llama-3.2-1b": dict(
            vocab_size=128256, dim=2048, num_layers=16, num_heads=32, num_kv_heads=8,
            ffn_hidden=8192, max_positions=131072, positions="rotary", norm="rmsnorm",
            norm_eps=1e-5, activation="swiglu", bias=False, fused_qkv=False,
            tie_embeddings=True, rope_theta=500000.0, bos_token_id=128000, eos_token_id=128001,
            rope_scaling=dict(rope_type="llama3", factor=32.0, low_freq_factor=1.0,
                              high_freq_factor=4.0, original_max_position_embeddings=8192),
        ),
    }  # fmt: skip

    def __post_init__(self):
        self._check_ranges()
        if (self.memory_len or self.compressed_len) and self.positions == "learned":
            raise ValueError(
                "memory_len: segment memory needs relative positions (positions='rotary' or "
                "'alibi'); "
                "learned absolute positions cannot carry distance across segments"
            )

    def block(self) -> BlockConfig:
        return block_config(self, norm_position="pre")

    @property
    def resolved_head_dim(self) -> int:
        return self.head_dim or self.dim // self.num_heads


@dataclass
class EncoderDecoderConfig(_Presets):
    """The original Transformer (Vaswani et al. 2017): an encoder, and a decoder with causal
    self-attention and cross-attention to the encoder's output. Sinusoidal positions, embeddings
    scaled by sqrt(dim), post-norm (``norm_position="pre"`` for the modern variant), ReLU.
    Defaults are the paper's base model."""

    src_vocab_size: int = 32000
    tgt_vocab_size: int = 32000
    dim: int = 512
    num_encoder_layers: int = 6
    num_decoder_layers: int = 6
    num_heads: int = 8
    ffn_hidden: int = 2048
    max_positions: int = 1024
    activation: str = "relu"
    norm_eps: float = 1e-6
    norm_position: str = "post"
    dropout: float = 0.1
    attention_dropout: float = 0.0
    share_embeddings: bool = False  # one table for source, target and output (shared vocab)
    tie_output: bool = True  # output projection = target embedding
    pad_token_id: int = 0
    bos_token_id: int = 1
    eos_token_id: int = 2

    PRESETS = {
        "transformer-base": {},
        "transformer-tiny": dict(
            src_vocab_size=1000, tgt_vocab_size=1000, dim=64, num_encoder_layers=2,
            num_decoder_layers=2, num_heads=4, ffn_hidden=128, max_positions=256,
        ),
    }  # fmt: skip

    def block(self, cross: bool) -> BlockConfig:
        return block_config(self, norm="layernorm", bias=True, cross_attention=cross)
