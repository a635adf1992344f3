"""Failed lazy imports: absent -> "not installed", broken -> "failed to load", Ctrl-C -> the interrupt."""

from __future__ import annotations

import pytest

from edgevision.runtime.errors import MissingDependencyError, dependency_error


def _raised(make: type[BaseException], cause: BaseException | None = None) -> ImportError:
    try:
        try:
            if cause is not None:
                raise cause
            raise make("no module named 'onnxruntime'")
        except BaseException as inner:
            if cause is None:
                raise
            raise ImportError("initialization failed") from inner
    except ImportError as exc:
        return exc
    raise AssertionError("unreachable")


def test_absent_module_says_how_to_install() -> None:
    err = dependency_error(_raised(ModuleNotFoundError), "onnxruntime", "runtime")
    assert isinstance(err, MissingDependencyError)
    assert str(err) == "onnxruntime is not installed; install it with: pip install 'edgevision[runtime]'"


def test_broken_module_says_it_failed_to_load() -> None:
    err = dependency_error(_raised(ImportError, RuntimeError("libfoo.so: cannot open shared object")),
                           "onnxruntime", "runtime")
    assert isinstance(err, MissingDependencyError)
    assert "installed but failed to load (initialization failed)" in str(err) and "reinstall" in str(err)


def test_ctrl_c_during_extension_init_is_given_back_as_the_interrupt() -> None:
    err = dependency_error(_raised(ImportError, KeyboardInterrupt()), "onnxruntime", "runtime")
    assert isinstance(err, KeyboardInterrupt)
    with pytest.raises(KeyboardInterrupt):
        raise err
