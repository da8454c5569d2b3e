"""Text generation: greedy decoding, sampling and beam search on a KV cache.

    import atenea
    out = atenea.generate(model, input_ids, attention_mask=mask, max_new_tokens=32)

Modules, in reading order:

- ``generate``  the public function: checks the inputs, then runs one of the two loops;
- ``config``    ``GenerationConfig``: every option, checked, with Hugging Face's defaults;
- ``decoding``  a model and its cache (or none) as the loops see it: the prefill (the prompt
                through the model's forward once) and ``decode_step`` (one token per row);
- ``sampling``  the greedy / sampling loop; ``beam`` beam search;
- ``logits``    repetition penalty, temperature, top-k, top-p, min-p, and the choice;
- ``stopping``  end tokens and stop strings; ``streamer`` text printed while it is generated.
"""

from atenea.generation.beam import BeamSearchOutput
from atenea.generation.config import GenerationConfig
from atenea.generation.generate import generate
from atenea.generation.streamer import TextStreamer

__all__ = ["BeamSearchOutput", "GenerationConfig", "TextStreamer", "generate"]
