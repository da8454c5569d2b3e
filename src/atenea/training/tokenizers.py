"""Training a tokenizer on the training texts: byte-level BPE, WordPiece, or characters.

The result is atenea's :class:`~atenea.models.tokenizer.Tokenizer`, saved as ``tokenizer.json``
with the model so ``load_pretrained`` / ``Tokenizer.from_folder`` read it back. Training is
deterministic: the same texts give the same ``tokenizer.json``.

Special tokens come first, so their ids are fixed whatever the texts:

- ``template="none"``: ``<pad>=0 <unk>=1 <s>=2 </s>=3`` (roles pad/unk/bos/eos); ``encode``
  adds nothing, the task adds BOS/EOS itself (decoders, encoder-decoders), and a text's own
  "<s>" or "</s>" is plain text (``split_special_tokens``);
- ``template="bert"``: ``[PAD]=0 [UNK]=1 [CLS]=2 [SEP]=3 [MASK]=4`` and ``encode`` gives
  ``[CLS] a [SEP]`` (pairs ``[CLS] a [SEP] b [SEP]``) like BERT (encoders).
"""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Regex, decoders, models, normalizers, pre_tokenizers, processors, trainers
from tokenizers import Tokenizer as BackendTokenizer

from atenea.models.tokenizer import Tokenizer

KINDS = ("bpe", "wordpiece", "chars")
TEMPLATES = {
    # role -> token, in id order
    "none": {"pad": "<pad>", "unk": "<unk>", "bos": "<s>", "eos": "</s>"},
    "bert": {"pad": "[PAD]", "unk": "[UNK]", "cls": "[CLS]", "sep": "[SEP]", "mask": "[MASK]"},
}
# Byte-level BPE needs its 256 byte symbols besides the specials; below this many WordPiece
# pieces a vocabulary is little more than the alphabet.
_MIN_WORDPIECE_VOCAB = 64
# A pair seen once is noise on a small corpus; merging it only memorizes the text.
_MIN_FREQUENCY = 2


def train_tokenizer(
    texts: Iterable[str],
    kind: str = "bpe",
    vocab_size: int = 8000,
    template: str = "none",
    max_length: int | None = None,
) -> Tokenizer:
    """Train a tokenizer on ``texts``.

    Args:
        texts: the training texts (any iterable of str; read once into a list).
        kind: ``"bpe"`` (byte-level: any text round-trips), ``"wordpiece"`` (BERT style,
            lowercased, accents kept) or ``"chars"`` (one token per character seen; the
            vocabulary is those characters, ``vocab_size`` is ignored).
        vocab_size: the largest vocabulary, special tokens included.
        template: ``"none"`` or ``"bert"`` (see the module docstring).
        max_length: the model's longest input, stored as ``model_max_length``.

    Raises:
        ValueError: an unknown kind or template, ``vocab_size`` below the kind's minimum, or
            no non-empty text.
    """
    if kind not in KINDS:
        raise ValueError(f"kind: expected one of {', '.join(KINDS)}, got {kind!r}")
    if template not in TEMPLATES:
        raise ValueError(f"template: expected one of {', '.join(TEMPLATES)}, got {template!r}")
    if isinstance(texts, str):
        raise TypeError("texts: expected an iterable of texts, got a single str")
    texts = [text for text in texts if text]
    if not any(text.strip() for text in texts):
        raise ValueError("texts: no text to train a tokenizer on (empty or only whitespace)")
    roles = TEMPLATES[template]
    specials = list(roles.values())
    minimum = {"bpe": 256 + len(specials), "wordpiece": _MIN_WORDPIECE_VOCAB, "chars": 0}[kind]
    if vocab_size < minimum:
        raise ValueError(
            f"vocab_size: {kind} needs at least {minimum} entries, got {vocab_size}"
            + (" (256 byte symbols plus the special tokens)" if kind == "bpe" else "")
        )

    if kind == "bpe":
        backend = _byte_level_bpe(texts, vocab_size, specials)
    elif kind == "wordpiece":
        backend = _wordpiece(texts, vocab_size, specials, roles["unk"])
    else:
        backend = _chars(texts, specials, roles["unk"])
    if template == "bert":
        cls_id, sep_id = backend.token_to_id("[CLS]"), backend.token_to_id("[SEP]")
        backend.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]",
            pair="[CLS] $A [SEP] $B:1 [SEP]:1",
            special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
        )
    # "none" serves decoders and translators, whose raw texts ("</s>" in HTML) must not turn
    # into special ids; with "bert", typing [MASK] in a text means the mask (fill-mask)
    return Tokenizer(backend, dict(roles), model_max_length=max_length, padding_side="right",
                     split_special_tokens=template == "none")  # fmt: skip


def _byte_level_bpe(texts: list[str], vocab_size: int, specials: list[str]) -> BackendTokenizer:
    backend = BackendTokenizer(models.BPE())  # no unknown token: every byte has a symbol
    # No prefix space, so decode(encode(text)) gives back exactly the text.
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=_MIN_FREQUENCY,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(texts, trainer)
    return backend


def _wordpiece(texts: list[str], vocab_size: int, specials: list[str], unk: str):
    backend = BackendTokenizer(models.WordPiece(unk_token=unk))
    # Lowercase like BERT uncased, but keep accents: in Spanish "año" is not "ano".
    backend.normalizer = normalizers.BertNormalizer(lowercase=True, strip_accents=False)
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.decoder = decoders.WordPiece(prefix="##")
    # The trainer numbers the "##x" pieces in hash-map order, and ties between merges are
    # broken by those numbers, so two runs can learn different vocabularies. Listing every
    # "##x" up front (sorted) as if it were special fixes their numbers; they are made
    # ordinary entries again below.
    alphabet = set()
    for text in texts:
        alphabet.update(backend.normalizer.normalize_str(text))
    pieces = [f"##{char}" for char in sorted(alphabet) if not char.isspace()]
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocab_size,
        min_frequency=_MIN_FREQUENCY,
        special_tokens=specials + pieces,
        continuing_subword_prefix="##",
        show_progress=False,
    )
    backend.train_from_iterator(texts, trainer)
    vocab = backend.get_vocab(with_added_tokens=False)
    fresh = BackendTokenizer(models.WordPiece(vocab, unk_token=unk))
    fresh.normalizer = backend.normalizer
    fresh.pre_tokenizer = backend.pre_tokenizer
    fresh.decoder = backend.decoder
    fresh.add_special_tokens(specials)
    return fresh


def _chars(texts: list[str], specials: list[str], unk: str) -> BackendTokenizer:
    alphabet = sorted(set().union(*(set(text) for text in texts)) - set(specials))
    vocab = {token: index for index, token in enumerate(specials + alphabet)}
    backend = BackendTokenizer(models.WordLevel(vocab, unk_token=unk))
    # Every character its own piece, spaces and newlines included ("." would skip newlines);
    # decoding concatenates the pieces with nothing between them.
    backend.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    backend.decoder = decoders.Fuse()
    backend.add_special_tokens(specials)
    return backend
