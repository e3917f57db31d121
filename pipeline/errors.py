"""Turn user-caused errors into one line and exit code 2."""

from __future__ import annotations

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


def one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text


def user_errors(fn: F) -> F:
    """Catch user-caused errors: print ``error: <one line>`` and exit 2.

    With ``--log-level debug`` the traceback is shown too.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except _user_error_types() as e:
            if logging.getLogger("aamflow").isEnabledFor(logging.DEBUG):
                import traceback

                traceback.print_exc()
            click.echo(f"error: {one_line(e)}", err=True)
            sys.exit(EXIT_BAD_INPUT)

    return wrapper  # type: ignore[return-value]
