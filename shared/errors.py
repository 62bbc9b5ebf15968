"""The two kinds of job failure. A transient one (the database or broker out of reach, a deadlock, an I/O
error, a killed worker) may pass on a later attempt, so the runner retries it; anything else would fail the
same way again, so the job fails at once. `InputError` is the deterministic failure a user can fix: its
message is one line that names the CLI flag to change.

Which database errors are transient is the database layer's to say: db/ registers its classifier here
(``register_transient_check``) when it is imported, so this package never imports db/."""
from __future__ import annotations

from typing import Callable

TransientCheck = Callable[[BaseException], bool]

# Paths that are missing or forbidden stay so on a retry; other OS errors (EIO, ECONNRESET, timeouts) may not.
_LASTING_OS_ERRORS = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError, FileExistsError)
_TRANSIENT_CHECKS: list[TransientCheck] = []


class InputError(ValueError):
    """A job that cannot succeed as asked: a parameter out of range, a selection with no stars, a model of
    the wrong kind. Never retried; the CLI reports it with exit code 2 when it refuses a submission."""


def register_transient_check(check: TransientCheck) -> None:
    """Add a predicate that says whether an error of a lower layer (the database's) may pass on a retry."""
    if check not in _TRANSIENT_CHECKS:
        _TRANSIENT_CHECKS.append(check)


def is_transient(exc: BaseException | None) -> bool:
    """Whether a later attempt may succeed. Follows explicit chaining (``raise … from exc``)."""
    while exc is not None:
        if isinstance(exc, InputError):
            return False
        if _is_broker_error(exc) or any(check(exc) for check in _TRANSIENT_CHECKS):
            return True
        if isinstance(exc, OSError) and not isinstance(exc, _LASTING_OS_ERRORS):
            return True
        exc = exc.__cause__
    return False


def _is_broker_error(exc: BaseException) -> bool:
    from kombu.exceptions import OperationalError
    return isinstance(exc, OperationalError)
