"""One exception hierarchy for the whole product.

``UserError`` is a mistake the user can fix (bad recipe key, missing file, wrong engine for this GPU):
the CLI prints its one-line message and exits with code 2, never a traceback. ``InternalError`` is a
bug or an environment fault inside edgevision: the CLI prints it with a hint to report it (exit 1).
The toolkit imports these from the runtime, so both halves raise the same types.
"""

from __future__ import annotations


class EdgevisionError(Exception):
    """Base class of every error edgevision raises on purpose."""

    exit_code: int = 1


class UserError(EdgevisionError):
    """Bad input: the message names the offending key, file or URI and says what to do."""

    exit_code = 2


class MissingDependencyError(UserError):
    """An optional dependency is absent; the message carries the exact ``pip install`` line."""

    def __init__(self, module: str, extra: str, why: str = "") -> None:
        hint = f"pip install 'edgevision[{extra}]'"
        detail = f" ({why})" if why else ""
        super().__init__(f"{module} is not installed{detail}; install it with: {hint}")
        self.module = module
        self.extra = extra


class InternalError(EdgevisionError):
    """Something edgevision itself got wrong; not the user's fault."""

    exit_code = 1
