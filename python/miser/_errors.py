"""Exceptions: one class per miser_status (include/miser/core.h), each
carrying the library's one-line message, all under :class:`MiserError`.
Each also derives from the closest built-in exception, so ``except
ValueError`` or ``except MemoryError`` keep working in code that does not
know miser."""
from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (~2 MB)

if TYPE_CHECKING:  # typing costs ~2 MB of RSS at run time: hints only
    from typing import Dict, Optional, Type


class MiserError(Exception):
    """Base class of every error this package raises.

    ``status`` is the miser_status number (0 for errors made in Python, such as
    :class:`ClosedError`), ``message`` the library's one-line message."""

    status: int = 0

    def __init__(self, message: str, status: Optional[int] = None):
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status


class OutOfMemoryError(MiserError, MemoryError):
    """MISER_ERR_NOMEM: an allocation failed."""
    status = 1


class MiserIOError(MiserError, OSError):
    """MISER_ERR_IO: a file could not be opened, read, mapped or written."""
    status = 2

    def __init__(self, message: str, status: Optional[int] = None):
        MiserError.__init__(self, message, status)

    def __str__(self) -> str:
        return self.message


class FormatError(MiserError, ValueError):
    """MISER_ERR_FORMAT: a file's content is malformed or lies about itself."""
    status = 3


class InvalidInputError(MiserError, ValueError):
    """MISER_ERR_INVALID: an invalid argument (also: a prompt that is not
    UTF-8, empty, or longer than the context)."""
    status = 4


class UnsupportedError(MiserError):
    """MISER_ERR_UNSUPPORTED: valid, but not something miser implements."""
    status = 5


class RangeError(MiserError, ValueError):
    """MISER_ERR_RANGE: a value outside what the model or config allows."""
    status = 6


class InternalError(MiserError):
    """MISER_ERR_INTERNAL: a broken invariant inside miser (a bug)."""
    status = 7


class ClosedError(MiserError, ValueError):
    """The object was closed (or its model was): its native memory is gone."""


class LibraryNotFoundError(MiserError, OSError):
    """libmiser.so could not be found or loaded; the message lists every place tried."""

    def __init__(self, message: str):
        MiserError.__init__(self, message)

    def __str__(self) -> str:
        return self.message


_BY_STATUS: Dict[int, Type[MiserError]] = {c.status: c for c in (
    OutOfMemoryError, MiserIOError, FormatError, InvalidInputError, UnsupportedError, RangeError, InternalError)}


def error_for(status: int, message: str) -> MiserError:
    """The exception for a failed call (status != 0)."""
    cls = _BY_STATUS.get(status, MiserError)
    return cls(message or f"miser status {status}", status)
