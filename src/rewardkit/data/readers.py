"""Rows out of feedback files, each with the Location (file, 1-based line) where it starts.

Formats: JSONL (`.jsonl`, `.ndjson`), JSON (`.json`: an array of objects, an object holding such a list, or JSON lines
under a .json name), CSV (`.csv`) and TSV (`.tsv`), each optionally gzipped (`.gz`; line numbers count lines of the
decompressed text), and Hugging Face datasets: a `datasets.Dataset`/`DatasetDict` object, a folder written by
`save_to_disk`, or `hf:NAME[:SPLIT]` (calls `datasets.load_dataset`). For datasets the "line" is the 1-based row number.
A `rewardkit label` database (`.sqlite`) gives its judgments as majority-vote rows; there the "line" is the item id.

Problems with a single row (invalid JSON on a line, undecodable bytes, a CSV row with the wrong number of fields) go
to the `bad_record(location, reason)` callback, so the caller decides whether to fail or skip; problems that make the
rest of a file unreadable (a missing file, an empty file, a broken JSON array) raise RewardkitError.
"""

from __future__ import annotations

import csv
import gzip
import importlib
import json
import os
import re
import sys
import zlib
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rewardkit.data.types import Location
from rewardkit.errors import RewardkitError

BadRecordCallback = Callable[[Location, str], None]
Row = dict[str, Any]

FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv", ".tsv": "tsv",
           ".sqlite": "sqlite"}
SUPPORTED = ("JSONL, JSON, CSV or TSV (optionally .gz), a Hugging Face dataset folder, hf:NAME[:SPLIT], or a "
             "`rewardkit label` database (.sqlite)")
# Databases whose rows another package knows how to read, by "module:function" (called with the path, it returns
# (key, row) pairs; the key stands for the line). Named, not imported: data stays the bottom layer.
# A `rewardkit label` database gives its judgments as majority votes, keyed by item id.
DATABASE_READERS = {"sqlite": "rewardkit.label.export:database_rows"}
_SPLIT_NAMES = {"train", "test", "validation", "valid", "val", "dev", "eval"}
_GENERIC_STEMS = _SPLIT_NAMES | {"dataset", "data"}
_CONTAINER_KEYS = {"data", "records", "examples", "rows", "items", "instances", "pairs", "rankings", "ratings"}
_WHITESPACE = re.compile(r"[ \t\n\r]*")
_UNDECODABLE = re.compile("[\udc80-\udcff]")  # what surrogateescape makes of bytes that are not UTF-8
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")  # a JSON "\\udXXX" escape without its pair: not valid text


@dataclass(frozen=True)
class Source:
    """One thing rows are read from: a file, or one split of a Hugging Face dataset."""

    label: str  # the file name shown in locations
    fmt: str  # "jsonl" | "json" | "csv" | "tsv" | "hf"
    path: Path | None = None
    dataset: Any = None  # a datasets.Dataset when fmt == "hf"
    subset: str | None = None  # subset name for records without a `subset` field

    @property
    def is_tabular(self) -> bool:
        """CSV/TSV cells are all text: list-valued fields arrive as JSON text and empty cells mean "absent"."""
        return self.fmt in ("csv", "tsv")


# ---------------------------------------------------------------------------------------------------------------------
# Finding sources
# ---------------------------------------------------------------------------------------------------------------------
def expand_sources(paths: Any) -> list[Source]:
    """Files, folders (searched recursively, in sorted order), dataset objects and hf: specs, as a list of Sources."""
    items = paths if isinstance(paths, (list, tuple)) else [paths]
    if not items:
        raise RewardkitError("no data given")
    sources: list[Source] = []
    for item in items:
        if _is_hf_dataset(item):
            sources += _dataset_sources(item, label="<dataset>", subset=None)
        elif isinstance(item, (str, os.PathLike)):
            text = os.fspath(item)
            if text.startswith("hf:"):
                sources += _hub_sources(text)
            else:
                sources += _path_sources(Path(text), text)
        else:
            raise RewardkitError(f"cannot read data from a {type(item).__name__}; give a path, a folder, a "
                                 f"datasets.Dataset or hf:NAME")
    return sources


