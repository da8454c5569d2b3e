"""Architectures, their configs, task heads, and checkpoint reading and writing."""

from atenea.models.config import DecoderConfig, EncoderConfig, EncoderDecoderConfig
from atenea.models.decoder import DecoderModel
from atenea.models.encoder import (
    ClassificationHead,
    EncoderForMaskedLM,
    EncoderForSequenceClassification,
    EncoderModel,
    MaskedLMHead,
    mean_pool,
)
from atenea.models.encoder_decoder import EncoderDecoderModel
from atenea.models.outputs import Intermediates, ModelOutput
from atenea.models.pretrained import (
    CheckpointError,
    load_pretrained,
    load_weights,
    save_pretrained,
)
from atenea.models.rnn import RNNEncDec, RNNSearch, RNNState, RNNTranslator
from atenea.models.rnn_config import RNNConfig
from atenea.models.tokenizer import Tokenizer
from atenea.models.vit import ViTConfig, ViTForImageClassification, ViTModel

__all__ = [
    "CheckpointError",
    "Tokenizer",
    "load_pretrained",
    "load_weights",
    "save_pretrained",
    "ClassificationHead",
    "DecoderConfig",
    "DecoderModel",
    "EncoderConfig",
    "EncoderDecoderConfig",
    "EncoderDecoderModel",
    "EncoderForMaskedLM",
    "EncoderForSequenceClassification",
    "EncoderModel",
    "Intermediates",
    "MaskedLMHead",
    "ModelOutput",
    "RNNConfig",
    "RNNEncDec",
    "RNNSearch",
    "RNNState",
    "RNNTranslator",
    "mean_pool",
    "ViTConfig",
    "ViTForImageClassification",
    "ViTModel",
]
