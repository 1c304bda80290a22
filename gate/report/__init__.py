"""Reports of a verification: the DICOM SR for clinicians (TID 1500) and the JSON report for machines."""

from gate.report.json_report import incomplete_report, verification_report, write_json_report
from gate.report.sr import build_verification_sr, write_sr

__all__ = [
    "build_verification_sr",
    "incomplete_report",
    "verification_report",
    "write_json_report",
    "write_sr",
]
