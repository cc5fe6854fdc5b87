"""File source: NDJSON, JSON arrays and documents, Segment batch bodies, gzip, and folders of these.

The format of each file is decided by its content, not its name:

- gzip data (magic bytes 1f 8b) is decompressed first, whatever the file is called;
- a file whose first non-space character is `[` is one JSON array, read whole;
- a file that parses whole as one JSON value is a document, read whole;
- anything else is NDJSON, streamed line by line so that memory does not grow with the file.

A document or NDJSON line of the form `{"batch": [...]}` is a Segment batch body and is expanded
into its messages.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import os
import zlib
from collections.abc import Iterable, Iterator
from itertools import chain
from pathlib import Path

import orjson

from console.sources import SourceError
from store.raw import Unparsed

FOLDER_SUFFIXES = (".ndjson", ".jsonl", ".json", ".gz")

GZIP_MAGIC = b"\x1f\x8b"
UTF8_BOM = b"\xef\xbb\xbf"

# A file that starts with `{` but whose first line is not JSON on its own may be a pretty-printed
# document, so up to this many bytes are buffered to try parsing it whole.
# NOTE: a pretty-printed document larger than this is read as NDJSON, so its lines come out as
# Unparsed items instead of one message.
MAX_DOCUMENT_PROBE_BYTES = 256 * 1024 * 1024

_READ_BUFFER_BYTES = 1024 * 1024

# Batch-level keys that Segment's /v1/batch endpoint applies to every message in the batch.
_INHERITED_OBJECTS = ("context", "integrations")

Item = tuple[str, object]
PathArgument = str | os.PathLike[str]


def iter_file_items(paths: Iterable[PathArgument] | PathArgument) -> Iterator[Item]:
    """Yield `(location, value)` for every message in the given files and folders, in order.

    Folders are searched recursively for `.ndjson`, `.jsonl`, `.json` and `.gz` files, taken in
    sorted order. Every path is checked before the first item is yielded, so a missing file raises
    `SourceError` here, at the call. A file that cannot be read or decompressed raises
    `SourceError` when iteration reaches it. Text that is not valid JSON is yielded as `Unparsed`.
    """
    files = _resolve_files(paths)
    return _iter_files(files)


def count_hint(paths: Iterable[PathArgument] | PathArgument) -> int:
    """Return the total size in bytes on disk of the files that `iter_file_items` would read.

    For gzip files this is the compressed size. Raises `SourceError` like `iter_file_items`.
    """
    total = 0
    for path in _resolve_files(paths):
        try:
            total += path.stat().st_size
        except OSError as error:
            raise SourceError(f"{path}: cannot read: {_describe_os_error(error)}") from error
    return total


def _resolve_files(paths: Iterable[PathArgument] | PathArgument) -> list[Path]:
    # A single path would otherwise be iterated character by character.
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]

    files: list[Path] = []
    for argument in paths:
        path = Path(argument)
        try:
            is_folder = path.is_dir()
            exists = is_folder or path.exists()
        except OSError as error:
            raise SourceError(f"{path}: cannot read: {_describe_os_error(error)}") from error
        if not exists:
            raise SourceError(f"{path}: no such file or folder")
        if is_folder:
            files.extend(_find_folder_files(path))
        else:
            files.append(path)
    return files


def _find_folder_files(folder: Path) -> list[Path]:
    try:
        found = sorted(
            candidate
            for candidate in folder.rglob("*")
            if candidate.name.lower().endswith(FOLDER_SUFFIXES) and not candidate.is_dir()
        )
    except OSError as error:
        raise SourceError(f"{folder}: cannot list folder: {_describe_os_error(error)}") from error
    if not found:
        suffixes = ", ".join(FOLDER_SUFFIXES)
        raise SourceError(f"{folder}: folder contains no files ending in {suffixes}")
    return found


def _iter_files(files: list[Path]) -> Iterator[Item]:
    for path in files:
        yield from _iter_file(path)


def _iter_file(path: Path) -> Iterator[Item]:
    name = str(path)
    lines = _read_lines(path)

    for lineno, line in lines:
        if not line.isspace():
            break
    else:
        return

    if line.lstrip()[:1] == b"[":
        yield from _iter_array_file(name, [(lineno, line), *lines])
        return

    value = _parse(line)
    if not isinstance(value, Unparsed):
        # One value followed only by blank lines is a document, otherwise this is NDJSON.
        for next_lineno, next_line in lines:
            if not next_line.isspace():
                break
        else:
            yield from _expand(name, value)
            return
        yield from _expand(f"{name}:{lineno}", value)
        yield from _iter_ndjson(name, chain([(next_lineno, next_line)], lines))
        return

    if line.lstrip()[:1] == b"{":
        buffered = [(lineno, line)]
        buffered_bytes = len(line)
        for later in lines:
            buffered.append(later)
            buffered_bytes += len(later[1])
            if buffered_bytes > MAX_DOCUMENT_PROBE_BYTES:
                break
        else:
            document = _parse(b"".join(text for _, text in buffered))
            if not isinstance(document, Unparsed):
                yield from _expand(name, document)
                return
        yield from _iter_ndjson(name, chain(buffered, lines))
        return

    yield f"{name}:{lineno}", value
    yield from _iter_ndjson(name, lines)


def _iter_array_file(name: str, lines: list[tuple[int, bytes]]) -> Iterator[Item]:
    document = _parse(b"".join(text for _, text in lines))
    if isinstance(document, list):
        for index, element in enumerate(document):
            yield from _expand(f"{name}:[{index}]", element)
        return
    # Not a valid array: NDJSON line by line keeps every line, valid or not, with its line number.
    yield from _iter_ndjson(name, iter(lines))


def _iter_ndjson(name: str, lines: Iterator[tuple[int, bytes]]) -> Iterator[Item]:
    for lineno, line in lines:
        if line.isspace():
            continue
        value = _parse(line)
        if type(value) is dict and isinstance(value.get("batch"), list):
            yield from _expand(f"{name}:{lineno}", value)
        else:
            yield f"{name}:{lineno}", value


def _expand(location: str, value: object) -> Iterator[Item]:
    """Yield the messages of a batch body, or the value itself when it is not one."""
    if not isinstance(value, dict) or not isinstance(value.get("batch"), list):
        yield location, value
        return
    for index, message in enumerate(value["batch"]):
        yield f"{location}:batch[{index}]", _inherit_from_batch(value, message)


def _inherit_from_batch(batch: dict, message: object) -> object:
    """Apply a batch body's `context`, `integrations` and `sentAt` to one of its messages.

    Objects are merged one level deep with the message's own keys winning. A message whose
    `context` or `integrations` is absent or null takes the batch's. `sentAt` is set only where the
    message's is absent, null or empty. Messages that are not objects are returned unchanged for
    the ingest to quarantine.
    """
    if not isinstance(message, dict):
        return message

    merged = dict(message)
    for key in _INHERITED_OBJECTS:
        batch_object = batch.get(key)
        if not isinstance(batch_object, dict):
            continue
        own_object = merged.get(key)
        if own_object is None:
            merged[key] = dict(batch_object)
        elif isinstance(own_object, dict):
            merged[key] = {**batch_object, **own_object}

    batch_sent_at = batch.get("sentAt")
    if batch_sent_at not in (None, "") and merged.get("sentAt") in (None, ""):
        merged["sentAt"] = batch_sent_at
    return merged


def _parse(raw: bytes) -> object:
    """Parse JSON bytes, or return `Unparsed` with the text and orjson's error message."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        pass

    # The second attempt runs without the line break, so that orjson reports an unterminated
    # string as such and not as a control character. Invalid UTF-8 bytes become U+FFFD, because
    # one bad byte inside a string need not spoil the whole message.
    text = raw.rstrip(b"\r\n").decode("utf-8", errors="replace")
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as error:
        return Unparsed(text, str(error))


