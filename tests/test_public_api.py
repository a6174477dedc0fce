"""The public surface: one sorted, complete ``__all__``, a version, typing, docstrings."""

from __future__ import annotations

import inspect
import types
from importlib.metadata import version
from pathlib import Path

import pytest

import octovid

PUBLIC = [name for name in octovid.__all__ if name != "__version__"]


def defined_in_octovid(value: object) -> bool:
    """Whether ``value`` is a class or function that octovid itself defines (not a module)."""
    return not isinstance(value, types.ModuleType) and (
        getattr(value, "__module__", "") or ""
    ).startswith("octovid")


def test_all_is_sorted():
    """``octovid.__all__`` is in sorted order."""
    assert octovid.__all__ == sorted(octovid.__all__)


def test_all_has_no_duplicates():
    """Each name appears in ``__all__`` once."""
    assert len(set(octovid.__all__)) == len(octovid.__all__)


def test_all_is_complete():
    """Every public name octovid defines at top level is in ``__all__``."""
    public = {
        name for name, value in vars(octovid).items()
        if not name.startswith("_") and defined_in_octovid(value)
    }
    assert public - set(octovid.__all__) == set()
    assert len(public) >= 30


@pytest.mark.parametrize("name", octovid.__all__)
def test_everything_in_all_exists(name):
    """Each name in ``__all__`` is an attribute of the package."""
    assert hasattr(octovid, name)


def test_version_is_the_installed_version():
    """``octovid.__version__`` is a non-empty string taken from the package metadata."""
    assert isinstance(octovid.__version__, str)
    assert octovid.__version__
    assert octovid.__version__ == version("octovid")


def test_py_typed_ships_in_the_package():
    """The ``py.typed`` marker sits in the package directory."""
    assert (Path(octovid.__file__).parent / "py.typed").is_file()


@pytest.mark.parametrize("name", PUBLIC)
def test_public_names_have_docstrings(name):
    """Every public class and function has a docstring."""
    value = getattr(octovid, name)
    assert inspect.isclass(value) or inspect.isfunction(value)
    assert (value.__doc__ or "").strip()


METHODS = [
    (name, attr, member)
    for name in PUBLIC
    if inspect.isclass(getattr(octovid, name))
    for attr, member in vars(getattr(octovid, name)).items()
    if not attr.startswith("_")
    and (isinstance(member, property | classmethod | staticmethod) or inspect.isfunction(member))
]


@pytest.mark.parametrize(
    ("name", "attr", "member"), METHODS, ids=[f"{name}.{attr}" for name, attr, _ in METHODS]
)
def test_public_methods_have_docstrings(name, attr, member):
    """Every public method and property of a public class has a docstring."""
    function = member.fget if isinstance(member, property) else getattr(member, "__func__", member)
    assert (function.__doc__ or "").strip()


def test_the_documented_entry_points_are_found():
    """The method table covers the protocol core's public methods."""
    found = {f"{name}.{attr}" for name, attr, _ in METHODS}
    assert {"Task.from_response", "Task.terminal", "Status.terminal"} <= found