def _path_sources(path: Path, label: str) -> list[Source]:
    if path.is_dir():
        if _is_saved_dataset(path):
            return _saved_dataset_sources(path, label)
        found = _folder_sources(path, label)
        if not found:
            raise RewardkitError(f"no feedback files in folder {label} (looked for {SUPPORTED})")
        return found
    if not path.exists():
        raise RewardkitError(f"file not found: {label}")
    fmt = file_format(path)
    if fmt is None:
        raise RewardkitError(f"unknown data format: {label} (expected {SUPPORTED})")
    return [Source(label, fmt, path=path, subset=subset_from_path(path))]


def _folder_sources(folder: Path, label: str) -> list[Source]:
    sources = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        root_path = Path(root)
        root_label = os.path.join(label, os.path.relpath(root, folder)) if root_path != folder else label
        if root_path != folder and _is_saved_dataset(root_path):
            sources += _saved_dataset_sources(root_path, os.path.normpath(root_label))
            dirs[:] = []
            continue
        for name in sorted(files):
            path = root_path / name
            if not name.startswith(".") and file_format(path) is not None:
                sources.append(Source(os.path.join(root_label, name), file_format(path), path=path,
                                      subset=subset_from_path(path)))
    return sources


def file_format(path: Path) -> str | None:
    """"jsonl", "json", "csv" or "tsv" from the file name (a trailing .gz allowed), else None."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    return FORMATS.get(suffixes[-1]) if suffixes else None


def subset_from_path(path: Path) -> str:
    """The subset a file's records belong to when they carry no `subset` field.

    The file name without its format suffixes and a trailing split name (helpful-base.test.jsonl.gz -> helpful-base);
    for generic names (dataset.json, train.jsonl) the folder's name (LLMBar's Natural/dataset.json -> Natural).
    """
    name = path.name
    lowered = name.lower()
    if lowered.endswith(".gz"):
        name, lowered = name[:-3], lowered[:-3]
    for suffix in FORMATS:
        if lowered.endswith(suffix):
            name = name[: -len(suffix)]
            break
    stem, _, last = name.rpartition(".")
    if stem and last.lower() in _SPLIT_NAMES:
        name = stem
    if name.lower() in _GENERIC_STEMS:
        return path.parent.name or path.resolve().parent.name
    return name


# -- Hugging Face datasets --------------------------------------------------------------------------------------------
def _is_hf_dataset(obj: Any) -> bool:
    datasets = sys.modules.get("datasets")  # only an object of an already-imported `datasets` can be one
    return datasets is not None and isinstance(obj, (datasets.Dataset, datasets.DatasetDict))


def _is_saved_dataset(folder: Path) -> bool:
    return (folder / "dataset_dict.json").is_file() or (
        (folder / "state.json").is_file() and (folder / "dataset_info.json").is_file())


def _dataset_sources(data: Any, label: str, subset: str | None) -> list[Source]:
    import datasets

    if isinstance(data, datasets.DatasetDict):
        return [Source(f"{label}[{split}]", "hf", dataset=part, subset=subset) for split, part in data.items()]
    if isinstance(data, datasets.Dataset):
        return [Source(label, "hf", dataset=data, subset=subset)]
    raise RewardkitError(f"{label}: expected a datasets.Dataset or DatasetDict, got {type(data).__name__}")


def _saved_dataset_sources(folder: Path, label: str) -> list[Source]:
    import datasets

    try:
        data = datasets.load_from_disk(str(folder))
    except Exception as error:  # datasets raises many types for broken folders; all are the user's data problem
        raise RewardkitError(f"cannot load the Hugging Face dataset folder {label}: {error}") from error
    return _dataset_sources(data, label, subset=folder.name)


def _hub_sources(spec: str) -> list[Source]:
    """hf:NAME or hf:NAME:SPLIT, through datasets.load_dataset (which may use the network or its cache)."""
    name, _, split = spec[len("hf:"):].partition(":")
    if not name:
        raise RewardkitError(f"{spec}: expected hf:NAME or hf:NAME:SPLIT")
    import datasets

    try:
        data = datasets.load_dataset(name, split=split or None)
    except Exception as error:  # network, missing dataset or split: report it as the user's one-line error
        raise RewardkitError(f"cannot load {spec}: {error}") from error
    return _dataset_sources(data, f"hf:{name}" + (f":{split}" if split else ""), subset=name.rsplit("/", 1)[-1])


# ---------------------------------------------------------------------------------------------------------------------
# Reading rows
# ---------------------------------------------------------------------------------------------------------------------
def iter_rows(source: Source, bad_record: BadRecordCallback) -> Iterator[tuple[Location, Row]]:
    """The source's rows as dicts with their locations; row-level problems go to `bad_record`."""
    if source.fmt == "hf":
        for number, row in enumerate(source.dataset, 1):
            yield Location(source.label, number), row
        return
    if source.fmt in DATABASE_READERS:
        module, _, function = DATABASE_READERS[source.fmt].partition(":")
        for key, row in getattr(importlib.import_module(module), function)(source.path):
            yield Location(source.label, key), row
        return
    text, undecodable = _read_text(source)
    if source.fmt == "jsonl":
        yield from _jsonl_rows(text, source.label, undecodable, bad_record)
    elif source.fmt == "json":
        yield from _json_rows(text, source.label, undecodable, bad_record)
    else:
        yield from _csv_rows(text, source.label, undecodable, bad_record, "\t" if source.fmt == "tsv" else ",")


