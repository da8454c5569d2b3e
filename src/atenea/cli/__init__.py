"""The ``atenea`` command: a thin front over the library."""
