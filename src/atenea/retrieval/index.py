"""A passage index: sentence embeddings of every passage, searched by exact cosine top-k.

    passages --MiniLM (mean pool, L2 norm)--> embeddings (N, dim)
    question --same model--> q (dim,)  ->  scores = embeddings @ q  ->  top k

Exact search is one matrix product: over all 10,033 English Wikipedia summaries (384 wide) it
took 1.6 ms a question, of the 43 ms a whole question took with MiniLM embedding it
(docs/long_context.md, ``benchmarks/long_context.py --part retrieval --every 1``; recall@5
0.992), so an approximate library (faiss) would not pay at the sizes atenea ships.

On disk, a folder: ``embeddings.safetensors`` (one float32 tensor ``(N, dim)``) and
``index.json`` (the passages, the embedding model's name or folder and its fingerprint). A
hand-edited or broken folder is a ``CorpusError`` naming the file, never a traceback. The
fingerprint (a
hash of the model's token embedding matrix) makes a search with another model, whose vectors
live in another space, a clear error instead of silently wrong answers.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from atenea.retrieval.corpus import LOCATION, CorpusError
from atenea.retrieval.formats import EMBEDDINGS_FILE, INDEX_FILE
from atenea.retrieval.formats import INDEX_FORMAT as FORMAT

DEFAULT_MODEL = "minilm"


def weight_fingerprint(weight: Tensor) -> str:
    """A short hash of a weight matrix: the same weights, the same print."""
    weight = weight.detach().to("cpu", torch.float32).contiguous()
    return hashlib.sha256(weight.numpy().tobytes()).hexdigest()[:16]


def fingerprint(model) -> str:
    """An encoder's fingerprint: its token embedding matrix's."""
    return weight_fingerprint(model.token_embedding.weight)


def passage_label(passage: dict, position: int) -> str:
    """Where a passage comes from, for people: its ``where`` (``source`` in indexes written
    before ``where``), else its position in the index."""
    return str(passage.get(LOCATION) or passage.get("source") or f"passage {position}")


def load_embedder(name: str | None = DEFAULT_MODEL):
    """``(encoder, tokenizer)`` of a sentence-embedding model folder (default: the bundled
    all-MiniLM-L6-v2)."""
    from atenea.models import EncoderModel, load_pretrained

    model, tokenizer = load_pretrained(name or DEFAULT_MODEL)
    if not isinstance(model, EncoderModel) or tokenizer is None:
        raise CorpusError(f"model: {name} is not a sentence-embedding encoder with a tokenizer")
    return model, tokenizer


@dataclass
class Hit:
    """One search result: the cosine ``score``, the passage's ``position`` in the index and
    the ``passage`` (``{"text", "where", ...}``)."""

    score: float
    position: int
    passage: dict


@dataclass
class PassageIndex:
    """``embeddings (N, dim)`` float32, L2-normalised; ``passages``: N dicts; ``model`` and
    ``fingerprint``: the embedding model they came from."""

    embeddings: Tensor
    passages: list[dict]
    model: str
    fingerprint: str

    @classmethod
    def build(
        cls, passages: list[dict], model, tokenizer, *, model_name: str = DEFAULT_MODEL,
        batch_size: int = 64, progress: bool = False,
    ) -> PassageIndex:  # fmt: skip
        """Embed every passage's ``text`` (a tqdm bar with ``progress``). A text longer than
        the tokenizer's ``model_max_length`` is embedded from its start (the tokenizer warns):
        ``corpus.split_long`` first cuts such passages into pieces the model reads whole."""
        from tqdm.auto import tqdm

        if not passages:
            raise CorpusError("corpus: no passages to index")
        texts = [p["text"] for p in passages]
        chunk = batch_size * 8  # the bar moves every chunk; encode sorts within it by length
        parts = []
        with tqdm(total=len(texts), desc="index", unit="passage", disable=not progress) as bar:
            for start in range(0, len(texts), chunk):
                batch = texts[start : start + chunk]
                parts.append(model.encode(batch, tokenizer, batch_size=batch_size).float().cpu())
                bar.update(len(batch))
        return cls(torch.cat(parts), list(passages), str(model_name), fingerprint(model))

    def __len__(self) -> int:
        return len(self.passages)

    def check_model(self, model) -> None:
        """Refuse to search with another embedding model than the one that built the index."""
        if fingerprint(model) != self.fingerprint:
            raise CorpusError(
                f"index: built with the embedding model {self.model!r} (fingerprint "
                f"{self.fingerprint}); the model given is another one: rebuild the index"
            )

    def top_k(self, queries: Tensor, k: int = 5) -> tuple[Tensor, Tensor]:
        """Exact cosine top-k of ``queries (Q, dim)`` (L2-normalised): ``scores (Q, k')`` and
        ``positions (Q, k')``, best first, ``k' = min(k, N)``."""
        if k < 1:
            raise CorpusError(f"k: expected at least 1 passage, got {k}")
        dim = self.embeddings.shape[1]
        if queries.dim() != 2 or queries.shape[1] != dim:
            raise CorpusError(f"queries: expected shape (Q, {dim}), got {tuple(queries.shape)}")
        scores = queries.to(self.embeddings) @ self.embeddings.T  # (Q, N)
        return scores.topk(min(k, len(self)), dim=1)

    def search(self, questions: list[str], model, tokenizer, k: int = 5) -> list[list[Hit]]:
        """The ``k`` best passages of each question, embedded with ``model`` (checked to be
        the index's model)."""
        if isinstance(questions, str):  # list("cat") would search "c", "a" and "t"
            raise TypeError("questions: expected a list of strings, got one string; pass [text]")
        self.check_model(model)
        queries = model.encode(list(questions), tokenizer).float().cpu()
        scores, positions = self.top_k(queries, k)
        return [
            [
                Hit(float(s), int(p), self.passages[int(p)])
                for s, p in zip(row_s, row_p, strict=True)
            ]
            for row_s, row_p in zip(scores, positions, strict=True)
        ]

    def save(self, folder) -> Path:
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        save_file({"embeddings": self.embeddings.contiguous()}, str(folder / EMBEDDINGS_FILE))
        info = {"format": FORMAT, "model": self.model, "fingerprint": self.fingerprint,
                "count": len(self), "dim": self.embeddings.shape[1],
                "passages": self.passages}  # fmt: skip
        (folder / INDEX_FILE).write_text(json.dumps(info, ensure_ascii=False), encoding="utf-8")
        return folder

    @classmethod
    def load(cls, folder) -> PassageIndex:
        folder = Path(folder)
        info_file, tensor_file = folder / INDEX_FILE, folder / EMBEDDINGS_FILE
        if not info_file.is_file() or not tensor_file.is_file():
            raise CorpusError(
                f"index: {folder} is not an index folder ({INDEX_FILE} and {EMBEDDINGS_FILE}); "
                f"build one with atenea index"
            )
        info = read_info(info_file, FORMAT, "index")
        _check_info(info, info_file)
        tensors = read_tensors(tensor_file, "index")
        if "embeddings" not in tensors:
            raise CorpusError(f"index: {tensor_file}: unreadable (no 'embeddings' tensor)")
        embeddings, passages = tensors["embeddings"], info["passages"]
        if embeddings.dim() != 2 or embeddings.shape[0] != len(passages):
            raise CorpusError(
                f"index: {folder}: embeddings of shape {tuple(embeddings.shape)} for "
                f"{len(passages)} passages (expected ({len(passages)}, dim))"
            )
        return cls(embeddings.float(), passages, info["model"], info["fingerprint"])


def read_info(info_file: Path, format_name: str, prefix: str) -> dict:
    """The JSON object of a folder retrieval saved (an index's or a datastore's), checked to
    be of ``format_name``; a broken file is a CorpusError naming it, ``prefix`` first."""
    try:
        info = json.loads(info_file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CorpusError(f"{prefix}: {info_file}: unreadable ({error})") from None
    if not isinstance(info, dict) or info.get("format") != format_name:
        raise CorpusError(f"{prefix}: {info_file} is not a {format_name} file")
    return info


def read_tensors(tensor_file: Path, prefix: str) -> dict[str, Tensor]:
    """The tensors of a safetensors file retrieval saved; a truncated or unreadable file is a
    CorpusError naming it, ``prefix`` first."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(tensor_file))
    except (SafetensorError, OSError) as error:
        raise CorpusError(f"{prefix}: {tensor_file}: unreadable ({error})") from None


def _check_info(info: dict, info_file: Path) -> None:
    """Raise CorpusError naming ``info_file`` when a key that search reads is missing or of
    another type (a hand-edited index.json)."""
    for key in ("model", "fingerprint"):
        if not isinstance(info.get(key), str):
            raise CorpusError(f"index: {info_file}: no {key!r} string; rebuild the index")
    passages = info.get("passages")
    if not isinstance(passages, list):
        raise CorpusError(f"index: {info_file}: no 'passages' list; rebuild the index")
    for position, passage in enumerate(passages):
        if not isinstance(passage, dict) or not isinstance(passage.get("text"), str):
            raise CorpusError(
                f"index: {info_file}: passage {position} is not an object with a 'text' "
                f"string; rebuild the index"
            )
