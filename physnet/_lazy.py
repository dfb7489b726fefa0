"""PEP 562 lazy attributes of a package: its public names load on first use."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Collection, Mapping
from typing import Any


def lazy_attributes(
    package: str, names: Mapping[str, str], submodules: Collection[str], public: Collection[str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of ``package``.

    A name of ``names`` (public name -> module that defines it) is imported the first time it is
    used and bound in the package, so later look-ups skip ``__getattr__``; a name of
    ``submodules`` imports ``package.<name>`` (the import binds the attribute). ``public`` is
    the package's ``__all__``.
    """

    def __getattr__(name: str) -> Any:
        if name in submodules:
            return importlib.import_module(f"{package}.{name}")
        if name not in names:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(names[name]), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(public))

    return __getattr__, __dir__
