"""Every sentence ``atenea steps`` and ``atenea cost`` say, in English and in Spanish, in one
place. Each language is written for its own reader, not word for word; the numbers are
filled in by the same code, so both carry the same ones.

``say(lang, key, **values)`` formats one entry; ``pick_language(flag)`` turns ``--lang`` (or the
locale, when the flag is absent) into ``"en"`` or ``"es"``.
"""

# ruff: noqa: E501 (one sentence per line reads and translates best)
from __future__ import annotations

import os

LANGUAGES = {"en": "English", "es": "español"}


class LanguageError(ValueError):
    """A language we do not have."""


def pick_language(flag: str | None = None) -> str:
    """``--lang`` when given; otherwise ``ATENEA_LANG``, then the locale (``LC_ALL``,
    ``LC_MESSAGES``, ``LANG``): ``es_*`` is Spanish, anything else English."""
    if flag is not None:
        code = flag.strip().lower().replace("-", "_").split("_")[0]
        if code not in LANGUAGES:
            have = ", ".join(f"{c} ({name})" for c, name in LANGUAGES.items())
            raise LanguageError(f"--lang {flag}: we have {have}")
        return code
    chosen = os.environ.get("ATENEA_LANG", "")
    if chosen:
        return pick_language(chosen)
    for variable in ("LC_ALL", "LC_MESSAGES", "LANG"):
        value = os.environ.get(variable, "")
        if value:
            return "es" if value.lower().startswith("es") else "en"
    return "en"


def say(lang: str, key: str, **values) -> str:
    """The sentence ``key`` in ``lang``, with ``values`` filled in."""
    return TEXTS[lang][key].format(**values)


