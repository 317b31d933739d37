"""Files replaced whole: content, mode, and nothing left behind."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from shared.files import replace_file


def test_a_new_file_is_created_with_its_folder_and_readable_by_its_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "new" / "acl"

    replace_file(path, "user kitchen\n")

    assert path.read_text() == "user kitchen\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in path.parent.iterdir()) == ["acl"]


def test_an_existing_file_keeps_its_mode(tmp_path: Path) -> None:
    path = tmp_path / "passwd"
    path.write_text("old\n")
    path.chmod(0o640)

    replace_file(path, "new\n")

    assert path.read_text() == "new\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "passwd"
    path.write_text("old\n")

    with pytest.raises(UnicodeEncodeError):
        replace_file(path, "\udcff")  # a lone surrogate cannot be written as UTF-8

    assert path.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["passwd"]
