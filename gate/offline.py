"""``gate verify``: the same verification as the service, on files, without network or database."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydicom import dcmread

from gate.assemble.loader import load_verification_input, read_dataset
from gate.assemble.references import referenced_source_uids
from gate.assemble.validate import PARSE_ERRORS
from gate.config import Settings
from gate.dicom import is_seg
from gate.errors import InvalidObjectError
from gate.report.json_report import verification_report
from gate.verify.recnet import load_shipped_model
from gate.verify.verifier import Verifier


def verify_files(images_dir: Path, seg_path: Path, settings: Settings) -> dict[str, Any]:
    """Verify ``seg_path`` against the source instances found under ``images_dir``."""
    if not seg_path.is_file():
        raise InvalidObjectError(f"SEG file {seg_path} does not exist")
    if not images_dir.is_dir():
        raise InvalidObjectError(f"images folder {images_dir} does not exist")
    seg = read_dataset(seg_path)
    if not is_seg(str(seg.get("SOPClassUID", ""))):
        raise InvalidObjectError(
            f"{seg_path.name} is not a DICOM SEG (SOP class {seg.get('SOPClassUID', '?')})"
        )
    wanted = set(referenced_source_uids(seg))
    sources = {}
    for path in sorted(p for p in images_dir.rglob("*") if p.is_file()):
        try:
            header = dcmread(path, stop_before_pixels=True, specific_tags=["SOPInstanceUID"])
            uid = str(header.get("SOPInstanceUID", ""))
        except PARSE_ERRORS:
            continue  # not DICOM: other files may share the folder
        if uid in wanted:
            sources[uid] = read_dataset(path)  # a malformed source is invalid input (exit 2)
    missing = sorted(wanted - set(sources))
    if missing:
        raise InvalidObjectError(
            f"{len(missing)} referenced source instance(s) not found under {images_dir}, e.g. {missing[0]}"
        )
    inp = load_verification_input(seg, sources)
    verifier = Verifier(load_shipped_model(settings.model_dir), thresholds=settings.thresholds)
    return verification_report(verifier.verify(inp))
