from __future__ import annotations

from pathlib import Path

import pytest

from gate.errors import SpoolError
from gate.store.spool import Spool, is_valid_uid


@pytest.mark.parametrize(
    "uid,ok",
    [
        ("1.2.840.10008.5.1.4.1.1.4", True),
        ("1.2.3.0", True),
        ("1.02.3", False),
        ("../etc/passwd", False),
        ("1.2/3", False),
        ("", False),
        ("1." + "1" * 70, False),
        ("1..2", False),
        (None, False),
    ],
)
def test_uid_validation(uid: object, ok: bool) -> None:
    assert is_valid_uid(uid) is ok


def test_write_is_atomic_and_named_by_uid(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    rel = spool.write("1.2.3", "1.2.3.4", b"DICM-bytes")
    assert rel == Path("1.2.3") / "1.2.3.4.dcm"
    assert spool.absolute(rel).read_bytes() == b"DICM-bytes"
    # Rewriting the same instance replaces it and leaves no temporary file behind.
    spool.write("1.2.3", "1.2.3.4", b"again")
    assert spool.absolute(rel).read_bytes() == b"again"
    assert sorted(p.name for p in (tmp_path / "1.2.3").iterdir()) == ["1.2.3.4.dcm"]


def test_hostile_uid_never_becomes_a_path(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    with pytest.raises(SpoolError):
        spool.write("1.2.3", "../../escape", b"x")
    assert not (tmp_path / "escape.dcm").exists()
