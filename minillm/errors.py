"""minillm's own error type: bad input a user can fix, told in one sentence.

Lecture-independent plumbing. Every check of something a user chooses (a file, a field, a
flag, a checkpoint, a size against the block, a device) raises `UserError` (a ValueError),
and `minillm` prints its sentence without a traceback. Any other exception is a bug, in
minillm or in code a student changed, and the command shows its full traceback.
This module imports nothing, so every layer (tokenizers and data included) may raise it.
"""
from __future__ import annotations


class UserError(ValueError):
    """Bad input: the message says what was wrong and what was expected."""


class MissingFileError(UserError, FileNotFoundError):
    """A file or directory the user named does not exist (still a FileNotFoundError)."""