def _read_text(source: Source) -> tuple[str, dict[int, str]]:
    """The file's text (gunzipped, BOM removed) and, per line holding bytes that are not UTF-8, a description."""
    label = source.label
    try:
        data = source.path.read_bytes()
    except FileNotFoundError:
        raise RewardkitError(f"file not found: {label}") from None
    except OSError as error:
        raise RewardkitError(f"cannot read {label}: {error.strerror or error}") from None
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as error:
            raise RewardkitError(f"{label}: cannot decompress gzip data ({error})") from None
    elif source.path.suffix.lower() == ".gz":
        raise RewardkitError(f"{label}: named .gz but is not gzip data")
    try:
        text, undecodable = data.decode("utf-8"), {}
    except UnicodeDecodeError:
        text = data.decode("utf-8", "surrogateescape")
        undecodable = _undecodable_lines(text)
    if text.startswith("\ufeff"):
        text = text[1:]
    if not text or text.isspace():
        raise RewardkitError(f"{label}: empty file (no records)")
    return text, undecodable


def _undecodable_lines(text: str) -> dict[int, str]:
    found: dict[int, str] = {}
    line, counted_to = 1, 0
    for match in _UNDECODABLE.finditer(text):
        line += text.count("\n", counted_to, match.start())
        counted_to = match.start()
        if line not in found:
            column = match.start() - text.rfind("\n", 0, match.start())
            byte = ord(match.group()) - 0xDC00
            found[line] = f"undecodable bytes (not UTF-8): byte 0x{byte:02x} at column {column}"
    return found


class _LineCounter:
    """The line of a character offset, counting only the newlines since the last offset asked (mostly increasing)."""

    def __init__(self, text: str):
        self.text, self.offset, self.line = text, 0, 1

    def at(self, offset: int) -> int:
        if offset >= self.offset:
            self.line += self.text.count("\n", self.offset, offset)
        else:
            self.line -= self.text.count("\n", offset, self.offset)
        self.offset = offset
        return self.line


def _jsonl_rows(text: str, label: str, undecodable: dict[int, str], bad_record: BadRecordCallback,
                first_line: int = 1) -> Iterator[tuple[Location, Row]]:
    for number, line in enumerate(text.split("\n"), first_line):
        if not line or line.isspace():
            continue
        location = Location(label, number)
        if number in undecodable:
            bad_record(location, undecodable[number])
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as error:
            bad_record(location, f"invalid JSON: {error.msg} (column {error.colno})")
            continue
        except (ValueError, RecursionError) as error:  # an integer past Python's digit limit; nesting past the stack
            bad_record(location, f"invalid JSON: {error}")
            continue
        problem = _object_problem(value, line)
        if problem:
            bad_record(location, problem)
            continue
        yield location, value


