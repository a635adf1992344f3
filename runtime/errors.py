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
    """An optional dependency is absent (or present but broken); the message carries the ``pip install`` line."""

    def __init__(self, module: str, extra: str, why: str = "", *, broken: str = "", hint: str = "") -> None:
        hint = hint or f"pip install 'edgevision[{extra}]'"
        detail = f" ({why})" if why else ""
        if broken:
            msg = f"{module} is installed but failed to load ({broken}){detail}; reinstall it with: {hint}"
        else:
            msg = f"{module} is not installed{detail}; install it with: {hint}"
        super().__init__(msg)
        self.module = module
        self.extra = extra


def dependency_error(exc: ImportError, module: str, extra: str, why: str = "", *, hint: str = "") -> BaseException:
    """What a failed lazy import should raise (``raise dependency_error(exc, ...) from exc``).

    Ctrl-C while a C extension initialises surfaces as ``ImportError: initialization failed`` chained from
    the ``KeyboardInterrupt``: that gives the interrupt back, so the user sees an interrupted run, not "not
    installed". A module that is absent -> "not installed"; one that is present but fails -> "failed to load".
    """
    seen: BaseException | None = exc
    for _ in range(16):  # a cause chain is short; the bound guards against cycles
        if seen is None:
            break
        if isinstance(seen, KeyboardInterrupt):
            return KeyboardInterrupt()
        seen = seen.__cause__ or seen.__context__
    if isinstance(exc, ModuleNotFoundError):
        return MissingDependencyError(module, extra, why, hint=hint)
    return MissingDependencyError(module, extra, why, broken=str(exc) or type(exc).__name__, hint=hint)


class InternalError(EdgevisionError):
    """Something edgevision itself got wrong; not the user's fault."""

    exit_code = 1
