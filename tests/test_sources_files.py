"""Tests of the file source: formats, batch expansion, invalid input, errors and the real corpus."""

from __future__ import annotations

import gzip
import os
import shutil
import threading
from pathlib import Path

import orjson
import pytest

from console.sources import SourceError, files
from console.sources.files import count_hint, iter_file_items
from store.raw import Unparsed

FIXTURES = Path(__file__).parents[1] / "fixtures" / "files"
REALDATA = Path(__file__).parents[2] / "shared" / "realdata"


def read_items(*paths: str | Path) -> list[tuple[str, object]]:
    return list(iter_file_items(paths))


def write_bytes(path: Path, content: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


def gzip_copy(source: Path, target: Path) -> Path:
    with source.open("rb") as plain, gzip.open(target, "wb") as compressed:
        shutil.copyfileobj(plain, compressed)
    return target


# NDJSON


def test_ndjson_fixture_locations_and_values():
    path = FIXTURES / "messages.ndjson"

    items = read_items(path)

    locations = [location for location, _ in items]
    assert locations == [
        f"{path}:1",
        f"{path}:2",
        f"{path}:4",
        f"{path}:5:batch[0]",
        f"{path}:5:batch[1]",
        f"{path}:6",
        f"{path}:7",
    ]
    values = dict(items)
    assert values[f"{path}:1"]["messageId"] == "m-1"
    assert values[f"{path}:2"]["event"] == "Project Created"
    assert values[f"{path}:6"] == ["not", "an", "object"]
    assert values[f"{path}:7"]["timestamp"] == "2024-03-01T09:12:00+05:30"


def test_ndjson_invalid_line_unparsed_then_continues():
    path = FIXTURES / "messages.ndjson"

    items = dict(read_items(path))

    unparsed = items[f"{path}:4"]
    assert isinstance(unparsed, Unparsed)
    assert unparsed.text.startswith('{"type": "track", "userId": "u-100"')
    assert unparsed.text.endswith('"2024-03-01T09:06:0')
    assert "unexpected end of data" in unparsed.error
    assert items[f"{path}:7"]["messageId"] == "m-6"


def test_ndjson_blank_lines_skipped_but_counted(tmp_path):
    path = write_bytes(tmp_path / "blank.ndjson", b'\n  \n{"a": 1}\r\n\t\n{"b": 2}\n\n')

    assert read_items(path) == [(f"{path}:3", {"a": 1}), (f"{path}:5", {"b": 2})]


def test_ndjson_without_final_newline(tmp_path):
    path = write_bytes(tmp_path / "last.jsonl", b'{"a": 1}\n{"b": 2}')

    assert read_items(path) == [(f"{path}:1", {"a": 1}), (f"{path}:2", {"b": 2})]


def test_ndjson_scalars_and_null_passed_through(tmp_path):
    path = write_bytes(tmp_path / "scalars.ndjson", b'42\n"text"\nnull\n{"a": 1}\n')

    assert [value for _, value in read_items(path)] == [42, "text", None, {"a": 1}]


def test_ndjson_first_line_invalid(tmp_path):
    path = write_bytes(tmp_path / "bad_first.ndjson", b'{"a": \n{"b": 2}\n')

    items = read_items(path)

    assert len(items) == 2
    assert items[0][0] == f"{path}:1"
    assert isinstance(items[0][1], Unparsed)
    assert items[0][1].text == '{"a": '
    assert items[1] == (f"{path}:2", {"b": 2})


def test_ndjson_first_line_not_json_at_all(tmp_path):
    path = write_bytes(tmp_path / "garbage.ndjson", b'hello world\n{"b": 2}\n')

    items = read_items(path)

    assert items[0] == (f"{path}:1", Unparsed("hello world", items[0][1].error))
    assert items[0][1].error
    assert items[1] == (f"{path}:2", {"b": 2})


def test_invalid_utf8_inside_string_is_replaced(tmp_path):
    path = write_bytes(tmp_path / "latin1.ndjson", b'{"name": "Jos\xe9"}\n{"ok": true}\n')

    items = read_items(path)

    assert items[0] == (f"{path}:1", {"name": "Jos\ufffd"})
    assert items[1] == (f"{path}:2", {"ok": True})


def test_invalid_utf8_outside_json_is_unparsed(tmp_path):
    path = write_bytes(tmp_path / "binary.ndjson", b'{"a": 1}\n\xff\xfe garbage\n')

    items = read_items(path)

    assert items[1][0] == f"{path}:2"
    assert isinstance(items[1][1], Unparsed)
    assert items[1][1].text == "\ufffd\ufffd garbage"


def test_utf8_byte_order_mark_ignored(tmp_path):
    path = write_bytes(tmp_path / "bom.ndjson", b'\xef\xbb\xbf{"a": 1}\n{"b": 2}\n')

    assert read_items(path) == [(f"{path}:1", {"a": 1}), (f"{path}:2", {"b": 2})]


def test_non_ascii_text_kept(tmp_path):
    path = write_bytes(
        tmp_path / "unicode.ndjson", '{"name": "Zoë 東京 🚀"}\n{"b": 2}\n'.encode()
    )

    assert read_items(path)[0][1] == {"name": "Zoë 東京 🚀"}


def test_empty_file_yields_nothing(tmp_path):
    empty = write_bytes(tmp_path / "empty.ndjson", b"")
    blank = write_bytes(tmp_path / "blank.ndjson", b"\n\n  \n")

    assert read_items(empty) == []
    assert read_items(blank) == []


def test_ndjson_streams_before_end_of_input(tmp_path):
    # A FIFO proves streaming: the writer sends line 3 only after the reader has yielded line 1,
    # so a reader that waited for the end of input would get the "late" line instead.
    fifo = tmp_path / "live.ndjson"
    os.mkfifo(fifo)
    first_item_read = threading.Event()

    def write_lines() -> None:
        with open(fifo, "wb") as handle:
            handle.write(b'{"n": 1}\n{"n": 2}\n')
            handle.flush()
            in_time = first_item_read.wait(timeout=10)
            handle.write(b'{"n": 3}\n' if in_time else b'{"n": "late"}\n')

    writer = threading.Thread(target=write_lines)
    writer.start()
    try:
        items = iter_file_items([fifo])
        first = next(items)
        first_item_read.set()
        rest = list(items)
    finally:
        first_item_read.set()
        writer.join(timeout=15)

    assert first == (f"{fifo}:1", {"n": 1})
    assert rest == [(f"{fifo}:2", {"n": 2}), (f"{fifo}:3", {"n": 3})]


def test_ndjson_large_file_counts_every_line(tmp_path):
    path = tmp_path / "big.ndjson"
    with path.open("wb") as handle:
        for index in range(50_000):
            handle.write(orjson.dumps({"type": "track", "n": index}) + b"\n")

    items = read_items(path)

    assert len(items) == 50_000
    assert items[-1] == (f"{path}:50000", {"type": "track", "n": 49_999})


# Whole-file JSON


def test_json_array_elements_located_by_index():
    path = FIXTURES / "array.json"

    items = read_items(path)

    assert [location for location, _ in items] == [f"{path}:[0]", f"{path}:[1]", f"{path}:[2]"]
    assert items[0][1]["messageId"] == "a-1"
    assert items[1][1]["name"] == "Dashboard"
    assert items[2][1] == 42


def test_array_detected_by_content(tmp_path):
    path = write_bytes(tmp_path / "export.ndjson", b'  \n [{"a": 1},\n {"b": 2}]\n')

    assert read_items(path) == [(f"{path}:[0]", {"a": 1}), (f"{path}:[1]", {"b": 2})]


def test_json_array_empty(tmp_path):
    path = write_bytes(tmp_path / "empty.json", b"[]")

    assert read_items(path) == []


def test_json_array_invalid_falls_back_to_lines(tmp_path):
    path = write_bytes(tmp_path / "cut.json", b'[\n{"a": 1},\n{"b": 2')

    items = read_items(path)

    assert [location for location, _ in items] == [f"{path}:1", f"{path}:2", f"{path}:3"]
    assert all(isinstance(value, Unparsed) for _, value in items)
    assert items[2][1].text == '{"b": 2'


def test_json_array_of_batches_expanded(tmp_path):
    body = [{"batch": [{"a": 1}, {"b": 2}], "sentAt": "2024-01-01T00:00:00Z"}, {"c": 3}]
    path = write_bytes(tmp_path / "batches.json", orjson.dumps(body))

    items = read_items(path)

    assert [location for location, _ in items] == [
        f"{path}:[0]:batch[0]",
        f"{path}:[0]:batch[1]",
        f"{path}:[1]",
    ]
    assert items[1][1] == {"b": 2, "sentAt": "2024-01-01T00:00:00Z"}


def test_pretty_printed_document():
    path = FIXTURES / "document.json"

    items = read_items(path)

    assert items == [
        (
            str(path),
            {
                "type": "alias",
                "previousId": "anon-5",
                "userId": "u-300",
                "messageId": "d-1",
                "timestamp": "2024-03-03T11:00:00Z",
            },
        )
    ]


def test_single_line_document(tmp_path):
    path = write_bytes(tmp_path / "one.json", b'{"type": "track"}\n\n')

    assert read_items(path) == [(str(path), {"type": "track"})]


def test_document_detected_by_content(tmp_path):
    path = write_bytes(tmp_path / "doc.ndjson", b'{\n  "type": "identify",\n  "userId": "u"\n}\n')

    assert read_items(path) == [(str(path), {"type": "identify", "userId": "u"})]


def test_broken_document_yields_every_line(tmp_path):
    path = write_bytes(tmp_path / "broken.json", b'{\n  "type": "identify",\n  "userId": \n')

    items = read_items(path)

    assert [location for location, _ in items] == [f"{path}:1", f"{path}:2", f"{path}:3"]
    assert all(isinstance(value, Unparsed) for _, value in items)


# Batch bodies


def test_batch_document_inherits_context_sent_at():
    path = FIXTURES / "batch.json"

    items = read_items(path)

    assert [location for location, _ in items] == [
        f"{path}:batch[0]",
        f"{path}:batch[1]",
        f"{path}:batch[2]",
    ]
    inherits, overrides, not_a_message = (value for _, value in items)
    assert inherits["context"] == {
        "library": {"name": "analytics-python", "version": "2.3.0"},
        "locale": "en-GB",
    }
    assert inherits["sentAt"] == "2024-03-04T12:00:00Z"
    assert overrides["context"] == {
        "library": {"name": "analytics-node", "version": "6.0.0"},
        "locale": "en-GB",
    }
    assert overrides["sentAt"] == "2024-03-04T12:00:05Z"
    assert not_a_message == "not a message"


def test_batch_envelope_keys_not_copied_to_messages():
    path = FIXTURES / "batch.json"

    for _, value in read_items(path)[:2]:
        assert "writeKey" not in value
        assert "batch" not in value


def test_batch_ndjson_line_expanded():
    path = FIXTURES / "messages.ndjson"

    items = dict(read_items(path))

    group = items[f"{path}:5:batch[0]"]
    assert group["groupId"] == "acct-7"
    assert group["sentAt"] == "2024-03-01T09:10:00Z"
    assert group["context"] == {
        "library": {"name": "analytics-go", "version": "3.0.0"},
        "ip": "198.51.100.1",
    }
    invite = items[f"{path}:5:batch[1]"]
    assert invite["sentAt"] == "2024-03-01T09:10:01Z"
    assert invite["context"]["ip"] == "203.0.113.9"
    assert invite["context"]["library"]["name"] == "analytics-go"


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ({"type": "track"}, {"type": "track", "context": {"ip": "1"}, "sentAt": "T"}),
        ({"context": None}, {"context": {"ip": "1"}, "sentAt": "T"}),
        ({"context": {"ip": "2"}}, {"context": {"ip": "2"}, "sentAt": "T"}),
        ({"context": "text"}, {"context": "text", "sentAt": "T"}),
        ({"sentAt": ""}, {"context": {"ip": "1"}, "sentAt": "T"}),
        ({"sentAt": None}, {"context": {"ip": "1"}, "sentAt": "T"}),
        ({"sentAt": "S"}, {"context": {"ip": "1"}, "sentAt": "S"}),
    ],
)
def test_batch_inheritance_cases(tmp_path, message, expected):
    body = {"batch": [message], "context": {"ip": "1"}, "sentAt": "T"}
    path = write_bytes(tmp_path / "batch.ndjson", orjson.dumps(body) + b"\n{}\n")

    items = read_items(path)

    assert items[0] == (f"{path}:1:batch[0]", expected)