def _json_rows(text: str, label: str, undecodable: dict[int, str],
               bad_record: BadRecordCallback) -> Iterator[tuple[Location, Row]]:
    """A JSON array of objects, an object holding one such list, a single object, or JSON lines named .json."""
    decoder = json.JSONDecoder()
    start = _WHITESPACE.match(text).end()
    lines = _LineCounter(text)
    if text[start] == "[":
        end = yield from _json_array(text, start, label, undecodable, bad_record, decoder, lines)
        rest = _WHITESPACE.match(text, end).end()
        if rest < len(text):  # never read past the array silently: what follows would be lost
            raise _json_error(label, lines.at(rest), undecodable, "invalid JSON: more data after the array")
        return
    if text[start] != "{":
        raise _json_error(label, lines.at(start), undecodable, f"expected a JSON array or object, got {text[start]!r}")
    value, end = _decode(decoder, text, start, label, lines, undecodable)
    rest = _WHITESPACE.match(text, end).end()
    if rest < len(text):  # more values follow: JSON lines under a .json name
        yield from _jsonl_rows(text[start:], label, undecodable, bad_record, first_line=lines.at(start))
        return
    key = _records_key(value, label)
    if key is None:  # one object is one record
        yield from _checked_element(value, text, start, end, lines.at(start), label, undecodable, bad_record)
        return
    yield from _json_array(text, _array_start(text, start, key, decoder), label, undecodable, bad_record, decoder,
                           lines)


def _json_array(text, start, label, undecodable, bad_record, decoder, lines) -> Generator[tuple[Location, Row], None,
                                                                                        int]:
    """The rows of the array opening at text[start]; returns the offset just past its closing bracket."""
    position = _WHITESPACE.match(text, start + 1).end()
    if position == len(text):
        raise _json_error(label, lines.at(len(text.rstrip())), undecodable,
                          "invalid JSON: the file ends before the array is closed")
    if text[position] == "]":
        raise RewardkitError(f"{label}: empty JSON array (no records)")
    while True:
        element_line = lines.at(position)
        value, end = _decode(decoder, text, position, label, lines, undecodable)
        yield from _checked_element(value, text, position, end, element_line, label, undecodable, bad_record)
        position = _WHITESPACE.match(text, end).end()
        if position < len(text) and text[position] == ",":
            position = _WHITESPACE.match(text, position + 1).end()
        elif position < len(text) and text[position] == "]":
            return position + 1
        elif position == len(text):
            raise _json_error(label, lines.at(len(text.rstrip())), undecodable,
                              "invalid JSON: the file ends before the array is closed")
        else:
            raise _json_error(label, lines.at(position), undecodable,
                              "invalid JSON: expected ',' or ']' after an array element")


def _checked_element(value, text, start, end, line, label, undecodable, bad_record) -> Iterator[tuple[Location, Row]]:
    """The parsed JSON value text[start:end] (starting on `line`) as a row, unless it cannot be one."""
    # Bytes that are not UTF-8 inside the value (they can only sit inside its strings to get this far).
    last_line = line + text.count("\n", start, end)
    bad_line = next((n for n in range(line, last_line + 1) if n in undecodable), None) if undecodable else None
    if bad_line is not None:
        bad_record(Location(label, bad_line), undecodable[bad_line])
    elif problem := _object_problem(value, text[start:end]):
        bad_record(Location(label, line), problem)
    else:
        yield Location(label, line), value


def _object_problem(value: Any, source_text: str) -> str | None:
    """Why a parsed JSON value cannot be a record: not an object, or text that is not valid Unicode."""
    if not isinstance(value, dict):
        return f"expected a JSON object, got {json_type(value)}"
    if "\\ud" in source_text or "\\uD" in source_text:  # only surrogate escapes can leave lone surrogates
        for key, item in value.items():
            if _holds_lone_surrogate(item):
                return f"field '{key}' holds a lone surrogate escape (not valid Unicode text)"
    return None