TEXTS: dict[str, dict[str, str]] = {
    "en": {
        "default_text": "The bank closed early",
        "title": "atenea steps: self-attention worked out by hand",
        "tokens": "tokens: {tokens}   (L = {length}, d_model = {d_model}, d_k = {d_k})",
        "random_weights": "W_Q, W_K, W_V: random (seed {seed}), as a model starts before any training",
        "model_weights": "model {name}, layer {layer}, head {head} of {heads}: its real, trained weights",
        "why_head": "        (head chosen by the head descriptors: {reason})",
        "step1": "Step 1. The input X: one row per token, shape (L, d_model) = ({length}, {d_model})",
        "no_positions": "        No positions: X does not know the order of the words (try --positions).",
        "table_positions": "        E (the token embeddings) plus P (the {kind} position table) gives X0 = E + P:",
        "rope_positions": "        No table is added: RoPE brings in the positions at step 2, turning q and k by an angle that grows with the position.",
        "model_input_first": "        X is what layer 0's attention reads: token embedding + position (+ segment), normalised.",
        "model_input_later": "        X is what layer {layer}'s attention reads: the output of layer {previous}.",
        "step2": "Step 2. Projections Q = X W_Q, K = X W_K, V = X W_V, each ({length}, {d_k})",
        "bias_note": "        (this model also adds a bias: Q = X W_Q + b_Q, and likewise for K and V)",
        "rope_note": "        RoPE: q and k of position p turned by p x frequency, pair of dimensions by pair; V stays as it is.",
        "q": "Q: what each token is looking for",
        "k": "K: what each token offers",
        "v": "V: what each token passes on",
        "step3": "Step 3. Similarities: scores = Q K^T, shape ({length}, {length}); row = query, column = key",
        "scaled": "        Scaled: scores / sqrt(d_k) = scores / {root:.2f}, so that the softmax does not saturate as d_k grows",
        "step4_none": "Step 4. Mask: none (every token may look at every token; try --causal)",
        "step4_causal": "Step 4. Causal mask: each token may look at itself and the tokens before it (1 = may look)",
        "masked": "        Masked scores: where the mask says 0 the score becomes -inf, a weight of 0 after the softmax",
        "sees": "        {token} sees {seen}, and itself",
        "sees_self": "        {token} sees only itself",
        "step5": "Step 5. Softmax over each row: the attention weights, each row a probability distribution",
        "row_sums": "        row sums: {sums}  ({verdict})",
        "sums_ok": "each is 1: ok",
        "sums_bad": "NOT 1: this is a bug",
        "step6": "Step 6. Output Y = weights V, shape ({length}, {d_k}): each row mixes the values of the tokens it looks at",
        "head_output": "        Through this head's rows of W_O, Y becomes its share of the layer's output, shape ({length}, {d_model})",
        "step7": "Step 7. Inspect the weights: what each token looks at most",
        "heatmap": "        heatmap written to {path}",
        "no_matplotlib": "        (no heatmap: matplotlib is not installed; pip install 'atenea[plot]')",
        "check_random": "Check: atenea.attention(q, k, v{mask}) gives the same Y (largest difference {difference:.1e})",
        "check_model": "Check: the model's own attention for L{layer} H{head} (atenea.inspect.capture) gives the same weights (largest difference {difference:.1e})",
        "multi_title": "Multi-head attention: d_model = {d_model} is split into {heads} heads of d_k = {d_k}",
        "multi_split": "        head i uses columns i*{d_k} .. i*{d_k}+{last} of W_Q, W_K and W_V: its own projections",
        "multi_weights": "        The weights of every head, side by side:",
        "multi_concat": "        Concatenation [head_0 || ... || head_{last}]: shape ({length}, {width}); then output = concat W_O, W_O of shape ({width}, {d_model}):",
        "check_multi": "Check: atenea.nn.MultiHeadAttention on the same weights gives the same output (largest difference {difference:.1e})",
        "permute_title": "Order: the same words in another order ({tokens})",
        "permute_none": "        Without positions the outputs are the same rows, only moved (largest difference {difference:.1e}): attention alone cannot tell the order.",
        "permute_positions": "        With positions ({kind}) the outputs change (largest difference {difference:.2f}, next to values up to {largest:.2f}): the order now matters.",
        "permute_causal": "        (the causal mask itself depends on the order, so it also changes the outputs)",
        "compare_title": 'What "{word}" looks at in each sentence (L{layer} H{head}):',
        "compare_line": "        {text}: {targets}",
        "compare_reason": 'a head that attends by content; in both sentences at least {share:.0%} of the attention of "{word}" goes to the other words',
        "head_link": 'it gives {share:.0%} of the attention of "{word}" to "{target}"',
        "cost_title": "atenea cost: one head of attention (d = {dim}) as the length L grows, on {device} ({threads} thread(s))",
        "cost_paths": "paths: literal = the seven steps with the whole L x L matrix; fused = PyTorch's fused kernel; window = a sliding window of {window} keys per query",
        "cost_memory": "memory: the peak of the tensors each path creates beyond its inputs ({how})",
        "cost_memory_cpu": "as PyTorch's operators allocate them; a fused kernel's private scratch is not seen",
        "cost_memory_cuda": "torch.cuda.max_memory_allocated",
        "cost_header": "{length:>8} {path:>8} {time:>12} {memory:>12}",
        "cost_stopped": "{path}: stopped before L = {length}: it would need about {need}, more than the {have} it may use here",
        "cost_fit": "fitted exponent, {path}: time ~ L^{time:.2f}, memory ~ L^{memory:.2f}",
        "cost_fit_short": "{path}: too few lengths to fit an exponent",
        "cost_plot": "plot written to {path}",
        "cost_lesson": "The literal path keeps an L x L matrix: doubling L multiplies its memory by 4. The window keeps L x {window}: twice as long, twice the memory.",
        "explain_title": "atenea explain: {name} ({family}, {layers} layers x {heads} heads)",
        "explain_text": "text: {text}",
        "explain_note": "note: {notice}",
        "explain_tokens": "tokens ({count}): {tokens}",
        "explain_focus": "focus {word} (token {index}), heads averaged per layer:",
        "explain_layer": "layer {layer}: {word} -> {targets}",
        "explain_blocks": " (blocks of {block} tokens)",
        "explain_rollout": "rollout{blocks}: {word} -> {targets}",
        "explain_link": 'strongest link beyond the neighbours: L{layer} H{head} gives {share:.0%} of the attention of "{word}" to "{target}"',
        "explain_heads": "heads with a clear pattern:",
        "head_previous": "{name} attends to the previous token ({share:.0%} of its weight)",
        "head_next": "{name} attends to the next token ({share:.0%} of its weight)",
        "head_self": "{name} attends to the token itself ({share:.0%} of its weight)",
        "head_special": "{name} attends mostly to special tokens ([CLS]/[SEP]: a resting head) ({share:.0%} of its weight)",
        "head_first": "{name} attends mostly to the first token (an attention sink) ({share:.0%} of its weight)",
        "head_broad": "{name} spreads its attention broadly (entropy {entropy:.2f})",
        "head_content": "{name} attends by content (mean distance {distance:.1f} tokens, entropy {entropy:.2f})",
        "s2s_title": "atenea explain: {name} (EncoderDecoderModel, {shape})",
        "s2s_shape": "{encoder}+{decoder} layers (encoder+decoder) x {heads} heads",
        "s2s_source": "source: {text}",
        "s2s_generated": "generated greedily",
        "s2s_given": "given",
        "s2s_target": "target ({how}): {target}",
        "s2s_source_tokens": "source tokens ({count}): {tokens}",
        "s2s_target_tokens": "target tokens ({count}): {tokens}",
        "s2s_last": "last layer L{layer}",
        "s2s_sharpest": " | sharpest layer L{layer}",
        "s2s_alignment": "alignment: each target token -> the source tokens it attends to most (cross-attention, heads averaged; {layers}):",
        "s2s_heads": "cross-attention heads:",
        "cross_special": "{name} attends mostly to the source's special tokens (a resting head; {share:.0%} of its weight)",
        "cross_broad": "{name} spreads its attention over the source (entropy {entropy:.2f})",
        "cross_diagonal": "{name} follows the source in order (mean distance from the diagonal {distance:.1f} tokens)",
        "cross_content": "{name} aligns by content (mean distance from the diagonal {distance:.1f} tokens, entropy {entropy:.2f})",
    },
    "es": {
        "default_text": "El banco cerró temprano",
        "title": "atenea steps: la autoatención, calculada a mano",
        "tokens": "tokens: {tokens}   (L = {length}, d_model = {d_model}, d_k = {d_k})",
        "random_weights": "W_Q, W_K, W_V: al azar (semilla {seed}), como empieza un modelo antes de entrenarse",
        "model_weights": "modelo {name}, capa {layer}, cabeza {head} de {heads}: sus pesos reales, ya entrenados",
        "why_head": "        (cabeza elegida por sus descriptores: {reason})",
        "step1": "Paso 1. La entrada X: una fila por token, de forma (L, d_model) = ({length}, {d_model})",
        "no_positions": "        Sin posiciones: X no sabe en qué orden van las palabras (prueba --positions).",
        "table_positions": "        Sumamos a E (los embeddings de los tokens) la tabla de posiciones P ({kind}): X0 = E + P",
        "rope_positions": "        Aquí no se suma ninguna tabla: RoPE mete las posiciones en el paso 2, girando q y k un ángulo que crece con la posición.",
        "model_input_first": "        X es lo que lee la atención de la capa 0: embedding del token + posición (+ segmento), normalizado.",
        "model_input_later": "        X es lo que lee la atención de la capa {layer}: la salida de la capa {previous}.",
        "step2": "Paso 2. Proyectamos: Q = X W_Q, K = X W_K, V = X W_V, cada una de ({length}, {d_k})",
        "bias_note": "        (este modelo suma además un sesgo: Q = X W_Q + b_Q, y lo mismo en K y V)",
        "rope_note": "        RoPE: q y k de la posición p giran p x frecuencia, de dos en dos dimensiones; V no cambia.",
        "q": "Q: lo que busca cada token",
        "k": "K: lo que ofrece cada token",
        "v": "V: lo que transmite cada token",
        "step3": "Paso 3. Similitudes: scores = Q K^T, de forma ({length}, {length}); fila = consulta, columna = llave",
        "scaled": "        Escaladas: scores / sqrt(d_k) = scores / {root:.2f}, para que la softmax no se sature cuando d_k crece",
        "step4_none": "Paso 4. Máscara: ninguna (cada token puede mirar a todos; prueba --causal)",
        "step4_causal": "Paso 4. Máscara causal: cada token mira solo a sí mismo y a los anteriores (1 = puede mirar)",
        "masked": "        Puntuaciones enmascaradas: donde la máscara dice 0 ponemos -inf, que tras la softmax pesa 0",
        "sees": "        {token} solo ve a {seen}, y a sí mismo",
        "sees_self": "        {token} solo se ve a sí mismo",
        "step5": "Paso 5. Softmax en cada fila: los pesos de atención; cada fila es una distribución de probabilidad",
        "row_sums": "        sumas de las filas: {sums}  ({verdict})",
        "sums_ok": "todas valen 1: bien",
        "sums_bad": "NO valen 1: esto es un error",
        "step6": "Paso 6. Salida Y = pesos V, de forma ({length}, {d_k}): cada fila mezcla los valores de los tokens que mira",
        "head_output": "        Con las filas de W_O de esta cabeza, Y pasa a ser su aporte a la salida de la capa, de forma ({length}, {d_model})",
        "step7": "Paso 7. Inspeccionamos los pesos: a qué mira más cada token",
        "heatmap": "        mapa de calor guardado en {path}",
        "no_matplotlib": "        (sin mapa de calor: falta matplotlib; pip install 'atenea[plot]')",
        "check_random": "Comprobación: atenea.attention(q, k, v{mask}) da la misma Y (diferencia máxima {difference:.1e})",
        "check_model": "Comprobación: la atención del propio modelo en L{layer} H{head} (atenea.inspect.capture) da los mismos pesos (diferencia máxima {difference:.1e})",
        "multi_title": "Atención multi-cabeza: d_model = {d_model} se reparte en {heads} cabezas de d_k = {d_k}",
        "multi_split": "        la cabeza i usa las columnas i*{d_k} .. i*{d_k}+{last} de W_Q, W_K y W_V: sus propias proyecciones",
        "multi_weights": "        Los pesos de cada cabeza, uno al lado del otro:",
        "multi_concat": "        Concatenamos [cabeza_0 || ... || cabeza_{last}]: forma ({length}, {width}); y salida = concat W_O, con W_O de forma ({width}, {d_model}):",
        "check_multi": "Comprobación: atenea.nn.MultiHeadAttention con los mismos pesos da la misma salida (diferencia máxima {difference:.1e})",
        "permute_title": "El orden: las mismas palabras en otro orden ({tokens})",
        "permute_none": "        Sin posiciones las salidas son las mismas filas, solo cambiadas de sitio (diferencia máxima {difference:.1e}): la atención por sí sola no ve el orden.",
        "permute_positions": "        Con posiciones ({kind}) las salidas cambian (diferencia máxima {difference:.2f}, junto a valores de hasta {largest:.2f}): ahora el orden importa.",
        "permute_causal": "        (la máscara causal también depende del orden, así que también cambia las salidas)",
        "compare_title": 'A qué mira "{word}" en cada frase (L{layer} H{head}):',
        "compare_line": "        {text}: {targets}",
        "compare_reason": 'una cabeza que atiende por contenido; en las dos frases al menos el {share:.0%} de la atención de "{word}" va a las demás palabras',
        "head_link": 'da el {share:.0%} de la atención de "{word}" a "{target}"',
        "cost_title": "atenea cost: una cabeza de atención (d = {dim}) a medida que crece la longitud L, en {device} ({threads} hilo(s))",
        "cost_paths": "caminos: literal = los siete pasos con la matriz L x L entera; fused = el núcleo fusionado de PyTorch; window = una ventana deslizante de {window} llaves por consulta",
        "cost_memory": "memoria: el pico de los tensores que crea cada camino además de sus entradas ({how})",
        "cost_memory_cpu": "tal como los reservan los operadores de PyTorch; no se ve la memoria interna de un núcleo fusionado",
        "cost_memory_cuda": "torch.cuda.max_memory_allocated",
        "cost_header": "{length:>8} {path:>8} {time:>12} {memory:>12}",
        "cost_stopped": "{path}: parado antes de L = {length}: necesitaría unos {need}, más de los {have} que puede usar aquí",
        "cost_fit": "exponente ajustado, {path}: tiempo ~ L^{time:.2f}, memoria ~ L^{memory:.2f}",
        "cost_fit_short": "{path}: muy pocas longitudes para ajustar un exponente",
        "cost_plot": "gráfica guardada en {path}",
        "cost_lesson": "El camino literal guarda una matriz L x L: al doblar L su memoria se multiplica por 4. La ventana guarda L x {window}: el doble de largo, el doble de memoria.",
        "explain_title": "atenea explain: {name} ({family}, {layers} capas x {heads} cabezas)",
        "explain_text": "texto: {text}",
        "explain_note": "nota: {notice}",
        "explain_tokens": "tokens ({count}): {tokens}",
        "explain_focus": "foco {word} (token {index}); en cada capa, la media de sus cabezas:",
        "explain_layer": "capa {layer}: {word} -> {targets}",
        "explain_blocks": " (en bloques de {block} tokens)",
        "explain_rollout": "rollout, todas las capas encadenadas{blocks}: {word} -> {targets}",
        "explain_link": 'el enlace más fuerte más allá de los vecinos: L{layer} H{head} lleva el {share:.0%} de la atención de "{word}" a "{target}"',
        "explain_heads": "cabezas con un patrón claro:",
        "head_previous": "{name} mira al token anterior ({share:.0%} de su peso)",
        "head_next": "{name} mira al token siguiente ({share:.0%} de su peso)",
        "head_self": "{name} se mira a sí misma, a su propio token ({share:.0%} de su peso)",
        "head_special": "{name} descansa en los tokens especiales ([CLS]/[SEP]): una cabeza en reposo ({share:.0%} de su peso)",
        "head_first": "{name} vuelca su atención en el primer token, un sumidero de atención ({share:.0%} de su peso)",
        "head_broad": "{name} reparte su atención por toda la frase (entropía {entropy:.2f})",
        "head_content": "{name} atiende por contenido (distancia media {distance:.1f} tokens, entropía {entropy:.2f})",
        "s2s_title": "atenea explain: {name} (EncoderDecoderModel, {shape})",
        "s2s_shape": "{encoder}+{decoder} capas (codificador+decodificador) x {heads} cabezas",
        "s2s_source": "fuente: {text}",
        "s2s_generated": "generada eligiendo siempre el token más probable",
        "s2s_given": "dada",
        "s2s_target": "destino ({how}): {target}",
        "s2s_source_tokens": "tokens de la fuente ({count}): {tokens}",
        "s2s_target_tokens": "tokens del destino ({count}): {tokens}",
        "s2s_last": "última capa L{layer}",
        "s2s_sharpest": " | capa más nítida L{layer}",
        "s2s_alignment": "alineamiento: cada token del destino -> los tokens de la fuente a los que más mira (atención cruzada, media de las cabezas; {layers}):",
        "s2s_heads": "cabezas de atención cruzada:",
        "cross_special": "{name} descansa en los tokens especiales de la fuente: una cabeza en reposo ({share:.0%} de su peso)",
        "cross_broad": "{name} reparte su atención por toda la fuente (entropía {entropy:.2f})",
        "cross_diagonal": "{name} recorre la fuente en orden (distancia media a la diagonal {distance:.1f} tokens)",
        "cross_content": "{name} alinea por contenido (distancia media a la diagonal {distance:.1f} tokens, entropía {entropy:.2f})",
    },
}
