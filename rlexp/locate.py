"""Import paths written in configs (``module.Name``) to the objects they name, with one-line
errors: the classes of ``_target_`` keys (a user's agent or env config) and of env.wrappers."""

from __future__ import annotations

import importlib
from typing import Any


def locate(path: str) -> Any:
    """The object ``module.Name`` names; ValueError saying why it cannot be imported."""
    module, _, name = path.rpartition(".")
    if not module:
        raise ValueError(f"{path!r} is not an import path (module.Class)")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"{path!r} cannot be imported: {e}") from e
