"""The API reference (``make docs``) is built from docstrings: every public
name has one."""

import importlib
import inspect
import pkgutil
from collections.abc import Generator
from typing import Any

import pytest

import corofw

# Packages and modules whose every public function, class, method and
# property carries a docstring (inherited ones count, as in the reference).
FULLY_DOCUMENTED = [
    "corofw.kernel", "corofw.net", "corofw.web", "corofw.http.headers",
    "corofw.http.messages", "corofw.http.client_errors", "corofw.testing", "corofw.cli",
    "corofw.runner",
]


def documented(obj):
    return bool((inspect.getdoc(obj) or "").strip())


def is_class(obj):
    """A real class, told by its type: ``inspect.isclass`` trusts ``__class__``,
    which a parametrised alias such as ``Generator[Any, Any, T]`` forwards to its
    origin on Python 3.10."""
    return issubclass(type(obj), type)


def is_code(obj):
    return is_class(obj) or inspect.isroutine(obj) or inspect.ismodule(obj)


@pytest.mark.parametrize("alias", [corofw.Coro, list[int], Generator[Any, Any, int]])
def test_a_type_alias_is_a_data_object(alias):
    assert not is_code(alias)


@pytest.mark.parametrize("code", [corofw.Kernel, corofw.Router, corofw.run_app, corofw])
def test_classes_functions_and_modules_are_code(code):
    assert is_code(code)


@pytest.mark.parametrize("name", corofw.__all__)
def test_every_public_name_has_a_docstring(name):
    obj = getattr(corofw, name)
    if not is_code(obj):
        pytest.skip(f"{name} is a data object (e.g. a type alias)")
    # a class must say what it is itself: its docstring is not inherited
    doc = obj.__doc__ if is_class(obj) else inspect.getdoc(obj)
    assert (doc or "").strip(), f"corofw.{name} has no docstring"


def modules(names):
    for name in names:
        module = importlib.import_module(name)
        yield module
        if hasattr(module, "__path__"):
            for info in pkgutil.walk_packages(module.__path__, name + "."):
                yield importlib.import_module(info.name)


def undocumented(module):
    if not (module.__doc__ or "").strip():
        yield module.__name__
    for name, obj in vars(module).items():
        if name.startswith("_") or getattr(obj, "__module__", None) != module.__name__:
            continue
        if inspect.isfunction(obj) and not documented(obj):
            yield f"{module.__name__}.{name}"
        if not is_class(obj):
            continue
        if not (obj.__doc__ or "").strip():
            yield f"{module.__name__}.{name}"
        for attr in vars(obj):
            if attr.startswith("_"):
                continue
            member = inspect.getattr_static(obj, attr)
            if isinstance(member, (staticmethod, classmethod)):
                member = member.__func__
            if not (isinstance(member, property) or inspect.isfunction(member)):
                continue
            if not documented(getattr(obj, attr)) and not (member.__doc__ or "").strip():
                yield f"{module.__name__}.{name}.{attr}"


def test_fully_documented_modules_have_every_docstring():
    missing = [name for module in modules(FULLY_DOCUMENTED) for name in undocumented(module)]
    assert not missing, "missing docstrings:\n" + "\n".join(missing)
