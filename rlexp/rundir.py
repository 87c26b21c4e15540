"""The run directory: its layout, atomic writes, a run's status, claiming and locking a
directory, finding unfinished runs and the checks before (re)starting one.

Nothing else builds run-dir paths by hand. A run directory holds::

    .hydra/                 Hydra's record of the launch (.hydra/resume_<time>/ for each resume)
    config.yaml             the resolved config the run used
    events.out.tfevents.*   TensorBoard
    train.log               the console log
    checkpoints/last.pt     the latest training state, to resume from
    checkpoints/final.pt    the trained agent
    metrics.json            the outcome (rlexp.metrics)
    .lock                   held by the process training in it

Two processes never train in one directory: a new run claims a directory no other process has
(``claim_new``), and every run holds an exclusive lock on its directory (``lock``) from before
Hydra writes into it until it ends, so a second process aimed at the same directory (an explicit
``hydra.run.dir``, ``resume=``, a sweep resumed while it still runs) refuses to start.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import functools
import json
import os
import re
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

CONFIG = "config.yaml"
METRICS = "metrics.json"
LAST = "checkpoints/last.pt"  # written every checkpoint.every_steps and at the end
FINAL = "checkpoints/final.pt"  # the trained agent, written once at the end
HYDRA = ".hydra"
OVERRIDES = "overrides.yaml"  # in HYDRA: the command-line overrides of the launch
TRAIN_LOG = "train.log"
EVAL_JSON = "eval.json"  # written by python -m rlexp.evaluate
EVAL_GIF = "eval.gif"  # python -m rlexp.evaluate video=true
# In a sweep dir: its report (rlexp.report).
SUMMARY_MD, SUMMARY_CSV = "summary.md", "summary.csv"
CURVES_PNG, CURVES_DIR, AGGREGATE_PNG = "curves.png", "curves", "aggregate.png"
LOCK = ".lock"
#: In a sweep directory: the sweep was asked to stop (holds the signal's number).
SWEEP_STOP = ".stop-requested"
# In a sweep directory: the keys the sweep varies, one per line (write_swept_keys).
SWEPT_KEYS = ".swept-keys"
#: Where a run that is started again from scratch (a failed sweep run, ``retry_failed=true``)
#: keeps its earlier attempts: ``.attempts/<n>/``.
ATTEMPTS = ".attempts"


class RunDirError(ValueError):
    """A run directory that cannot be used as asked (in use, finished, not a run)."""


# ----------------------------------------------------------------------------- atomic writes


class WriteError(OSError):
    """A file could not be written (a full disk, a read-only one, no permission); the previous
    version of the file, if any, is intact."""


def write_error(path: Path, e: BaseException, reason: str | None = None) -> WriteError:
    """The one-line :class:`WriteError` for a failed write of ``path``: why (``reason``, else
    the error's), and how much space its disk has left."""
    path = Path(path)
    if reason is None:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else \
            (str(e).strip().splitlines() or [type(e).__name__])[0]
    where = next((p for p in (path, *path.parents) if p.exists()), Path("/"))
    try:
        free = f"{_size(shutil.disk_usage(where).free)} free on its disk"
    except OSError:
        free = "its disk cannot be read"
    return WriteError(f"could not write {path}: {reason} ({free}); the previous {path.name}, "
                      "if any, is kept")


def _size(n: int) -> str:
    for unit in ("bytes", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000
    return ""


def atomic_write(path: Path, write: Callable[[Path], object]) -> None:
    """Call ``write(tmp_path)``, then rename over ``path``: readers see the old file or the new
    one, never half of one. A write the disk refuses raises :class:`WriteError`."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write(tmp)
        os.replace(tmp, path)
    except WriteError:
        raise
    except OSError as e:
        raise write_error(path, e) from e
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)


def remove_partial_writes(directory: Path) -> None:
    """Delete the temporary files a process killed inside :func:`atomic_write` left behind."""
    for tmp in Path(directory).glob(".*.tmp[0-9]*"):
        tmp.unlink(missing_ok=True)


# ------------------------------------------------------------------------------------ status


def status(run_dir: Path) -> str | None:
    """The status in a run dir's metrics.json; None when it has none (yet) or it is unreadable."""
    try:
        return json.loads((Path(run_dir) / METRICS).read_text()).get("status")
    except (OSError, ValueError, AttributeError):
        return None


def is_run(run_dir: Path) -> bool:
    """Whether Hydra launched a job in ``run_dir`` (it has a ``.hydra/`` record)."""
    return (Path(run_dir) / HYDRA).is_dir()


def has_checkpoint(run_dir: Path) -> bool:
    return (Path(run_dir) / LAST).is_file() and (Path(run_dir) / CONFIG).is_file()


def launch_overrides(run_dir: Path) -> list[str]:
    """The command-line overrides the run was first launched with (``.hydra/overrides.yaml``;
    for a directory that only has a resume's record, that record's)."""
    records = [Path(run_dir) / HYDRA / OVERRIDES,
               *sorted((Path(run_dir) / HYDRA).glob(f"resume_*/{OVERRIDES}"))]
    for record in records:
        if record.is_file():
            return [o for o in yaml.safe_load(record.read_text()) or []
                    if not is_launch_only(o)]
    return []


#: Overrides that say how to launch, not what to train: left out of run comparisons and of
#: sweep job directory names (conf/hydra/rlexp.yaml lists the same keys).
LAUNCH_KEYS = ("resume", "retry_failed")


def write_swept_keys(sweep_dir: Path, keys: list[str]) -> None:
    """Record the keys a sweep varies (rlexp.report.SweepReport does, before it launches the
    jobs), for :func:`job_dirname` in every job's process, wherever it runs."""
    Path(sweep_dir).mkdir(parents=True, exist_ok=True)
    atomic_write(Path(sweep_dir) / SWEPT_KEYS, lambda tmp: tmp.write_text("\n".join(keys)))


def swept_keys(sweep_dir: Path) -> set[str]:
    """The keys :func:`write_swept_keys` recorded for a sweep (none when it did not)."""
    try:
        return set((Path(sweep_dir) / SWEPT_KEYS).read_text().split())
    except FileNotFoundError:
        return set()


def job_dirname(task_overrides, sweep_dir: str) -> str:
    """A sweep job's directory name: its overrides, those of the sweep's swept keys first, then
    the others, each part by name (``optimizer=adam,seed=1,device=cpu,env=toy``), so that the
    part that tells runs apart survives wherever a long name is cut (TensorBoard's run list). By
    name, not as typed, so that the same sweep typed in another order (resuming it) finds the
    same directories; launch options (``resume``, ``retry_failed``) are left out for the same
    reason."""
    swept = swept_keys(Path(sweep_dir))
    kept = [str(o) for o in task_overrides if override_key(str(o)) not in LAUNCH_KEYS]
    return ",".join(sorted(kept, key=lambda o: (override_key(o) not in swept, o)))


def override_key(override: str) -> str:
    """The key a command-line override sets: ``+a.b=1`` -> ``a.b``."""
    return override.lstrip("+~").split("=", 1)[0]


def is_launch_only(override: str) -> bool:
    key = override_key(override)
    return key in LAUNCH_KEYS or key.startswith("hydra.") or key.startswith("hydra/")


# ------------------------------------------------------------------------- claiming, locking

_claimed: dict[str, str] = {}
_locks: dict[Path, int] = {}


@functools.cache
def _launched() -> datetime.datetime:
    return datetime.datetime.now()


def launch_time(fmt: str) -> str:
    """When this process first asked (a sweep's launch), as ``fmt`` (strftime): the sweep
    dir's time. Hydra's ``${now:}`` is evaluated anew by every config a sweep composes (each
    job's, before Hydra gives it the first one's answers), and a sweep dir claimed at each of
    those times would leave an empty directory per job; this answer does not change."""
    return _launched().strftime(fmt)


def claim_new(path: str) -> str:
    """``path``, or ``path-2``, ``path-3``, ... : the first that this process could create
    itself, so runs started in the same second (in one shell or several) never share a
    directory. The same answer for the same ``path`` within a process (Hydra may resolve its
    config more than once)."""
    if path in _claimed:
        return _claimed[path]
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    for n in range(1, 10_000):
        candidate = path if n == 1 else f"{path}-{n}"
        try:
            os.mkdir(candidate)
        except FileExistsError:
            continue
        _claimed[path] = candidate
        return candidate
    raise RunDirError(f"cannot claim a new directory for {path}: 10,000 exist already")


def lock(run_dir: Path) -> None:
    """Hold an exclusive lock on ``run_dir`` for this process (released by :func:`unlock` or
    when the process ends, however it ends). Raises :class:`RunDirError` when another process
    holds it."""
    run_dir = Path(run_dir).resolve()
    if run_dir in _locks:
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(run_dir / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "another process"
        os.close(fd)
        raise RunDirError(f"{run_dir} is in use by {holder}: wait for it to end, or choose "
                          "another directory") from e
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"process {os.getpid()}\n".encode(), 0)
    _locks[run_dir] = fd


def unlock(run_dir: Path) -> None:
    fd = _locks.pop(Path(run_dir).resolve(), None)
    if fd is not None:
        os.close(fd)


def in_use(run_dir: Path) -> bool:
    """Whether another process holds ``run_dir``'s lock."""
    run_dir = Path(run_dir).resolve()
    if run_dir in _locks or not (run_dir / LOCK).is_file():
        return False
    fd = os.open(run_dir / LOCK, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)
    return False


# ------------------------------------------------------------------- starting and resuming


def find_unfinished_run(runs_root: Path, overrides: list[str]) -> Path:
    """The latest run under ``runs_root`` (``<date>/<run>/``) launched with the same
    command-line overrides (launch options aside) that has a checkpoint, did not complete and
    is not running now."""
    wanted = [o for o in overrides if not is_launch_only(o)]
    candidates = []
    for last in Path(runs_root).glob(f"*/*/{LAST}"):
        run_dir = last.parent.parent
        if status(run_dir) == "completed" or in_use(run_dir):
            continue
        if is_run(run_dir) and launch_overrides(run_dir) == wanted:
            candidates.append((last.stat().st_mtime, str(run_dir)))
    if not candidates:
        raise RunDirError(
            f"resume=true: no unfinished run under {runs_root} was started with the overrides "
            f"{wanted}; pass resume=RUN_DIR to name one")
    return Path(max(candidates)[1])


def check_resumable(run_dir: Path, resume: str) -> None:
    """Refuse ``resume=`` of a directory that is not an unfinished rlexp run."""
    if not has_checkpoint(run_dir):
        raise RunDirError(f"resume={resume}: {run_dir} is not an unfinished rlexp run "
                          f"(no {LAST} or {CONFIG})")


@dataclass(frozen=True)
class ResumePoint:
    """Where a resumed run continues from."""

    checkpoint: Path
    #: The run's ``total_steps`` before, when it is resumed with a larger one (trained for
    #: longer); None otherwise.
    extended_from: int | None
    #: Whether the run had completed (then it is being trained for longer).
    completed: bool


def checkpoint_to_resume(run_dir: Path, resume: str | None,
                         config_now: dict[str, object]) -> ResumePoint | None:
    """Before a run starts in ``run_dir``: where to continue from (``resume=``), or None for a
    new run. Refuses a finished run (unless ``resume=`` names it with a larger
    ``total_steps``: it is trained for longer), an unfinished one not named by ``resume=``, and
    a resume whose config differs from the saved one (``config_now``: flattened) in anything
    but a larger ``total_steps``."""
    config = Path(run_dir) / CONFIG
    saved = flatten(yaml.safe_load(config.read_text()) or {}) if config.is_file() else {}
    before = int(saved.get("total_steps", config_now["total_steps"]))
    extending = resume is not None and int(config_now["total_steps"]) > before
    completed = status(run_dir) == "completed"
    if completed and not extending:
        raise RunDirError(f"{run_dir} already holds a finished run; choose another "
                          f"hydra.run.dir, or train it for longer with resume={run_dir} "
                          f"total_steps=N (more than its {saved.get('total_steps')})")
    if resume is None:
        if (Path(run_dir) / LAST).exists():
            raise RunDirError(f"{run_dir} holds an unfinished run; continue it with "
                              f"resume={run_dir} or choose another hydra.run.dir")
        return None
    check_resumable(run_dir, resume)
    allowed = (*LAUNCH_KEYS, "run_name", *(("total_steps",) if extending else ()))
    # A key the saved config lacks was added to rlexp's schema since: it holds its default.
    # Where the scalars are also sent (logger.*) changes nothing the run computes.
    differ = sorted(k for k in saved if k not in allowed and not k.startswith("logger.")
                    and saved.get(k) != config_now.get(k))
    if differ:
        shown = ", ".join(f"{k}={saved.get(k)!r} (now {config_now.get(k)!r})"
                          for k in differ[:4])
        raise RunDirError(f"resume={resume}: the run was started with a different config: "
                          f"{shown}; resume with the same overrides (only a larger "
                          "total_steps may differ)")
    remove_partial_writes((Path(run_dir) / LAST).parent)
    return ResumePoint(Path(run_dir) / LAST, before if extending else None, completed)


def resumable(run_dir: Path) -> bool:
    """Whether a job finding ``run_dir`` (its own directory, in a sweep or a requeued cluster
    job) should continue the run there: it has a checkpoint and did not complete, fail or
    diverge."""
    return has_checkpoint(run_dir) and status(run_dir) not in ("completed", "failed", "diverged")


def set_aside(run_dir: Path) -> Path | None:
    """Move a failed or diverged run's files (all but Hydra's record and the lock) into
    ``.attempts/<n>/``, so the run can start again from scratch and nothing is lost."""
    run_dir = Path(run_dir)
    keep = {HYDRA, LOCK, ATTEMPTS, TRAIN_LOG}
    movable = [p for p in run_dir.iterdir() if p.name not in keep]
    if not movable:
        return None
    attempts = run_dir / ATTEMPTS
    n = 1 + sum(1 for _ in attempts.glob("*")) if attempts.is_dir() else 1
    target = attempts / str(n)
    target.mkdir(parents=True)
    for p in movable:
        shutil.move(str(p), target / p.name)
    return target


def discard_if_unused(run_dir: Path) -> None:
    """Remove a run dir that holds nothing but what Hydra wrote before the config was refused,
    so no directory is left looking like a run. Anything else in it is left alone."""
    run_dir = Path(run_dir)
    if run_dir.is_dir() and {p.name for p in run_dir.iterdir()} <= {HYDRA, TRAIN_LOG, LOCK}:
        unlock(run_dir)
        shutil.rmtree(run_dir, ignore_errors=True)
        with contextlib.suppress(OSError):  # the day's folder, if this was its only run
            run_dir.parent.rmdir()


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested config -> {"agent.gamma": 0.99, ...}, with values TensorBoard's HParams accepts:
    how run configs are compared (resume checks, populations) and shown."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if key == "_target_" and value is None:  # rlexp's own agent or env: no column for it
            continue
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        elif isinstance(value, bool | int | float | str):
            flat[name] = value
        else:  # lists, None
            flat[name] = str(value)
    return flat


def seed_dir(job_dir: Path, seed: int) -> Path:
    """The directory of seed ``seed`` of a job that trains several seeds."""
    return job_dir / f"seed{seed}"


def seed_dirs(job_dir: Path) -> list[Path]:
    """A job's ``seed<N>/`` directories, when it trained several seeds."""
    return sorted(p for p in job_dir.glob("seed*") if p.is_dir())


# -------------------------------------------------- resolvers that name, claim and lock run dirs

#: A run name: a single directory name's characters.
RUN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._=,+-]{0,99}")


def safe_dirname(text: str) -> str:
    """``text`` as one directory name: characters outside ``RUN_NAME``'s set become ``_``, so no
    run name or sweep override can reach outside ``outputs/`` (Hydra creates a run's directory
    before rlexp validates its config)."""
    name = re.sub(r"[^A-Za-z0-9._=,+-]", "_", str(text))[:200]
    return "_" + name if name.startswith(".") or not name else name


def resumes_latest(resume: str | None) -> bool:
    """Whether ``resume`` is ``true``: continue the latest unfinished run (a single run) or
    every unfinished run of the sweep (a multirun with its ``hydra.sweep.dir``)."""
    return resume is not None and str(resume).lower() == "true"


def claim_or_resume_run_dir(resume: str | None, new_dir: str, overrides) -> str:
    """The run directory: a new one claimed for this process from ``new_dir`` (``-2``, ...
    appended when another run has it), or the run that ``resume`` names (see Config.resume)."""
    if resume is None or resume == "":
        return claim_new(new_dir)
    if resumes_latest(resume):
        return str(find_unfinished_run(Path(new_dir).parent.parent, list(overrides)))
    # Checked here, before Hydra writes its files into the directory.
    check_resumable(Path(resume), resume)
    return str(resume)


def lock_run_dir_and_name_launch_record(resume: str | None, stamp: str,
                                         output_dir: str) -> str:
    """Lock the run dir ``output_dir``, then name where Hydra writes its record of the launch
    (config, overrides) in it: ``.hydra``, or for a resumed run ``.hydra/resume_<time>``, so
    the original launch's record is kept.

    Hydra asks for it just before it writes into ``output_dir``, so this is where the run takes
    the directory's lock: a second process aimed at a directory in use stops here, having
    written nothing but a line to its train.log."""
    lock(Path(output_dir))
    return HYDRA if resume is None or resume == "" else f"{HYDRA}/resume_{stamp}"


def run_label(agent: str, env: str, env_id: str) -> str:
    """The default ``run_name``: ``<agent>-<env option>``, or ``<agent>-<env id>`` for
    ``env=gym`` (``dqn-LunarLander-v3``, not ``dqn-gym`` for every gymnasium env)."""
    name = f"{agent}-{env_id if env == 'gym' else env}"
    return re.sub(r"[^A-Za-z0-9._=,+-]", "_", name)[:100]


def seed_label(seed: int, seeds: int) -> str:
    """The run dir's seed part: ``seed13``, or ``seeds13-22`` for a job of ``seeds=10`` runs
    (its ``seed13/`` ... ``seed22/`` directories)."""
    return f"seed{seed}" if int(seeds) <= 1 else f"seeds{seed}-{int(seed) + int(seeds) - 1}"
