"""Retrieval: passage indexes over sentence embeddings, search, and retrieval-augmented
language modelling.

    corpus.py   files, folders, CSV/JSONL -> passages; passages cut to what a model reads
    formats.py  the folders retrieval writes (index, datastore), and how to recognise them
    index.py    PassageIndex: MiniLM embeddings, exact cosine top-k, safetensors + JSON
    knn.py      kNN-LM (Khandelwal et al. 2020): a datastore of an LM's hidden states and
                next tokens, interpolated with the LM's distribution

This layer sits between generation and training: it may use attention, nn, models and
generation; training, inspect and the CLI may use it.
"""

from atenea.retrieval.corpus import CorpusError, read_passages
from atenea.retrieval.index import Hit, PassageIndex, load_embedder

__all__ = ["CorpusError", "Hit", "PassageIndex", "load_embedder", "read_passages"]
