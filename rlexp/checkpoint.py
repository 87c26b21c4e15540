"""Checkpoint files: written atomically, loaded weights-only (loading never runs code)."""

from __future__ import annotations

import pickle
import shutil
import zipfile
from pathlib import Path
from typing import Any

import torch

from rlexp.rundir import atomic_write


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, truncated, corrupt or not rlexp's."""


class CheckpointWriteError(OSError):
    """A checkpoint could not be written (e.g. the disk is full); the previous one is intact."""


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Save ``state`` (tensors, numbers, strings, lists and dicts only) atomically."""
    path = Path(path)
    try:
        atomic_write(path, lambda tmp: torch.save(state, tmp))
    except (OSError, RuntimeError) as e:  # torch's zip writer reports failed writes as either
        free = shutil.disk_usage(path.parent).free if path.parent.exists() else 0
        raise CheckpointWriteError(
            f"could not write {path} ({str(e).splitlines()[0]}; {free / 1e6:.0f} MB free on its "
            "disk); the previous checkpoint, if any, is kept") from e


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
