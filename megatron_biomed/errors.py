"""The one base class of every error the library raises on purpose.

Each seam has its own error (ConfigError, LayoutError, DataError, CheckpointError, ConversionError, ...); every
one of them subclasses :class:`BiomedError`, keeping the builtin base it had (ValueError, RuntimeError, ...).
Entry points catch ``BiomedError`` alone (training/launch.py prints its message and exits 2), so a caller never
needs to know a higher package's error classes. Anything else that escapes is a bug and keeps its traceback.
"""

from __future__ import annotations


class BiomedError(Exception):
    """A problem the message explains (which file, line or field, and what to do); not a bug."""
