"""The spool: every acknowledged object as a file, written atomically before the 0x0000 answer.

Layout: ``<spool>/<StudyInstanceUID>/<SOPInstanceUID>.dcm``. UIDs are checked against PS3.5 9.1
before they become path components, so a hostile UID (``../``) can never leave the spool.
"""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

from gate.errors import SpoolError
from gate.store.atomic import TEMP_PREFIX, TEMP_SUFFIX, write_atomically

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

    def remove_stale_temporaries(self, older_than: float | None = None) -> list[Path]:
        """Delete ``.incoming-*.tmp`` files a killed process left half-written; return them.

        Such a file was never renamed into place, so its object was never acknowledged: the sender
        still holds it and will send it again. Only files last modified before ``older_than`` (a
        ``time.time()`` value; default: now) go, so that a call made while the SCP already runs
        cannot delete a write in progress if given the process start time.
        """
        cutoff = time.time() if older_than is None else older_than
        removed = []
        for tmp in self.root.glob(f"*/{TEMP_PREFIX}*{TEMP_SUFFIX}"):
            try:
                if tmp.stat().st_mtime < cutoff:
                    tmp.unlink()
                    removed.append(tmp)
            except FileNotFoundError:  # renamed or removed meanwhile
                continue
        return removed


def write_atomic(final: Path, data: bytes) -> None:
    """Atomically replace ``final`` with ``data`` (same-folder temp file + fsync + rename)."""
    try:
        write_atomically(final, lambda stream: stream.write(data))
    except OSError as exc:
        raise SpoolError(f"cannot write {final}: {exc.strerror}") from exc
