import os
import stat
from pathlib import Path

import pytest

from app.keyfiles import KeyFileError, load_or_create, random_key


def test_created_once_with_owner_only_permissions(tmp_path: Path) -> None:
    path = tmp_path / "secrets" / "k.key"
    first = load_or_create(path, random_key(32))
    assert len(first) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert load_or_create(path, random_key(32)) == first
    assert [p.name for p in path.parent.iterdir()] == ["k.key"]


def test_refuses_a_secret_readable_by_others(tmp_path: Path) -> None:
    path = tmp_path / "k.key"
    path.write_bytes(b"x" * 32)
    os.chmod(path, 0o644)
    with pytest.raises(KeyFileError, match="readable by others"):
        load_or_create(path, random_key(32))


def test_refuses_an_empty_secret(tmp_path: Path) -> None:
    path = tmp_path / "k.key"
    path.touch(mode=0o600)
    with pytest.raises(KeyFileError, match="empty"):
        load_or_create(path, random_key(32))
