"""SEG quality gate: verifies AI segmentations (DICOM SEG) before they reach the PACS."""

__version__ = "0.1.0"
