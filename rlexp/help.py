"""``python -m rlexp.train --help``: the config groups a user chooses from, and every field of
every option with its one-line doc, read from the schema dataclasses themselves (the ``#:``
comment above each field), so the help cannot drift from the code."""

from __future__ import annotations

import dataclasses
import inspect
import textwrap
from pathlib import Path
from typing import Any

import yaml
from omegaconf import MISSING

from rlexp.config import CONFIG_DIR, SCHEMAS, Config, DeviceConfig

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


def _schema_of(group: str, option: str) -> str | None:
    """The schema an option's YAML builds on, following its defaults list."""
    path = Path(CONFIG_DIR) / group / f"{option}.yaml"
    for entry in (yaml.safe_load(path.read_text()) or {}).get("defaults", []):
        if not isinstance(entry, str) or entry == "_self_":
            continue
        if entry.startswith("/schema/"):
            return entry.split("@")[0].split("/")[-1]
        return _schema_of(group, entry)
    return None


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (Path(CONFIG_DIR) / group).glob("*.yaml"))


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
        if f.name == "name" or value == MISSING:  # a group's choice, or set by the root config
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


def help_text() -> str:
    groups = sorted(p.name for p in Path(CONFIG_DIR).iterdir()
                    if p.is_dir() and p.name not in INTERNAL_GROUPS)
    out = ["python -m rlexp.train [-m] [group=option ...] [key=value ...]",
           "python -m rlexp.train resume=RUN_DIR [total_steps=N]   (continue a run with its "
           "own config; a larger total_steps trains it for longer)", "",
           "Choose an option per config group and override any field; -m sweeps every "
           "combination of comma-separated values (see the README). --cfg job prints the "
           "composed config; --hydra-help lists Hydra's own flags. Below: each option's fields "
           "with the defaults of its schema (an option's YAML may set some: --cfg job shows "
           "them).", "", "== Config groups =="]
    out += [f"{group}: {', '.join(_options(group))}" for group in groups]
    schemas = {**SCHEMAS, "device": {"device": DeviceConfig}}
    for group in sorted(schemas):
        by_schema: dict[str, list[str]] = {}
        for option in _options(group):
            by_schema.setdefault(_schema_of(group, option) or option, []).append(option)
        for schema, options in sorted(by_schema.items()):
            cls = schemas[group].get(schema)
            if cls is None:
                continue
            out += ["", f"== {group}={'|'.join(options)} ({cls.__name__}) =="]
            out += [summary] if (summary := _summary(cls)) else []
            out += _fields(cls, f"{group}.")
    for group in PRESET_GROUPS:
        out += ["", f"== {group}= =="]
        out += [f"    {o}: {_first_comment(Path(CONFIG_DIR) / group / f'{o}.yaml')}"
                for o in _options(group)]
    out += ["", "== Top-level keys (Config) =="]
    out += _fields(Config, "")
    return "\n".join(out)
