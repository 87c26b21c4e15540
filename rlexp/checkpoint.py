"""Checkpoint files: written atomically, loaded weights-only (loading never runs code)."""

from __future__ import annotations

import pickle
import zipfile
from collections import OrderedDict, deque
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rlexp.rundir import atomic_write, write_error


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, truncated, corrupt or not rlexp's."""


#: Types ``torch.load(weights_only=True)`` accepts as they are (containers apart).
_LOADABLE = (torch.Tensor, torch.Size, bool, int, float, complex, str, bytes, bytearray, type(None))


def plain(value: Any, where: str = "state") -> Any:
    """``value`` as data that ``torch.load(weights_only=True)`` accepts: tensors and Python
    numbers, strings and bytes as they are; numpy arrays as tensors and numpy scalars as Python
    numbers; dicts, lists, tuples and sets item by item, a deque as a list. Anything else
    (an object, a function) raises TypeError naming where it is: no checkpoint is written that
    would not load."""
    if isinstance(value, np.generic) and value.dtype.kind in "biufc":  # before float: float64
        return value.item()
    if isinstance(value, _LOADABLE):
        return value
    if isinstance(value, np.ndarray) and value.dtype.kind in "biufc":
        return torch.from_numpy(value.copy())
    if isinstance(value, dict):
        kind = OrderedDict if isinstance(value, OrderedDict) else dict
        return kind((plain(k, where), plain(v, f"{where}[{k!r}]")) for k, v in value.items())
    if isinstance(value, list | tuple | set | frozenset | deque):
        items = [plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if isinstance(value, tuple) else \
            set(items) if isinstance(value, set | frozenset) else items
    raise TypeError(f"{where} is a {type(value).__module__}.{type(value).__qualname__}, which a "
                    "checkpoint cannot hold: state dicts hold tensors, numpy arrays, numbers, "
                    "strings, and lists, tuples and dicts of them")


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Save ``state`` atomically, converted by :func:`plain` so that it loads weights-only."""
    path = Path(path)
    state = plain(state)
    try:
        atomic_write(path, lambda tmp: torch.save(state, tmp))
    except RuntimeError as e:  # torch's zip writer reports some failed writes so, without why
        raise write_error(path, e, "the write failed part way") from e


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True``: a file holding any other object is refused."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive; this is not one
        raise CheckpointError(f"checkpoint {path} is truncated or corrupt (not a torch file)")
    # torch.load does not check the archive's CRC-32 checksums: flipped bytes inside a tensor
    # would load silently. Reading the archive once to check them costs milliseconds.
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
        raise CheckpointError(f"checkpoint {path} is truncated or corrupt: {e}") from e
    if bad is not None:
        raise CheckpointError(f"checkpoint {path} is truncated or corrupt (checksum mismatch "
                              f"in {bad})")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        lines = str(e).splitlines()
        why = next((ln.strip() for ln in lines if "Unsupported global" in ln), lines[0])
        raise CheckpointError(f"checkpoint {path} is refused: it holds objects other than "
                              f"tensors and plain data, and loading it could run code ({why})"
                              ) from e
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile) as e:
        raise CheckpointError(f"checkpoint {path} is truncated or corrupt: {e}") from e
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {path} is not an rlexp checkpoint")
    return state


# ------------------------------------------------------------------------ training checkpoints

#: Marks a file as an rlexp checkpoint; changes when the layout below changes incompatibly.
FORMAT = "rlexp-checkpoint-1"


def training_state(agent_state: dict, loop_state: dict, include_replay: bool = True) -> dict:
    """Everything a run needs to continue: the agent (networks, optimizer, counters, its RNG,
    optionally the replay buffer), the loop's counters, and torch's global RNG."""
    if not include_replay:
        agent_state = {k: v for k, v in agent_state.items() if k != "replay"}
    return {"format": FORMAT, "agent": agent_state, "loop": loop_state,
            "torch_rng": torch.get_rng_state()}


def load_training_state(path: Path, map_location: str | torch.device = "cpu") -> dict:
    """A checkpoint written by :func:`training_state`, checked to be one."""
    state = load_checkpoint(path, map_location)
    if state.get("format") != FORMAT or not {"agent", "loop"} <= set(state):
        raise CheckpointError(f"checkpoint {path} is not an rlexp checkpoint ({FORMAT})")
    return state


def restore_rng(state: dict) -> None:
    torch.set_rng_state(state["torch_rng"].cpu())
