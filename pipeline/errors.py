"""Turn user-caused errors into one line and exit code 2."""

from __future__ import annotations

import errno
import functools
import logging
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])

EXIT_BAD_INPUT = 2


def _user_error_types() -> tuple[type[BaseException], ...]:
    from aamflow.schemas._registry import UnknownNameError
    from aamflow.schemas.errors import AamflowError

    return (AamflowError, UnknownNameError)


MAX_MESSAGE = 2000  # characters: an error line never carries a whole value


def one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 4] + " ..."


# what to do about the environment errors every verb can meet while writing
_OS_ADVICE = {
    errno.ENOSPC: "free some space and run the same command again: it resumes",
    errno.EDQUOT: "free some quota and run the same command again: it resumes",
    errno.EROFS: "write to a writable location (--out)",
    errno.EACCES: "check the permissions, or write elsewhere (--out)",
    errno.EPERM: "check the permissions, or write elsewhere (--out)",
}


def os_error_line(exc: OSError) -> str:
    """One line for an OSError: what failed, where, and what to do."""
    what = exc.strerror or str(exc) or type(exc).__name__
    where = f": {exc.filename}" if exc.filename else ""
    advice = _OS_ADVICE.get(exc.errno or 0)
    if advice:
        what += f" ({advice}; completed parts and files are kept, none is half-written)"
    return one_line(OSError(f"{what}{where}"))


def user_errors(fn: F) -> F:
    """Catch user-caused errors: print ``error: <one line>`` and exit 2.

    Environment errors (``OSError``: disk full, a read-only or missing folder) get one
    line too. With ``--log-level debug`` the traceback is shown as well.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except OSError as e:
            if logging.getLogger("aamflow").isEnabledFor(logging.DEBUG):
                import traceback

                traceback.print_exc()
            click.echo(f"error: {os_error_line(e)}", err=True)
            sys.exit(EXIT_BAD_INPUT)
        except _user_error_types() as e:
            if logging.getLogger("aamflow").isEnabledFor(logging.DEBUG):
                import traceback

                traceback.print_exc()
            click.echo(f"error: {one_line(e)}", err=True)
            sys.exit(EXIT_BAD_INPUT)

    return wrapper  # type: ignore[return-value]
