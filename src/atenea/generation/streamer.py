"""Print the text while it is generated.

A streamer is any object with ``put(tokens)`` and ``end()`` (Hugging Face's protocol, so their
``TextStreamer`` works too): ``generate`` calls ``put`` with the prompt ``(1, L)`` first, then
with each new token ``(1,)``, and ``end()`` when done.
"""

from __future__ import annotations

import sys

from torch import Tensor


class TextStreamer:
    """Decode and write the continuation as it grows (one row: batch size 1).

    Decoding token by token would split characters that span several tokens (byte-level BPE),
    so the whole continuation is decoded each time and only the new, complete text is written;
    text ending in an unfinished character (``\\ufffd``) waits for the next token.
    """

    def __init__(self, tokenizer, skip_prompt: bool = True, stream=None):
        self.tokenizer, self.skip_prompt = tokenizer, skip_prompt
        self.stream = stream if stream is not None else sys.stdout
        self.tokens: list[int] = []
        self.written = 0
        self.prompt_seen = False

    def put(self, tokens: Tensor) -> None:
        if tokens.dim() > 1 and tokens.shape[0] > 1 or tokens.dim() == 1 and tokens.numel() > 1:
            raise ValueError("streamer: TextStreamer writes one row; generate with batch size 1")
        if not self.prompt_seen:
            self.prompt_seen = True
            if self.skip_prompt:
                return
        self.tokens.extend(tokens.flatten().tolist())
        text = self.tokenizer.decode(self.tokens)
        if text.endswith("\ufffd"):
            return
        self._write(text[self.written :])
        self.written = len(text)

    def end(self) -> None:
        text = self.tokenizer.decode(self.tokens)
        self._write(text[self.written :] + "\n")
        self.tokens, self.written, self.prompt_seen = [], 0, False

    def _write(self, text: str) -> None:
        if text:
            self.stream.write(text)
            self.stream.flush()