def test_batch_integrations_merged(tmp_path):
    body = {
        "batch": [{"integrations": {"Braze": False}}, {}],
        "integrations": {"All": True, "Braze": True},
    }
    path = write_bytes(tmp_path / "batch.json", orjson.dumps(body))

    items = read_items(path)

    assert items[0][1]["integrations"] == {"All": True, "Braze": False}
    assert items[1][1]["integrations"] == {"All": True, "Braze": True}


def test_batch_without_context_or_sent_at_unchanged(tmp_path):
    path = write_bytes(tmp_path / "batch.json", b'{"batch": [{"type": "track"}]}')

    assert read_items(path) == [(f"{path}:batch[0]", {"type": "track"})]


def test_batch_level_context_not_object_ignored(tmp_path):
    path = write_bytes(tmp_path / "batch.json", b'{"batch": [{"a": 1}], "context": [1]}')

    assert read_items(path) == [(f"{path}:batch[0]", {"a": 1})]


def test_batch_not_a_list_passed_through(tmp_path):
    path = write_bytes(tmp_path / "odd.ndjson", b'{"batch": {"a": 1}}\n{"batch": "x"}\n')

    assert read_items(path) == [
        (f"{path}:1", {"batch": {"a": 1}}),
        (f"{path}:2", {"batch": "x"}),
    ]


