"""The four training tasks: what model to build, how to batch, what loss, how to score.

    classify   text -> label            WordPiece + EncoderForSequenceClassification
    translate  source text -> target    byte-level BPE (chars for the built-in dates)
                                        + EncoderDecoderModel, greedy decoding to score
    lm         next token               byte-level BPE + DecoderModel on packed documents
    mlm        masked tokens            WordPiece + EncoderForMaskedLM (BERT's 80/10/10)

``build_task(name, data=..., size="tiny")`` reads the data, trains the tokenizer on the
training texts and returns a ``Task`` (the interface of docs/training.md); ``task.describe()``
is saved as ``task.json``, and ``from_description(read_description(folder), folder)``
rebuilds the same task from it and the saved tokenizer (for ``atenea evaluate`` and resuming:
nothing is retrained).

    settings.py   sizes, options, the defaults of a run, ``overrides``, TaskError
    base.py       the Task interface and what every task shares
    classify.py, translate.py, lm.py, mlm.py   one task each (its choices in its docstring)
    build.py      build_task, from_description

Errors are ``TaskError`` (a ValueError) whose message starts with the argument at fault
(``size: ...``, ``overrides: ...``, ``max_length: ...``).
"""

from atenea.training.tasks.base import IGNORE, Task
from atenea.training.tasks.build import (
    TASK_CLASSES,
    build_task,
    from_description,
    read_description,
)
from atenea.training.tasks.classify import ClassifyTask
from atenea.training.tasks.lm import LanguageModelTask
from atenea.training.tasks.mlm import MaskedLanguageModelTask
from atenea.training.tasks.settings import (
    DEFAULTS,
    SIZES,
    TASKS,
    TaskError,
    parse_overrides,
)
from atenea.training.tasks.translate import TranslateTask

__all__ = [
    "DEFAULTS",
    "IGNORE",
    "SIZES",
    "TASKS",
    "TASK_CLASSES",
    "ClassifyTask",
    "LanguageModelTask",
    "MaskedLanguageModelTask",
    "Task",
    "TaskError",
    "TranslateTask",
    "build_task",
    "from_description",
    "parse_overrides",
    "read_description",
]