def _read_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """Yield `(line number, line)` from a file, decompressing gzip. I/O errors raise `SourceError`.

    Line numbers start at 1 and count every line, blank or not. A UTF-8 byte order mark at the
    start of the file is removed.
    """
    with _open(path) as stream:
        lineno = 0
        while True:
            try:
                line = stream.readline()
            except (OSError, EOFError, zlib.error) as error:
                problem = _describe_read_error(error)
                raise SourceError(f"{path}: {problem} after line {lineno}") from error
            if not line:
                return
            lineno += 1
            if lineno == 1 and line.startswith(UTF8_BOM):
                line = line[len(UTF8_BOM) :]
                if not line:
                    return
            yield lineno, line


@contextlib.contextmanager
def _open(path: Path) -> Iterator[io.BufferedIOBase]:
    try:
        raw = open(path, "rb", buffering=_READ_BUFFER_BYTES)
    except OSError as error:
        raise SourceError(f"{path}: cannot read: {_describe_os_error(error)}") from error

    with raw:
        try:
            magic = raw.peek(len(GZIP_MAGIC))[: len(GZIP_MAGIC)]
        except OSError as error:
            raise SourceError(f"{path}: cannot read: {_describe_os_error(error)}") from error

        if magic == GZIP_MAGIC:
            with gzip.GzipFile(fileobj=raw, mode="rb") as decompressed:
                yield decompressed
            return
        if path.name.lower().endswith(".gz"):
            raise SourceError(
                f"{path}: not gzip data although the name ends in .gz: "
                "rename the file if it is plain JSON, or replace it if the download was cut"
            )
        yield raw


def _describe_read_error(error: BaseException) -> str:
    if isinstance(error, EOFError):
        return "gzip data is truncated"
    if isinstance(error, (gzip.BadGzipFile, zlib.error)):
        return f"gzip data is corrupt ({error})"
    if isinstance(error, OSError):
        return f"read failed: {_describe_os_error(error)}"
    return str(error)


def _describe_os_error(error: OSError) -> str:
    return error.strerror or str(error)
