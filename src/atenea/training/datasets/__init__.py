"""Built-in data made by our own code (no download): ``dates`` (translate), ``sentiment``
(classify) and ``stdlib`` (lm / mlm: the Python standard library's source files); and
from installed packages: ``wikipedia`` (summaries, EN / ES) and ``pydocs`` (the Python docs)."""
