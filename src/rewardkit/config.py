"""One config dataclass per command; YAML files and command-line flags fill the same dataclass.

A field's help text is its documentation: declare fields with `option(default, "help")`. `parse_config` builds the
argparse parser from the dataclass, so a flag, a YAML key and the field always share one name (dashes on the command
line, underscores in YAML). Precedence: field default < `--config FILE.yaml` < explicit flags.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from rewardkit.errors import RewardkitError

C = TypeVar("C")


def option(default: Any = dataclasses.MISSING, help: str = "", *, choices: tuple | None = None,
           positional: bool = False, metavar: str | None = None, formerly: tuple[str, ...] = ()) -> Any:
    """A config field with its help text. Mutable defaults (lists) are copied per instance. `formerly`: names the
    option had before it was renamed (so that one option has one name across commands); a flag or YAML key under an
    old name still sets it."""
    meta = {"help": help, "choices": choices, "positional": positional, "metavar": metavar, "formerly": formerly}
    if isinstance(default, list):
        return dataclasses.field(default_factory=lambda: list(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return tp, False


def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def coerce(value: Any, tp: Any, where: str) -> Any:
    """Convert a YAML or flag value to the field's type, or fail with a one-line error naming `where`."""
    base, optional = _unwrap_optional(tp)
    if optional and isinstance(value, str) and value.lower() in ("none", "null"):
        value = None  # a flag can unset an optional field, as `null` does in YAML
    if value is None:
        if optional:
            return None
        raise RewardkitError(f"{where} must not be empty")
    origin = typing.get_origin(base)
    if origin is list:
        (item_tp,) = typing.get_args(base) or (str,)
        items = value if isinstance(value, (list, tuple)) else [value]
        return [coerce(v, item_tp, where) for v in items]
    if base is bool:
        if isinstance(value, bool):
            return value
        if str(value).lower() in ("true", "yes", "1", "on"):
            return True
        if str(value).lower() in ("false", "no", "0", "off"):
            return False
        raise RewardkitError(f"{where} must be true or false, got {value!r}")
    if base in (int, float):
        if isinstance(value, bool):
            raise RewardkitError(f"{where} must be a number, got {value!r}")
        try:
            number = float(value) if base is float else int(str(value), 0) if isinstance(value, str) else int(value)
        except (TypeError, ValueError):
            raise RewardkitError(f"{where} must be {'a number' if base is float else 'an integer'}, got {value!r}")
        if base is int and isinstance(value, float) and value != int(value):
            raise RewardkitError(f"{where} must be an integer, got {value!r}")
        return number
    if base is str:
        if isinstance(value, (dict, list)):
            raise RewardkitError(f"{where} must be a string, got {type(value).__name__}")
        return str(value)
    return value  # dicts and other structured values pass through as YAML gave them


def _check_choices(cfg: Any, sources: dict[str, str]) -> None:
    for f in dataclasses.fields(cfg):
        choices = f.metadata.get("choices")
        value = getattr(cfg, f.name)
        if choices and value is not None and value not in choices:
            where = f"{sources[f.name]}: " if f.name in sources else ""
            raise RewardkitError(f"{where}--{f.name.replace('_', '-')} must be one of "
                                 f"{', '.join(map(str, choices))}; got {value!r}")


