"""Packed sequences: with document_ids, no token attends across a document boundary, and each
document's logits equal those of the document run alone."""

import torch

from atenea.models import DecoderConfig, DecoderModel
from atenea.models.decoder import positions_in_documents


def test_positions_restart_with_each_document():
    ids = torch.tensor([[0, 0, 0, 1, 1, 2, 2, 2, 2], [5, 5, 5, 5, 5, 5, 7, 7, 7]])
    assert positions_in_documents(ids).tolist() == [
        [0, 1, 2, 0, 1, 0, 1, 2, 3],
        [0, 1, 2, 3, 4, 5, 0, 1, 2],
    ]


def test_no_token_attends_across_a_boundary():
    torch.manual_seed(0)
    for preset in ("gpt2-tiny", "llama-tiny"):
        model = DecoderModel(DecoderConfig.from_name(preset, vocab_size=101)).eval()
        lengths = [4, 7, 2, 5]
        docs = [torch.randint(0, 101, (n,)) for n in lengths]
        packed = torch.cat(docs)[None]
        document_ids = torch.cat([torch.full((n,), i) for i, n in enumerate(lengths)])[None]
        with torch.no_grad():
            out = model(packed, document_ids=document_ids, output_attentions=True)
            alone = [model(d[None]).logits[0] for d in docs]
        assert torch.allclose(out.logits[0], torch.cat(alone), atol=1e-5)
        across = document_ids[0][:, None] != document_ids[0][None, :]
        for layer in out.attentions:
            assert (layer[0][:, across] == 0).all()