def test_batch_empty_yields_nothing(tmp_path):
    path = write_bytes(tmp_path / "empty_batch.ndjson", b'{"batch": []}\n{"a": 1}\n')

    assert read_items(path) == [(f"{path}:2", {"a": 1})]


# gzip


def test_gzip_ndjson_same_items_as_plain(tmp_path):
    plain = FIXTURES / "messages.ndjson"
    compressed = gzip_copy(plain, tmp_path / "messages.ndjson.gz")

    plain_values = [value for _, value in read_items(plain)]
    compressed_items = read_items(compressed)

    assert [value for _, value in compressed_items] == plain_values
    assert compressed_items[0][0] == f"{compressed}:1"


@pytest.mark.parametrize("fixture", ["array.json", "document.json", "batch.json"])
def test_gzip_whole_file_formats(tmp_path, fixture):
    plain = FIXTURES / fixture
    compressed = gzip_copy(plain, tmp_path / f"{fixture}.gz")

    plain_values = [value for _, value in read_items(plain)]

    assert [value for _, value in read_items(compressed)] == plain_values


def test_gzip_detected_by_content(tmp_path):
    path = tmp_path / "export.ndjson"
    path.write_bytes(gzip.compress(b'{"a": 1}\n{"b": 2}\n'))

    assert read_items(path) == [(f"{path}:1", {"a": 1}), (f"{path}:2", {"b": 2})]