def load_yaml_mapping(path: str | Path) -> dict:
    """Read a YAML file that must hold a mapping; errors name the file (and line for syntax errors)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RewardkitError(f"{path}: no such file")
    except (OSError, UnicodeDecodeError) as exc:
        raise RewardkitError(f"{path}: cannot read ({exc})")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise RewardkitError(f"{path}{line}: invalid YAML ({getattr(exc, 'problem', exc)})")
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise RewardkitError(f"{path}: expected a mapping of option names to values")
    return data


def config_from_mapping(cls: type[C], mapping: dict, source: str = "config",
                        sources: dict[str, str] | None = None) -> C:
    """Build `cls` from a mapping (YAML keys may use dashes or underscores); unknown keys are errors. An error names
    where its value came from: `sources[key]` (e.g. the command line, for a flag beside a YAML file), else `source`."""
    hints = _field_types(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    renamed = {old: f.name for f in dataclasses.fields(cls) for old in f.metadata.get("formerly", ())}
    values, came_from = {}, {}
    for key, value in mapping.items():
        name = str(key).replace("-", "_")
        name = renamed.get(name, name)
        where = (sources or {}).get(key, source)
        if name not in names:
            raise RewardkitError(f"{where}: unknown option {key!r} (known: {', '.join(sorted(names))})")
        if name in values:  # max_steps and max-steps (or an old name and the new) in one file: which was meant?
            raise RewardkitError(f"{where}: option {key!r} is given twice (with dashes and with underscores, or "
                                 f"under its old name)")
        values[name], came_from[name] = coerce(value, hints[name], f"{where}: {key}"), where
    missing = [f"{f.name} ({f.metadata['metavar']})" if f.metadata.get("positional") and f.metadata.get("metavar")
               else f.name for f in dataclasses.fields(cls)
               if f.name not in values and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise RewardkitError(f"{source}: missing required option(s): {', '.join(missing)}")
    cfg = cls(**values)
    _check_choices(cfg, came_from)
    return cfg


def add_config_arguments(parser: argparse.ArgumentParser, cls: type) -> None:
    """Add one flag (or positional) per field of `cls`, plus `--config FILE.yaml`."""
    hints = _field_types(cls)
    parser.add_argument("--config", metavar="FILE.yaml", default=None,
                        help="YAML file with the same options as the flags; flags given explicitly override it")
    for f in dataclasses.fields(cls):
        tp, optional = _unwrap_optional(hints[f.name])
        meta = f.metadata
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
        help_text = meta.get("help", "").replace("%", "%%")  # argparse formats help with %
        if default not in (None, [], "") and not meta.get("positional"):
            help_text += f" (default: {default}{'; none unsets it' if optional else ''})"
        kwargs: dict[str, Any] = {"help": help_text, "default": argparse.SUPPRESS}
        if meta.get("metavar"):
            kwargs["metavar"] = meta["metavar"]
        if meta.get("choices"):
            kwargs["choices"] = meta["choices"]
        # argparse never requires a positional: it may come from --config, and config_from_mapping names what is
        # missing from both
        if typing.get_origin(tp) is list:
            kwargs["nargs"] = "*" if meta.get("positional") else "+"
        elif tp is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        if meta.get("positional"):
            kwargs.setdefault("nargs", "?")
            parser.add_argument(f.name, **kwargs)
        else:
            flags = [f"--{name.replace('_', '-')}" for name in (f.name, *meta.get("formerly", ()))]
            parser.add_argument(*flags, dest=f.name, **kwargs)


def config_from_args(cls: type[C], args: argparse.Namespace) -> C:
    """Merge field defaults, the `--config` YAML file and the explicit flags into one `cls`."""
    mapping: dict = {}
    source = "command line"
    if getattr(args, "config", None):
        mapping.update(load_yaml_mapping(args.config))
        source = str(args.config)
    names = {f.name for f in dataclasses.fields(cls)}
    explicit = {k: v for k, v in vars(args).items() if k in names}
    for key in list(mapping):
        if str(key).replace("-", "_") in explicit:
            del mapping[key]
    mapping.update(explicit)
    return config_from_mapping(cls, mapping, source, sources={key: "command line" for key in explicit})


def parse_config(cls: type[C], argv: list[str] | None = None, prog: str | None = None) -> C:
    """Parse `argv` into `cls` (for tests and scripts; the CLI uses the same two functions)."""
    parser = argparse.ArgumentParser(prog=prog, description=cls.__doc__)
    add_config_arguments(parser, cls)
    return config_from_args(cls, parser.parse_args(argv))
