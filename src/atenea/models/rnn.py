"""Recurrent translators: RNNsearch (Bahdanau, Cho & Bengio 2015), where attention began, and
the RNN encoder-decoder it was measured against (Cho et al. 2014), which has none.

    source (B, S) -> embeddings -> bidirectional GRU -> annotations h_j = [h->_j; h<-_j] (B, S, 2H)
    each target step i (the decoder reads y_{i-1}, BOS first):
        c_i = sum_j alpha_ij h_j,  alpha_i = softmax_j(v^T tanh(W s_{i-1} + U h_j))   RNNSearch
        c_i = c = [h->_last; h<-_first] (the encoder's summary, the same at every step) RNNEncDec
        s_i = GRU(s_{i-1}, E y_{i-1}, c_i)
        logits_i = W_o maxout(U_o s_i + V_o E y_{i-1} + C_o c_i)        (the deep output)

Both have the ``encode`` / ``new_cache`` / ``decode`` / ``forward`` of ``EncoderDecoderModel``,
so the translate task, ``atenea.generate`` (greedy and beam search) and checkpoints take either.
Their cache is an ``RNNState``: the decoder state after the last token, plus what every step
reuses from the source.

Padding: the encoder packs each row's tokens (``pack_padded_sequence``) wherever the mask puts
them, the alignment gives padding exactly 0 weight, and a target position whose mask is 0
leaves the decoder state as it was: a sentence's result does not depend on its batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from atenea.models.common import IGNORE, check_attention_mask, check_ids
from atenea.models.outputs import ModelOutput
from atenea.models.rnn_config import RNNConfig
from atenea.nn.alignment import Alignment
from atenea.nn.linear import Linear


class RNNState:
    """The decoding cache of a recurrent translator. ``state (B, Hd)``: the decoder state after
    the last token (None before the first step); ``source``: what each step reuses from the
    source -- the alignment model's prepared keys ``(B, S, A)`` (RNNSearch) or the fixed
    context ``(B, 2H)`` (RNNEncDec)."""

    def __init__(self):
        self.state: Tensor | None = None
        self.source: Tensor | None = None

    def select(self, rows: Tensor) -> None:
        """Keep (and reorder, repeat) the rows ``rows (B',)``: beam search's hook."""
        if self.state is not None:
            self.state = self.state.index_select(0, rows)
            self.source = self.source.index_select(0, rows)


class DecoderGRUCell(nn.Module):
    """The decoder's GRU step with a context input (the paper's Appendix A.2.2)::

    z = sigmoid(W_z E y + U_z s + C_z c)          update gate
    r = sigmoid(W_r E y + U_r s + C_r c)          reset gate
    s~ = tanh(W E y + U (r * s) + C c)            candidate (reset applied before U)
    s' = (1 - z) * s + z * s~
    """

    def __init__(self, input_dim: int, context_dim: int, hidden_dim: int):
        super().__init__()
        self.input_proj = Linear(input_dim, 3 * hidden_dim)  # [W_z; W_r; W] E y (+ biases)
        self.context_proj = Linear(context_dim, 3 * hidden_dim, bias=False)  # [C_z; C_r; C] c
        self.gate_proj = Linear(hidden_dim, 2 * hidden_dim, bias=False)  # [U_z; U_r] s
        self.candidate_proj = Linear(hidden_dim, hidden_dim, bias=False)  # U (r * s)

    def forward(self, projected_input: Tensor, state: Tensor, projected_context: Tensor) -> Tensor:
        """``projected_input (B, 3Hd)`` (``input_proj`` of the embedded token, computed for
        all steps at once), ``state (B, Hd)``, ``projected_context (B, 3Hd)`` (``context_proj``
        of the context: once per call when it does not change) -> the new state ``(B, Hd)``."""
        from_input = projected_input + projected_context
        input_z, input_r, input_candidate = from_input.chunk(3, dim=-1)
        state_z, state_r = self.gate_proj(state).chunk(2, dim=-1)
        update = torch.sigmoid(input_z + state_z)
        reset = torch.sigmoid(input_r + state_r)
        candidate = torch.tanh(input_candidate + self.candidate_proj(reset * state))
        return (1 - update) * state + update * candidate


class RNNTranslator(nn.Module):
    """What RNNSearch and RNNEncDec share: embeddings, the bidirectional GRU encoder, the decoder
    cell and the output. ``attention`` (set by the subclass) decides where the context comes
    from."""

    attention = True

    def __init__(self, config: RNNConfig):
        super().__init__()
        c = self.config = config
        if c.share_embeddings and c.src_vocab_size != c.tgt_vocab_size:
            raise ValueError(
                f"share_embeddings needs one vocabulary, got src_vocab_size {c.src_vocab_size} "
                f"and tgt_vocab_size {c.tgt_vocab_size}"
            )
        hidden, decoder, context = c.hidden_dim, c.decoder_width, 2 * c.hidden_dim
        self.source_embedding = nn.Embedding(c.src_vocab_size, c.embedding_dim, c.pad_token_id)
        self.target_embedding = (
            self.source_embedding if c.share_embeddings
            else nn.Embedding(c.tgt_vocab_size, c.embedding_dim, c.pad_token_id)
        )  # fmt: skip
        self.encoder = nn.GRU(c.embedding_dim, hidden, batch_first=True, bidirectional=True)
        self.alignment = (
            Alignment(decoder, context, c.alignment_dim, c.score) if self.attention else None
        )
        # s_0 = tanh(W_s h<-_1) (RNNsearch); from the whole summary [h->_N; h<-_1] (RNNencdec).
        self.init_state = Linear(hidden if self.attention else context, decoder)
        self.cell = DecoderGRUCell(c.embedding_dim, context, decoder)
        if c.output == "maxout":  # t~ = U_o s_i + V_o E y_{i-1} + C_o c_i, pairs max-pooled
            self.readout = Linear(decoder + c.embedding_dim + context, 2 * c.maxout_dim)
            self.output = Linear(c.maxout_dim, c.tgt_vocab_size)
        else:
            self.readout = None
            self.output = Linear(decoder, c.tgt_vocab_size)
        self.dropout = nn.Dropout(c.dropout)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The paper's initialisation: recurrent matrices orthogonal, the other weights
        N(0, 0.01^2), biases 0 (the embeddings' padding row stays 0)."""
        recurrent = {"cell.gate_proj.weight", "cell.candidate_proj.weight"}
        with torch.no_grad():
            for name, parameter in self.named_parameters():
                if name.startswith("encoder.weight_hh"):  # three gates stacked: one each
                    for block in parameter.chunk(3, dim=0):
                        nn.init.orthogonal_(block)
                elif name in recurrent:
                    for block in parameter.chunk(parameter.shape[0] // parameter.shape[1]):
                        nn.init.orthogonal_(block)
                elif "bias" in name:
                    nn.init.zeros_(parameter)
                else:
                    nn.init.normal_(parameter, std=0.01)
            for table in (self.source_embedding, self.target_embedding):
                table.weight[self.config.pad_token_id].zero_()

    # -- the encoder ----------------------------------------------------------------------------

    def encode(self, src_ids: Tensor, src_mask: Tensor | None = None) -> Tensor:
        """``src_ids (B, S)``, ``src_mask (B, S)`` (1 = token; padding on any side) ->
        annotations ``(B, S, 2H)``, 0 at padding. Each row's tokens are packed in their order,
        so the GRU never reads a padding token."""
        c = self.config
        check_ids(src_ids, c.src_vocab_size, "src_ids")
        check_attention_mask(src_mask, src_ids)
        mask = self._source_mask(src_ids, src_mask)
        # A stable sort puts each row's tokens first, in order: the layout packing expects.
        order = torch.sort((~mask).to(torch.int8), dim=1, stable=True).indices  # (B, S)
        lengths = mask.sum(1).clamp(min=1).cpu()
        embedded = self.dropout(self.source_embedding(src_ids.gather(1, order)))
        packed = pack_padded_sequence(embedded, lengths, batch_first=True, enforce_sorted=False)
        packed_out, _ = self.encoder(packed)
        out, _ = pad_packed_sequence(packed_out, batch_first=True, total_length=src_ids.shape[1])
        annotations = torch.zeros_like(out).scatter(1, order[:, :, None].expand_as(out), out)
        return annotations * mask[:, :, None]

    @staticmethod
    def _source_mask(src_ids: Tensor, src_mask: Tensor | None) -> Tensor:
        return torch.ones_like(src_ids, dtype=torch.bool) if src_mask is None else src_mask.bool()

    def _summary(self, memory: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """``(h->_last, h<-_first)`` ``(B, H)`` each: the forward GRU's state after the last
        token and the backward GRU's after the first -- each has read the whole sentence."""
        hidden = self.config.hidden_dim
        positions = torch.arange(mask.shape[1], device=mask.device)
        first = (
            torch.where(mask, positions, mask.shape[1]).min(1).values.clamp(max=mask.shape[1] - 1)
        )
        last = torch.where(mask, positions, -1).max(1).values.clamp(min=0)
        rows = torch.arange(memory.shape[0], device=memory.device)
        return memory[rows, last, :hidden], memory[rows, first, hidden:]

    # -- the decoder ----------------------------------------------------------------------------

    def new_cache(self, batch: int = 0, capacity: int = 0, dtype=None, device=None) -> RNNState:
        """An empty ``RNNState`` (the arguments of ``EncoderDecoderModel.new_cache`` are
        accepted and not needed: a recurrent state has a fixed size)."""
        return RNNState()

    def start(self, memory: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """The first decoder state ``s_0 (B, Hd)`` and the per-source part every step reuses."""
        forward_last, backward_first = self._summary(memory, mask)
        if self.attention:
            return torch.tanh(self.init_state(backward_first)), self.alignment.prepare(memory)
        summary = torch.cat([forward_last, backward_first], dim=-1)
        return torch.tanh(self.init_state(summary)), summary

    def context(self, state, memory, mask, source) -> tuple[Tensor, Tensor | None]:
        """``c_i (B, 2H)`` and the alignment ``alpha_i (B, S)`` (None without attention)."""
        if not self.attention:
            return source, None
        return self.alignment(state, memory, mask, prepared=source)

    def _run(self, tgt_ids, memory, memory_mask, tgt_mask, cache, logits_to_keep):
        """The decoder loop: ``(logits, states (B, T, Hd), alignments (B, T, S) or None)``."""
        c = self.config
        check_ids(tgt_ids, c.tgt_vocab_size, "tgt_ids")
        check_attention_mask(tgt_mask, tgt_ids)
        if memory.dim() != 3 or memory.shape[0] != tgt_ids.shape[0]:
            raise ValueError(
                f"memory: expected the encoder's output (B={tgt_ids.shape[0]}, S, "
                f"{2 * c.hidden_dim}), got {tuple(memory.shape)}"
            )
        mask = self._source_mask(memory[..., 0], memory_mask)
        if cache is not None and cache.state is not None:
            state, source = cache.state, cache.source
        else:
            state, source = self.start(memory, mask)
        embedded = self.dropout(self.target_embedding(tgt_ids))  # (B, T, E)
        inputs = self.cell.input_proj(embedded)  # (B, T, 3Hd): W E y for every step at once
        keep = None if tgt_mask is None else tgt_mask.bool()
        # Without attention the context is the fixed summary: project it once, not every step.
        fixed = None if self.attention else self.cell.context_proj(source)
        states, contexts, alignments = [], [], []
        for step in range(tgt_ids.shape[1]):
            context, alignment = self.context(state, memory, mask, source)
            projected = fixed if fixed is not None else self.cell.context_proj(context)
            new_state = self.cell(inputs[:, step], state, projected)
            # A padded target position leaves the state as it was.
            state = (
                new_state if keep is None else torch.where(keep[:, step, None], new_state, state)
            )
            states.append(state)
            contexts.append(context)
            alignments.append(alignment)
        if cache is not None:
            cache.state, cache.source = state, source
        states, contexts = torch.stack(states, 1), torch.stack(contexts, 1)
        kept = slice(-logits_to_keep, None) if logits_to_keep else slice(None)
        logits = self.logits(states[:, kept], embedded[:, kept], contexts[:, kept])
        return logits, states, (torch.stack(alignments, 1) if self.attention else None)

    def logits(self, states: Tensor, embedded: Tensor, contexts: Tensor) -> Tensor:
        """The output layer: ``states (B, T, Hd)``, the embedded inputs ``(B, T, E)`` and the
        contexts ``(B, T, 2H)`` -> ``(B, T, tgt_vocab)``."""
        if self.readout is None:
            return self.output(self.dropout(states))
        pre = self.readout(torch.cat([states, embedded, contexts], dim=-1))  # (B, T, 2l)
        maxout = pre.unflatten(-1, (-1, 2)).amax(-1)  # (B, T, l): max of each pair
        return self.output(self.dropout(maxout))

    def decode(
        self,
        tgt_ids: Tensor,
        memory: Tensor,
        memory_mask: Tensor | None = None,
        tgt_mask: Tensor | None = None,
        *,
        cache: RNNState | None = None,
        logits_to_keep: int = 0,
    ) -> tuple[Tensor, Tensor]:
        """``tgt_ids (B, T)`` (with a cache: the new tokens, continuing from its state) reading
        ``memory (B, S, 2H)`` from ``encode``; ``memory_mask (B, S)``, ``tgt_mask (B, T)``:
        1 = token. Returns ``(logits (B, T or logits_to_keep, V), states (B, T, Hd))``."""
        logits, states, _ = self._run(tgt_ids, memory, memory_mask, tgt_mask, cache, logits_to_keep)
        return logits, states

    def forward(
        self,
        src_ids: Tensor,
        tgt_ids: Tensor,
        src_mask: Tensor | None = None,
        tgt_mask: Tensor | None = None,
        *,
        labels: Tensor | None = None,
        output_attentions: bool = False,
    ) -> ModelOutput:
        """Teacher forcing: ``tgt_ids (B, T)`` is the target shifted right (BOS first);
        ``labels (B, T)`` the tokens to predict (-100 = ignore). With ``output_attentions``
        (RNNSearch), ``cross_attentions`` holds the alignment ``(B, 1, T, S)``: one layer, one
        head, row ``i`` the weights that wrote target token ``i``."""
        memory = self.encode(src_ids, src_mask)
        logits, states, alignments = self._run(tgt_ids, memory, src_mask, tgt_mask, None, 0)
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=IGNORE)
        crossed = output_attentions and alignments is not None
        return ModelOutput(
            logits=logits,
            last_hidden_state=states,
            encoder_last_hidden_state=memory,
            cross_attentions=(alignments[:, None],) if crossed else None,
            loss=loss,
        )


class RNNSearch(RNNTranslator):
    """RNNsearch (Bahdanau, Cho & Bengio 2015): at every output word the decoder looks back
    over all the annotations through the alignment model (``config.score``)."""

    attention = True


class RNNEncDec(RNNTranslator):
    """The RNN encoder-decoder (Cho et al. 2014), the paper's baseline "RNNencdec": the same
    RNNs, the context fixed to the encoder's summary ``[h->_last; h<-_first]`` at every step --
    the whole sentence squeezed into one vector."""

    attention = False
