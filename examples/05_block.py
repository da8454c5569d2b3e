"""Idea 6 -- a transformer block: attention mixes positions, a feed-forward network refines
each position alone, each wrapped in a residual sum and a LayerNorm. Post-norm (the original
paper, BERT) normalises after the sum; pre-norm (GPT-2, Llama) before the sub-block.

    python examples/05_block.py
"""

import torch

from atenea.nn.block import BlockConfig, TransformerBlock

torch.manual_seed(0)
x = torch.randn(1, 5, 16)  # (batch, length, d_model)

for order in ("post", "pre"):
    block = TransformerBlock(BlockConfig(dim=16, num_heads=2, ffn_hidden=32, norm_position=order))
    block.eval()
    with torch.no_grad():
        out = block(x)
        attn, ffn = block.attention, block.feed_forward
        if order == "post":  # X1 = LN(X + MHA(X)); X2 = LN(X1 + FFN(X1))
            x1 = block.attention_norm(x + attn(x))
            by_hand = block.ffn_norm(x1 + ffn(x1))
        else:  # X1 = X + MHA(LN(X)); X2 = X1 + FFN(LN(X1))
            x1 = x + attn(block.attention_norm(x))
            by_hand = x1 + ffn(block.ffn_norm(x1))
    assert torch.allclose(out, by_hand, atol=1e-5)
    print(f"{order}-norm block: output {tuple(out.shape)}, row norms "
          f"{out.norm(dim=-1)[0].round(decimals=2).tolist()}")  # fmt: skip
print("post-norm rows all have the same norm (LayerNorm last); pre-norm rows keep the residual's")
