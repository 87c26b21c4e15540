"""``python -m rlexp.train --help``: the config groups a user chooses from, and every field of
every option with its one-line doc, read from the schema dataclasses themselves (the ``#:``
comment above each field), so the help cannot drift from the code."""

from __future__ import annotations

import dataclasses
import importlib.resources
import inspect
import textwrap
from pathlib import Path
from typing import Any

import yaml
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import MISSING

from rlexp.config import CONFIG_DIR, SCHEMAS, Config, ConfigError, DeviceConfig, schema_of

#: Groups of conf/ that are not chosen on the command line (Hydra's own, the typed schemas).
INTERNAL_GROUPS = ("hydra", "schema")
#: Groups whose options are presets rather than schemas: listed with their first comment line.
PRESET_GROUPS = ("experiment", "hparams_search", "tuned")


def field_docs(cls: type) -> dict[str, str]:
    """{field: its ``#:`` doc comment, joined into one line} over ``cls`` and its bases."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        comment: list[str] = []
        for line in inspect.getsource(klass).splitlines():
            text = line.strip()
            if text.startswith("#:"):
                comment.append(text[2:].strip())
            elif ":" in text and not text.startswith(("#", "def ", "@", "class ")) and comment:
                docs[text.split(":")[0].strip()] = " ".join(comment)
                comment = []
            elif not text.startswith("#"):
                comment = []
    return docs


def _yaml(dirs: list[Path], group: str, option: str) -> Path:
    """An option's YAML: in the first config directory that has it (as Hydra searches)."""
    return next(d / group / f"{option}.yaml" for d in dirs
                if (d / group / f"{option}.yaml").is_file())


def _schema_of(dirs: list[Path], group: str, option: str) -> str | type | None:
    """The schema an option's YAML builds on, following its defaults list: a registered
    schema's name, or the class a ``_target_`` (a user's agent or env) names."""
    data = yaml.safe_load(_yaml(dirs, group, option).read_text()) or {}
    if group in ("agent", "env") and "_target_" in data:
        try:
            return schema_of(group, data)
        except ConfigError:  # said when the option is chosen
            return None
    for entry in data.get("defaults", []):
        if not isinstance(entry, str) or entry == "_self_":
            continue
        if entry.startswith("/schema/"):
            return entry.split("@")[0].split("/")[-1]
        return _schema_of(dirs, group, entry)
    return None


def _options(dirs: list[Path], group: str) -> list[str]:
    return sorted({p.stem for d in dirs for p in (d / group).glob("*.yaml")})


def _first_comment(path: Path) -> str:
    """The first sentence of the file's leading comment."""
    words = []
    for line in path.read_text().splitlines():
        if line.startswith("# @package"):
            continue
        if not line.startswith("#"):
            break
        words.append(line.lstrip("# ").strip())
    return " ".join(words).split(". ")[0].rstrip(".")


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else MISSING


def _fields(cls: type, prefix: str, values: Any = None) -> list[str]:
    """One wrapped line per field: ``prefix.field = default: doc``; nested dataclasses (the
    network, epsilon) with the values the enclosing class gives them."""
    docs, lines = field_docs(cls), []
    for f in dataclasses.fields(cls):
        value = getattr(values, f.name) if values is not None else _default(f)
        own = f.name == "name" or (f.name == "_target_" and prefix in ("agent.", "env."))
        if own or value == MISSING:  # the option's own (its YAML's), or set by the root config
            continue
        doc = docs.get(f.name, "")
        if dataclasses.is_dataclass(value):
            lines += [_wrap(f"{prefix}{f.name}: {doc}")] if doc else []
            lines += _fields(type(value), f"{prefix}{f.name}.", value)
        else:
            lines.append(_wrap(f"{prefix}{f.name} = {value!r}" + (f": {doc}" if doc else "")))
    return lines


def _wrap(text: str) -> str:
    return textwrap.fill(text, width=100, initial_indent="    ", subsequent_indent="        ")


def _summary(cls: type) -> str:
    """The first paragraph of the class's docstring (none: dataclass's generated signature)."""
    doc = inspect.getdoc(cls) or ""
    if doc.startswith(f"{cls.__name__}("):
        return ""
    return textwrap.fill(doc.split("\n\n")[0], width=100, initial_indent="  ",
                         subsequent_indent="  ")


def help_text(extra_dirs: list[Path] = ()) -> str:
    """The help, over rlexp's conf/ and ``extra_dirs`` (a user's ``hydra.searchpath``)."""
    dirs = [Path(CONFIG_DIR), *extra_dirs]
    groups = sorted({p.name for d in dirs if d.is_dir() for p in d.iterdir()
                     if p.is_dir() and p.name not in INTERNAL_GROUPS})
    out = ["python -m rlexp.train [-m] [group=option ...] [key=value ...]",
           "python -m rlexp.train resume=RUN_DIR [total_steps=N]   (continue a run with its "
           "own config; a larger total_steps trains it for longer)", "",
           "Choose an option per config group and override any field; -m sweeps every "
           "combination of comma-separated values (docs/sweeps.md). --cfg job prints the "
           "composed config; --hydra-help lists Hydra's own flags. Below: each option's fields "
           "with the defaults of its schema (an option's YAML may set some: --cfg job shows "
           "them).", "", "== Config groups =="]
    out += [f"{group}: {', '.join(_options(dirs, group))}" for group in groups]
    schemas = {**SCHEMAS, "device": {"device": DeviceConfig}}
    for group in sorted(schemas):
        by_schema: dict[str | type, list[str]] = {}
        for option in _options(dirs, group):
            by_schema.setdefault(_schema_of(dirs, group, option) or option, []).append(option)
        for schema, options in sorted(by_schema.items(), key=lambda item: str(item[0])):
            cls = schema if isinstance(schema, type) else schemas[group].get(schema)
            if cls is None:
                continue
            out += ["", f"== {group}={'|'.join(options)} ({cls.__name__}) =="]
            out += [summary] if (summary := _summary(cls)) else []
            out += _fields(cls, f"{group}.")
    for group in PRESET_GROUPS:
        out += ["", f"== {group}= =="]
        out += [f"    {o}: {_first_comment(_yaml(dirs, group, o))}"
                for o in _options(dirs, group)]
    out += ["", "== Top-level keys (Config) =="]
    out += _fields(Config, "")
    return "\n".join(out)


def search_path_dirs(args: list[str]) -> list[Path]:
    """The config directories a command line's ``hydra.searchpath=[...]`` adds (``file://``
    paths and ``pkg://`` packages), in order."""
    dirs = []
    for arg in args:
        if not arg.startswith("hydra.searchpath="):
            continue
        (override,) = OverridesParser.create().parse_overrides([arg])
        for entry in override.value():
            scheme, _, where = str(entry).partition("://")
            if scheme == "file":
                dirs.append(Path(where))
            elif scheme == "pkg":
                dirs.append(Path(str(importlib.resources.files(where))))
    return dirs
