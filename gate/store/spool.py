"""The spool: every acknowledged object as a file, written atomically before the 0x0000 answer.

Layout: ``<spool>/<StudyInstanceUID>/<SOPInstanceUID>.dcm``. UIDs are checked against PS3.5 9.1
before they become path components, so a hostile UID (``../``) can never leave the spool.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

from gate.errors import SpoolError

# PS3.5 9.1: components of digits separated by dots, no leading zero in a multi-digit component,
# at most 64 characters.
_UID = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")


def is_valid_uid(value: object) -> bool:
    return isinstance(value, str) and 0 < len(value) <= 64 and bool(_UID.match(value))


class Spool:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def relative_path(self, study_uid: str, sop_instance_uid: str) -> Path:
        for name, uid in (("StudyInstanceUID", study_uid), ("SOPInstanceUID", sop_instance_uid)):
            if not is_valid_uid(uid):
                raise SpoolError(f"{name} {uid!r} is not a valid DICOM UID")
        return Path(study_uid) / f"{sop_instance_uid}.dcm"

    def absolute(self, relative: str | Path) -> Path:
        return self.root / relative

    def write(self, study_uid: str, sop_instance_uid: str, data: bytes) -> Path:
        """Write ``data`` durably: temp file, fsync, rename, fsync of the directory.

        Returns the path relative to the spool root. After it returns, the bytes survive a
        power cut or a kill -9, which is what allows the caller to answer 0x0000.
        """
        rel = self.relative_path(study_uid, sop_instance_uid)
        final = self.root / rel
        write_atomic(final, data)
        return rel

    def free_bytes(self) -> int:
        return shutil.disk_usage(self.root).free


def write_atomic(final: Path, data: bytes) -> None:
    """Atomically replace ``final`` with ``data`` (same-directory temp file + fsync + rename)."""
    final.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp = tempfile.mkstemp(dir=final.parent, prefix=".incoming-", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, final)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        dir_fd = os.open(final.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as exc:
        raise SpoolError(f"cannot write {final}: {exc.strerror}") from exc
