"""Process-wide settings a run makes before it trains: torch's threads and flush-to-zero mode,
the device, glibc's malloc, the global random seeds, and a quick exit.

Ending a command's processes quickly: at exit, Python runs its cyclic garbage collector over
every object still alive: after torch's import alone that is hundreds of thousands of objects,
a large part of a short command's time. A process that has written and closed
everything has nothing left to collect, so rlexp's entry points (the commands, a population's
worker processes, a sweep job in a joblib worker) have the objects alive at exit moved out of
the collector's reach (``gc.freeze``) first. Exit handlers (logging's flush, multiprocessing's
clean-up) still run. As a library (``load_agent`` in a notebook) rlexp leaves the
interpreter's exit as it is.
"""

from __future__ import annotations

import atexit
import ctypes
import ctypes.util
import functools
import gc
import random

import numpy as np
import torch

from rlexp.config import ConfigError, DeviceConfig


def resolve_device(cfg: DeviceConfig) -> torch.device:
    """The torch device for ``device.type``; fails clearly when CUDA is asked for but absent."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.set_flush_denormal(cfg.flush_denormal)  # this thread's mode (see DeviceConfig)
    keep_freed_memory()
    if cfg.type == "auto":
        return torch.device("cuda" if uses_cuda(cfg) else "cpu")
    if cfg.type.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(
                f"device={cfg.type}: CUDA is not available (torch {torch.__version__}, "
                f"{torch.cuda.device_count()} GPUs visible); use device=cpu or device=auto"
            )
        index = torch.device(cfg.type).index
        if index is not None and index >= torch.cuda.device_count():
            raise ConfigError(
                f"device.type={cfg.type}: only {torch.cuda.device_count()} CUDA devices visible"
            )
    return torch.device(cfg.type)


#: glibc's mallopt parameters (malloc.h) and the values rlexp sets.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
TRIM_THRESHOLD = 256 * 2**20
MMAP_THRESHOLD = 32 * 2**20  # glibc's largest


@functools.cache
def keep_freed_memory() -> bool:
    """Make glibc's malloc keep the memory torch frees for its next tensors (returns whether it
    could: glibc only).

    A gradient step allocates and frees the same tensors every time. By default glibc gives
    large blocks back to the kernel when they are freed (a block it mapped on its own, past a
    threshold it moves as it goes; the heap's free top past another), so a population's steps
    (activations of members x 256 x 128 floats) page-fault their memory in again and again
    (docs/benchmarks.md, "Measurements behind the code"). Blocks up to 32 MB now come from the
    heap, and up to 256 MB of it is kept when free.
    """
    name = ctypes.util.find_library("c")
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError, TypeError):  # not glibc (macOS, musl without mallopt)
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and \
        bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))


def uses_cuda(cfg: DeviceConfig) -> bool:
    """Whether ``device.type`` names a CUDA device (``auto``: when one is available)."""
    return cfg.type.startswith("cuda") or (cfg.type == "auto" and torch.cuda.is_available())


def seed_everything(seed: int) -> None:
    """Seed python's, numpy's and torch's global generators (envs and agents get their own)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def skip_exit_collection() -> None:
    """At this process's exit, leave the objects alive then uncollected (once, however often
    it is called)."""
    atexit.unregister(gc.freeze)
    atexit.register(gc.freeze)