def _holds_lone_surrogate(value: Any) -> bool:
    if isinstance(value, str):
        return not value.isascii() and _LONE_SURROGATE.search(value) is not None
    if isinstance(value, dict):
        return any(_holds_lone_surrogate(k) or _holds_lone_surrogate(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_holds_lone_surrogate(item) for item in value)
    return False


def _decode(decoder, text, position, label, lines, undecodable):
    try:
        return decoder.raw_decode(text, position)
    except json.JSONDecodeError as error:
        raise _json_error(label, lines.at(error.pos), undecodable, f"invalid JSON: {error.msg}") from None
    except (ValueError, RecursionError) as error:  # an integer past Python's digit limit; nesting past the stack
        raise _json_error(label, lines.at(position), undecodable, f"invalid JSON: {error}") from None


def _json_error(label: str, line: int, undecodable: dict[int, str], reason: str) -> RewardkitError:
    if line in undecodable:
        reason = undecodable[line]
    return RewardkitError(f"{reason} (the rest of the file cannot be read)", Location(label, line))


def _records_key(document: dict, label: str) -> str | None:
    """The key holding the records when the object is a container, or None when the object is itself one record.

    A container has a single key whose value is a list of objects, or such a list under a usual name ("data",
    "records", ...). Records themselves may hold lists of objects (conversations, OASST replies), hence the names.
    """
    lists = [k for k, v in document.items() if isinstance(v, list) and all(isinstance(x, dict) for x in v)]
    if len(document) == 1 and lists:
        return lists[0]
    named = [k for k in lists if k.lower() in _CONTAINER_KEYS]
    if len(named) > 1:
        raise RewardkitError(f"{label}: the JSON object holds several lists of records ({', '.join(named)}); "
                             f"keep the records under one key")
    return named[0] if named else None


def _array_start(text: str, start: int, key: str, decoder: json.JSONDecoder) -> int:
    """Offset of the '[' opening `key`'s value in the (already validated) top-level object at `start`."""
    position = start + 1
    while True:
        position = _WHITESPACE.match(text, position).end()
        name, position = decoder.raw_decode(text, position)
        position = _WHITESPACE.match(text, position).end() + 1  # past ':'
        position = _WHITESPACE.match(text, position).end()
        if name == key and text[position] == "[":
            return position
        _, position = decoder.raw_decode(text, position)
        position = _WHITESPACE.match(text, position).end() + 1  # past ','


def _csv_rows(text: str, label: str, undecodable: dict[int, str], bad_record: BadRecordCallback,
              delimiter: str) -> Iterator[tuple[Location, Row]]:
    """Rows of a CSV/TSV file with a header; a row's location is the physical line it starts on."""
    csv.field_size_limit(max(csv.field_size_limit(), 2**31 - 1))  # long responses exceed the 128 KiB default
    reader = csv.reader(_physical_lines(text), delimiter=delimiter, strict=True)
    header: list[str] | None = None
    while True:
        start = reader.line_num + 1
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as error:
            reason = ("unclosed quote: the quoted field starting on this row runs to the end of the file"
                      if "end of data" in str(error) else f"malformed CSV row: {error}")
            if header is None:
                raise RewardkitError(reason, Location(label, start)) from None
            bad_record(Location(label, start), reason)
            continue
        if all(not cell or cell.isspace() for cell in cells):
            continue
        bad_line = next((n for n in range(start, reader.line_num + 1) if n in undecodable), None)
        if header is None:
            if bad_line is not None:
                raise RewardkitError(f"header: {undecodable[bad_line]}", Location(label, bad_line))
            header = [cell.strip() for cell in cells]
            duplicated = sorted({c for c in header if header.count(c) > 1})
            if duplicated:
                raise RewardkitError(f"the header repeats column(s) {', '.join(duplicated)}", Location(label, start))
            continue
        if bad_line is not None:
            bad_record(Location(label, bad_line), undecodable[bad_line])
        elif len(cells) != len(header):
            bad_record(Location(label, start), f"row has {len(cells)} fields, the header has {len(header)}")
        else:
            yield Location(label, start), dict(zip(header, cells))
    if header is None:
        raise RewardkitError(f"{label}: empty file (no records)")


def _physical_lines(text: str) -> Iterable[str]:
    """The text's lines split on "\\n" only, ends kept (so csv counts lines like an editor does)."""
    parts = text.split("\n")
    for part in parts[:-1]:
        yield part + "\n"
    if parts[-1]:
        yield parts[-1]


def json_type(value: Any) -> str:
    """A value's type in JSON's words, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__
