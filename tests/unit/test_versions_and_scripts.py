"""Versions, file names and script loading (pure)."""

from __future__ import annotations

from pathlib import Path

import pytest

from lockgate.runner.scripts import Kind, checksum, load_scripts, parse_name
from lockgate.shared.errors import UsageError, ValidationRefused
from lockgate.shared.versions import Version


@pytest.mark.parametrize(
    ("lower", "higher"),
    [("1.9", "1.10"), ("2026.11.21", "2026.11.21.1"), ("1", "1.0.1"), ("9", "10"), ("1_9", "1.10")],
)
def test_versions_compare_part_by_part(lower: str, higher: str) -> None:
    assert Version.parse(lower) < Version.parse(higher)
    assert Version.parse(higher) > Version.parse(lower)


def test_trailing_zeros_do_not_count() -> None:
    assert Version.parse("1.0") == Version.parse("1")
    assert hash(Version.parse("1.0.0")) == hash(Version.parse("1"))
    assert str(Version.parse("1_2")) == "1.2"


@pytest.mark.parametrize("bad", ["", "v1", "1.", ".1", "1..2", "1.a", "-1"])
def test_bad_versions_say_what_to_use(bad: str) -> None:
    with pytest.raises(ValueError, match="dotted numbers"):
        Version.parse(bad)


@pytest.mark.parametrize(
    ("name", "kind", "version", "description"),
    [
        ("V1__init.sql", Kind.VERSIONED, "1", "init"),
        ("V1.10__add_email_column.sql", Kind.VERSIONED, "1.10", "add email column"),
        ("A2026.11.21.1__backfill.sql", Kind.BACKGROUND, "2026.11.21.1", "backfill"),
        ("C3__drop_old.sql", Kind.CONTRACT, "3", "drop old"),
        ("U3__undo.sql", Kind.UNDO, "3", "undo"),
        ("R__views.sql", Kind.REPEATABLE, None, "views"),
    ],
)
def test_file_names(name: str, kind: Kind, version: str | None, description: str) -> None:
    parsed_kind, parsed_version, parsed_description = parse_name(name)
    assert parsed_kind is kind
    assert (str(parsed_version) if parsed_version else None) == version
    assert parsed_description == description


@pytest.mark.parametrize("bad", ["V1_init.sql", "X1__a.sql", "V__a.sql", "V1__.sql", "v1__a.sql", "R1__a.sql"])
def test_bad_file_names_are_named(bad: str) -> None:
    with pytest.raises(ValueError, match=bad.replace(".", r"\.")):
        parse_name(bad)


def test_loading_refuses_bad_names_and_duplicate_versions(tmp_path: Path) -> None:
    (tmp_path / "V1__a.sql").write_text("SELECT 1;")
    (tmp_path / "V1.0__b.sql").write_text("SELECT 1;")
    (tmp_path / "V2-oops.sql").write_text("SELECT 1;")
    (tmp_path / "README.md").write_text("not a migration")
    with pytest.raises(ValidationRefused) as refused:
        load_scripts(tmp_path)
    text = str(refused.value)
    assert "V2-oops.sql" in text
    assert "V1.0__b.sql and V1__a.sql" in text or "V1__a.sql and V1.0__b.sql" in text


def test_loading_reads_subdirectories_and_skips_hidden(tmp_path: Path) -> None:
    (tmp_path / "2026").mkdir()
    (tmp_path / "2026" / "V2__b.sql").write_text("SELECT 2;")
    (tmp_path / "V1__a.sql").write_text("SELECT 1;")
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "V9__hidden.sql").write_text("SELECT 9;")
    assert sorted(s.name for s in load_scripts(tmp_path)) == ["V1__a.sql", "V2__b.sql"]


def test_missing_directory_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="does not exist"):
        load_scripts(tmp_path / "nope")


def test_checksum_ignores_line_ending_style() -> None:
    assert checksum("SELECT 1;\r\nSELECT 2;\r\n") == checksum("SELECT 1;\nSELECT 2;\n")
    assert checksum("SELECT 1;") != checksum("SELECT 2;")


def test_a_byte_order_mark_is_dropped_and_does_not_change_the_checksum(tmp_path: Path) -> None:
    (tmp_path / "V1__bom.sql").write_bytes(b"\xef\xbb\xbfSELECT 'caf\xc3\xa9';\n")
    (script,) = load_scripts(tmp_path)
    assert script.sql == "SELECT 'café';\n"
    assert script.checksum == checksum("SELECT 'café';\n")
    assert load_scripts(tmp_path, "latin-1") == [script]  # the mark says UTF-8, whatever --encoding says


def test_bytes_that_are_not_utf8_are_named_with_file_line_and_byte(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "V3__latin.sql").write_bytes(b"SELECT 1;\n-- caf\xe9\nSELECT 2;\n")
    with pytest.raises(ValidationRefused) as refused:
        load_scripts(tmp_path)
    assert refused.value.problems == [
        "sub/V3__latin.sql line 2: byte 0xe9 is not valid utf-8; re-save the file as UTF-8, "
        "or pass --encoding with the encoding it is in (e.g. --encoding latin-1)"
    ]


def test_another_encoding_reads_the_same_text_and_checksum_as_utf8(tmp_path: Path) -> None:
    (tmp_path / "V1__latin.sql").write_bytes("SELECT 'café';".encode("latin-1"))
    (script,) = load_scripts(tmp_path, "latin-1")
    assert script.sql == "SELECT 'café';"
    assert script.checksum == checksum("SELECT 'café';")
