"""The wording of errors: one line for bad input (the key or value, and what is allowed), and
how the command exits with it."""

from __future__ import annotations

import dataclasses
import os
import sys

from hydra.errors import HydraException, MissingConfigException, OverrideParseException
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException

from rlexp.checkpoint import CheckpointError
from rlexp.config import ConfigError
from rlexp.rundir import RunDirError

#: Hydra plugin configs rlexp's presets use, and the extra that installs each plugin.
PLUGIN_EXTRAS = {
    "hydra/launcher/joblib": "launchers",
    "hydra/launcher/submitit_local": "launchers",
    "hydra/launcher/submitit_slurm": "launchers",
    "hydra/sweeper/optuna": "search",
}


def first_line(text: str) -> str:
    return text.strip().splitlines()[0].rstrip(".") if text.strip() else ""


def describe_error(e: BaseException) -> str:
    """One line for a config or input error: the bad key or value, and what is allowed."""
    cause = e
    while cause is not None:  # e.g. our own error, raised in a resolver while Hydra composed
        if isinstance(cause, ConfigError | CheckpointError | RunDirError):
            return first_line(str(cause))
        cause = cause.__cause__ or cause.__context__
    if isinstance(e, OverrideParseException):
        return (f"cannot parse the override {e.override!r}: write key=value, and quote a value "
                "with spaces or special characters (key='a b'); keys are ASCII names")
    if isinstance(e, MissingConfigException) and e.missing_cfg_file in PLUGIN_EXTRAS and \
            e.options is None:  # a preset (e.g. hydra/launcher=parallel) needs the plugin
        group, _, option = e.missing_cfg_file.rpartition("/")
        return (f"{group}={option} is not installed: it comes with a Hydra plugin: "
                f"pip install -e '.[{PLUGIN_EXTRAS[e.missing_cfg_file]}]'")
    if isinstance(e, MissingConfigException) and e.options is not None:
        # e.g. agent=foo: missing_cfg_file is "agent/foo", options are the group's configs
        group, _, option = (e.missing_cfg_file or "").rpartition("/")
        message = f"{group}={option} is not an option of {group}; choose one of: " + ", ".join(
            sorted(e.options))
        if f"{group}/{option}" in PLUGIN_EXTRAS:
            message += (f" ({option} comes with a Hydra plugin: pip install -e "
                        f"'.[{PLUGIN_EXTRAS[f'{group}/{option}']}]')")
        return message
    # Hydra's composition errors carry the useful part (key, expected type) in their cause.
    composing = isinstance(e, HydraException) and isinstance(e.__cause__, OmegaConfBaseException)
    cause = e.__cause__ if composing else e
    if isinstance(cause, ConfigAttributeError | ConfigKeyError) and dataclasses.is_dataclass(
            cause.object_type):
        allowed = ", ".join(f.name for f in dataclasses.fields(cause.object_type)
                            if f.name not in HIDDEN_FIELDS)
        return f"unknown key {cause.full_key!r}; allowed here: {allowed}"
    if cause is not e:  # e.g. "Error merging override x=y" caused by a type error
        return f"{first_line(str(e))}: {first_line(str(cause))}"
    if str(e).startswith("Ambiguous value for argument"):  # seed=0,1 without -m: Hydra's hints
        return (f"{first_line(str(e))}: to sweep over it, add --multirun (-m); for a list, "
                "key=[a,b]; for a string, quote it: key='a,b'")
    return first_line(str(e))


#: Fields a YAML sets and a command line has no reason to (the class an option is for).
HIDDEN_FIELDS = ("_target_", "_partial_")

#: Errors that mean "bad input": reported as one line, exit status 2, no traceback.
INPUT_ERRORS = (ConfigError, CheckpointError, RunDirError, HydraException,
                OmegaConfBaseException)
SHOW_TRACEBACK = os.environ.get("HYDRA_FULL_ERROR") == "1"


def exit_with_one_line(e: BaseException) -> None:
    if SHOW_TRACEBACK:
        raise e
    print(f"rlexp: error: {describe_error(e)}", file=sys.stderr)
    sys.exit(2)
