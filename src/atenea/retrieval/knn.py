"""kNN-LM (Khandelwal et al. 2020): a language model that also looks up what came next in
similar contexts of a datastore.

    datastore:  key = the LM's final hidden state at position t (after the final norm),
                value = the token at t + 1, for every position of a set of texts
    at position t of new text, with hidden state q:
        the k nearest keys by squared L2 distance d_i
        p_knn(w) = sum over neighbours with value w of softmax(-d / temperature)_i
        p(w)     = lambda * p_knn(w) + (1 - lambda) * p_lm(w)

On disk, a folder: ``datastore.safetensors`` (``keys (N, dim)`` float16, ``values (N,)``) and
``datastore.json`` (size, the LM's fingerprint: a datastore only means something for the model
whose hidden states it holds). A broken or hand-edited folder is a ``CorpusError`` naming the
file, never a traceback.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from atenea.models.common import IGNORE
from atenea.retrieval.corpus import CorpusError
from atenea.retrieval.formats import DATASTORE_FILE
from atenea.retrieval.formats import DATASTORE_FORMAT as FORMAT
from atenea.retrieval.formats import DATASTORE_INFO_FILE as INFO_FILE
from atenea.retrieval.index import read_info, read_tensors, weight_fingerprint

QUERY_CHUNK = 256  # queries per distance matrix: (256, N) floats at a time


def model_fingerprint(model) -> str:
    """A language model's fingerprint: its output matrix's (tied or not)."""
    return weight_fingerprint(model.output_weight)


def _rows(model, rows, batch_size: int):
    """``(hidden (B, L-1, dim), targets (B, L-1), logits (B, L-1, V))`` batch by batch
    of packed rows ``(input_ids, document_ids, labels)``: position t's state and the label of
    t + 1 (-100: not predicted)."""
    device = model.output_weight.device
    input_ids, document_ids, labels = rows
    for start in range(0, len(input_ids), batch_size):
        ids = input_ids[start : start + batch_size].to(device)
        docs = document_ids[start : start + batch_size].to(device)
        out = model(ids, document_ids=docs)
        targets = labels[start : start + batch_size, 1:].to(device)
        yield out.last_hidden_state[:, :-1], targets, out.logits[:, :-1]


@dataclass
class Datastore:
    """``keys (N, dim)``, ``values (N,)`` token ids, ``fingerprint`` of the LM."""

    keys: Tensor
    values: Tensor
    fingerprint: str

    @classmethod
    @torch.no_grad()
    def build(cls, model, rows, batch_size: int = 16, progress: bool = False) -> Datastore:
        """The datastore of packed rows ``(input_ids, document_ids, labels)`` (the lm task's);
        ``progress``: a bar on stderr when it is a terminal."""
        from tqdm.auto import tqdm

        model.eval()
        keys, values = [], []
        with tqdm(total=len(rows[0]), desc="datastore", unit="row", leave=False,
                  disable=None if progress else True) as bar:  # fmt: skip
            for hidden, targets, _ in _rows(model, rows, batch_size):
                kept = targets != IGNORE
                keys.append(hidden[kept].to("cpu", torch.float16))
                values.append(targets[kept].cpu())
                bar.update(len(targets))
        if not keys or not sum(len(v) for v in values):
            raise CorpusError("datastore: no predicted token in the texts")
        return cls(torch.cat(keys), torch.cat(values), model_fingerprint(model))

    def __len__(self) -> int:
        return len(self.values)

    def _searchable(self, device: torch.device) -> tuple[Tensor, Tensor]:
        """Keys in float32 and values on ``device``, converted once (a search runs per batch)."""
        found = self.__dict__.get("_on_device")
        if found is None or found[0] != device:
            found = (device, self.keys.to(device, torch.float32), self.values.to(device))
            self.__dict__["_on_device"] = found
        return found[1], found[2]

    def log_probs(self, queries: Tensor, vocab_size: int, k: int = 16,
                  temperature: float = 1.0) -> Tensor:  # fmt: skip
        """``log p_knn (Q, vocab)`` of ``queries (Q, dim)``: softmax of ``-distance /
        temperature`` over the ``k`` nearest keys, summed per value (-inf where no neighbour)."""
        if k < 1 or temperature <= 0:
            raise CorpusError(f"k / temperature: expected k >= 1 and temperature > 0, got {k}, "
                              f"{temperature}")  # fmt: skip
        keys, values = self._searchable(queries.device)
        out = []
        for start in range(0, len(queries), QUERY_CHUNK):
            q = queries[start : start + QUERY_CHUNK].float()
            distances = torch.cdist(q, keys).square()  # (q, N)
            nearest, positions = distances.topk(min(k, len(keys)), dim=1, largest=False)
            weights = F.softmax(-nearest / temperature, dim=1)  # (q, k)
            probs = torch.zeros(len(q), vocab_size, device=q.device)
            probs.scatter_add_(1, values[positions], weights)
            out.append(probs.log())
        return torch.cat(out)

    def save(self, folder) -> Path:
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        save_file({"keys": self.keys.contiguous(), "values": self.values.contiguous()},
                  str(folder / DATASTORE_FILE))  # fmt: skip
        info = {"format": FORMAT, "fingerprint": self.fingerprint, "size": len(self),
                "dim": self.keys.shape[1]}  # fmt: skip
        (folder / INFO_FILE).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
        return folder

    @classmethod
    def load(cls, folder) -> Datastore:
        folder = Path(folder)
        info_file, tensor_file = folder / INFO_FILE, folder / DATASTORE_FILE
        if not info_file.is_file() or not tensor_file.is_file():
            raise CorpusError(
                f"knn: {folder} is not a datastore folder ({INFO_FILE} and {DATASTORE_FILE})"
            )
        info = read_info(info_file, FORMAT, "knn")
        if not isinstance(info.get("fingerprint"), str):
            raise CorpusError(f"knn: {info_file}: no 'fingerprint' string; build it again")
        tensors = read_tensors(tensor_file, "knn")
        keys, values = tensors.get("keys"), tensors.get("values")
        if keys is None or values is None:
            found = ", ".join(sorted(tensors)) or "none"
            raise CorpusError(f"knn: {tensor_file}: expected the tensors keys and values, "
                              f"found {found}; build it again")  # fmt: skip
        if keys.dim() != 2 or values.shape != (len(keys),) or values.is_floating_point():
            raise CorpusError(
                f"knn: {tensor_file}: expected keys (N, dim) and integer values (N,), got "
                f"{tuple(keys.shape)} and {values.dtype} {tuple(values.shape)}; build it again"
            )
        return cls(keys, values.long(), info["fingerprint"])

    def check_model(self, model) -> None:
        if model_fingerprint(model) != self.fingerprint:
            raise CorpusError(
                f"knn: the datastore holds another model's hidden states (fingerprint "
                f"{self.fingerprint}); build it with this model"
            )
        vocab_size, dim = model.output_weight.shape
        # a token id outside the vocabulary would fail deep inside scatter_add
        low, top = (int(self.values.min()), int(self.values.max())) if len(self) else (0, -1)
        if self.keys.shape[1] != dim or low < 0 or top >= vocab_size:
            raise CorpusError(
                f"knn: the datastore's keys are {self.keys.shape[1]} wide and its values reach "
                f"token {top}; the model's states are {dim} wide over "
                f"{vocab_size} tokens: build it again"
            )


def interpolate(lm_log_probs: Tensor, knn_log_probs: Tensor, lam: float) -> Tensor:
    """``log(lam * p_knn + (1 - lam) * p_lm)``, computed in log space."""
    if not 0.0 <= lam <= 1.0:
        raise CorpusError(f"lambda: expected a weight in [0, 1], got {lam}")
    if lam == 0.0:
        return lm_log_probs
    if lam == 1.0:
        return knn_log_probs
    return torch.logaddexp(lm_log_probs + math.log(1 - lam), knn_log_probs + math.log(lam))


@torch.no_grad()
def evaluate_knn(model, rows, datastore: Datastore, lam: float = 0.25, k: int = 16,
                 temperature: float = 1.0, batch_size: int = 16,
                 progress: bool = False) -> dict:  # fmt: skip
    """Perplexity of packed rows ``(input_ids, document_ids, labels)`` by the LM alone and
    interpolated with the datastore (``perplexity`` / ``perplexity_lm``); ``progress``: a bar
    on stderr when it is a terminal (each row searches the whole datastore: minutes)."""
    from tqdm.auto import tqdm

    datastore.check_model(model)
    model.eval()
    nll_lm = nll_knn = 0.0
    count = 0
    with tqdm(total=len(rows[0]), desc="knn", unit="row", leave=False,
              disable=None if progress else True) as bar:  # fmt: skip
        for hidden, targets, logits in _rows(model, rows, batch_size):
            bar.update(len(targets))
            kept = targets != IGNORE
            if not kept.any():
                continue
            # the LM's distribution only where a token is predicted (not over every position)
            lm = logits[kept].float().log_softmax(-1)
            hidden, targets = hidden[kept], targets[kept]
            knn = datastore.log_probs(hidden, lm.shape[-1], k, temperature)
            mixed = interpolate(lm, knn, lam)
            nll_lm -= float(lm.gather(1, targets[:, None]).sum())
            nll_knn -= float(mixed.gather(1, targets[:, None]).sum())
            count += len(targets)
    if not count:
        raise CorpusError("knn: no predicted token to score")
    return {"perplexity": math.exp(nll_knn / count), "perplexity_lm": math.exp(nll_lm / count),
            "tokens": count}  # fmt: skip