def test_gzip_multiple_members(tmp_path):
    path = tmp_path / "joined.gz"
    path.write_bytes(gzip.compress(b'{"a": 1}\n') + gzip.compress(b'{"b": 2}\n'))

    assert read_items(path) == [(f"{path}:1", {"a": 1}), (f"{path}:2", {"b": 2})]


def test_gzip_truncated_raises_after_items(tmp_path):
    lines = b"".join(orjson.dumps({"n": index, "pad": "x" * 50}) + b"\n" for index in range(2000))
    compressed = gzip.compress(lines)
    path = write_bytes(tmp_path / "cut.ndjson.gz", compressed[: len(compressed) // 2])

    items = iter_file_items([path])
    first = next(items)
    with pytest.raises(SourceError) as raised:
        for _ in items:
            pass

    assert first == (f"{path}:1", {"n": 0, "pad": "x" * 50})
    assert str(path) in str(raised.value)
    assert "truncated" in str(raised.value)


def test_gzip_corrupt_data_raises(tmp_path):
    compressed = bytearray(gzip.compress(b'{"a": 1}\n' * 1000))
    compressed[20:40] = b"\x00" * 20
    path = write_bytes(tmp_path / "corrupt.gz", bytes(compressed))

    with pytest.raises(SourceError) as raised:
        read_items(path)

    assert str(path) in str(raised.value)
    assert "gzip" in str(raised.value)


def test_gzip_bad_checksum_raises(tmp_path):
    compressed = bytearray(gzip.compress(b'{"a": 1}\n'))
    compressed[-8] ^= 0xFF
    path = write_bytes(tmp_path / "crc.gz", bytes(compressed))

    with pytest.raises(SourceError) as raised:
        read_items(path)

    assert "gzip data is corrupt" in str(raised.value)


def test_gz_name_without_gzip_data_raises(tmp_path):
    path = write_bytes(tmp_path / "plain.ndjson.gz", b'{"a": 1}\n')

    with pytest.raises(SourceError) as raised:
        read_items(path)

    assert str(path) in str(raised.value)
    assert "not gzip data" in str(raised.value)


# Folders


def test_folder_recursive_sorted_matching_files(tmp_path):
    write_bytes(tmp_path / "b.ndjson", b'{"n": "b"}\n')
    write_bytes(tmp_path / "a.jsonl", b'{"n": "a"}\n{"n": "a2"}\n')
    write_bytes(tmp_path / "sub" / "c.json", b'[{"n": "c"}]')
    (tmp_path / "sub" / "d.ndjson.gz").write_bytes(gzip.compress(b'{"n": "d"}\n{"n": "d2"}\n'))
    write_bytes(tmp_path / "notes.txt", b'{"n": "ignored"}\n')
    write_bytes(tmp_path / "data.tsv", b"ignored\n")

    items = read_items(tmp_path)

    assert [value["n"] for _, value in items] == ["a", "a2", "b", "c", "d", "d2"]
    assert items[0][0] == f"{tmp_path / 'a.jsonl'}:1"
    assert items[3][0] == f"{tmp_path / 'sub' / 'c.json'}:[0]"


def test_folder_suffix_match_ignores_case(tmp_path):
    write_bytes(tmp_path / "EXPORT.JSON", b'{"a": 1}')

    assert read_items(tmp_path) == [(str(tmp_path / "EXPORT.JSON"), {"a": 1})]


def test_fixture_folder_reads_every_fixture():
    items = read_items(FIXTURES)

    files = {location.split(":")[0] for location, _ in items}
    assert files == {str(path) for path in FIXTURES.iterdir()}
    assert len(items) == 3 + 3 + 1 + 7


def test_folder_without_matching_files_raises(tmp_path):
    write_bytes(tmp_path / "readme.md", b"# nothing here\n")
    (tmp_path / "empty_sub").mkdir()

    with pytest.raises(SourceError) as raised:
        iter_file_items([tmp_path])

    assert str(tmp_path) in str(raised.value)
    assert "no files ending in .ndjson, .jsonl, .json, .gz" in str(raised.value)


def test_several_paths_read_in_given_order(tmp_path):
    second = write_bytes(tmp_path / "a.ndjson", b'{"n": 2}\n')
    first = write_bytes(tmp_path / "z.ndjson", b'{"n": 1}\n')

    assert [value["n"] for _, value in read_items(first, second)] == [1, 2]


def test_single_path_string_accepted(tmp_path):
    path = write_bytes(tmp_path / "one.ndjson", b'{"a": 1}\n{"b": 2}\n')

    assert len(list(iter_file_items(str(path)))) == 2
    assert len(list(iter_file_items(path))) == 2


# Errors


def test_missing_path_raises_at_call(tmp_path):
    present = write_bytes(tmp_path / "present.ndjson", b'{"a": 1}\n')
    missing = tmp_path / "missing.ndjson"

    with pytest.raises(SourceError) as raised:
        iter_file_items([present, missing])

    assert str(missing) in str(raised.value)
    assert "no such file or folder" in str(raised.value)


def test_folder_skips_subfolder_named_like_file(tmp_path):
    (tmp_path / "looks_like.json").mkdir()
    write_bytes(tmp_path / "real.ndjson", b'{"a": 1}\n{"b": 2}\n')

    assert read_items(tmp_path) == [
        (f"{tmp_path / 'real.ndjson'}:1", {"a": 1}),
        (f"{tmp_path / 'real.ndjson'}:2", {"b": 2}),
    ]


def test_unreadable_file_raises(tmp_path, monkeypatch):
    path = write_bytes(tmp_path / "secret.ndjson", b'{"a": 1}\n')

    def open_denied(file, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(file))

    # Patched in the module because chmod does not stop root, who may run the tests.
    monkeypatch.setattr(files, "open", open_denied, raising=False)

    with pytest.raises(SourceError) as raised:
        read_items(path)

    assert str(path) in str(raised.value)
    assert "Permission denied" in str(raised.value)


def test_source_error_not_retryable():
    assert SourceError.retryable is False


# count_hint


def test_count_hint_sums_file_sizes(tmp_path):
    first = write_bytes(tmp_path / "a.ndjson", b'{"a": 1}\n')
    write_bytes(tmp_path / "sub" / "b.json", b"[1, 2, 3]")
    write_bytes(tmp_path / "sub" / "ignored.txt", b"0123456789")

    assert count_hint([first]) == 9
    assert count_hint([tmp_path]) == 9 + 9
    assert count_hint(first) == 9


def test_count_hint_missing_path_raises(tmp_path):
    with pytest.raises(SourceError):
        count_hint([tmp_path / "missing.ndjson"])


# The real corpus


def count_expected_realdata_items(path: Path) -> int:
    """Count the messages in an NDJSON file the plain way: one per line, batches expanded."""
    expected = 0
    for line in path.read_bytes().splitlines():
        if not line.strip():
            continue
        value = orjson.loads(line)
        if isinstance(value, dict) and isinstance(value.get("batch"), list):
            expected += len(value["batch"])
        else:
            expected += 1
    return expected


REALDATA_COUNTS = {
    "analytics-go/analytics_go_batch_envelopes.ndjson": 14,
    "analytics-go/analytics_go_fixtures.ndjson": 13,
    "jitsu/jitsu_test_events.ndjson": 5,
    "rudder-transformer/rudder_transformer_dest_inputs.ndjson": 2207,
    "segment-docs/segment_docs_examples.ndjson": 109,
    "typewriter/typewriter_e2e_snapshots.ndjson": 16,
}


@pytest.mark.skipif(not REALDATA.is_dir(), reason="real payload corpus not present")
@pytest.mark.parametrize("relative", sorted(REALDATA_COUNTS))
def test_realdata_file_yields_expected_count(relative):
    path = REALDATA / relative

    items = read_items(path)

    assert len(items) == REALDATA_COUNTS[relative]
    assert len(items) == count_expected_realdata_items(path)
    assert not [location for location, value in items if isinstance(value, Unparsed)]
    assert all(location.startswith(f"{path}:") for location, _ in items)


@pytest.mark.skipif(not REALDATA.is_dir(), reason="real payload corpus not present")
def test_realdata_folder_covers_every_ndjson_file():
    ndjson_files = sorted(
        path.relative_to(REALDATA).as_posix() for path in REALDATA.rglob("*.ndjson")
    )

    items = read_items(REALDATA)

    assert ndjson_files == sorted(REALDATA_COUNTS)
    assert len(items) == sum(REALDATA_COUNTS.values())
    assert all(isinstance(value, dict) for _, value in items)


@pytest.mark.skipif(not REALDATA.is_dir(), reason="real payload corpus not present")
def test_realdata_batches_inherit_envelope_fields():
    path = REALDATA / "analytics-go" / "analytics_go_batch_envelopes.ndjson"
    envelopes = [orjson.loads(line) for line in path.read_bytes().splitlines()]

    items = dict(read_items(path))

    for line_number, envelope in enumerate(envelopes, start=1):
        for index, original in enumerate(envelope["batch"]):
            message = items[f"{path}:{line_number}:batch[{index}]"]
            for key, value in original.items():
                if key != "context":
                    assert message[key] == value
            own_context = original.get("context", {})
            for key, value in envelope["context"].items():
                assert message["context"][key] == own_context.get(key, value)
            for key, value in own_context.items():
                assert message["context"][key] == value
            assert message["sentAt"] == (original.get("sentAt") or envelope["sentAt"])
