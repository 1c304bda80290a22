"""DICOM networking: Storage SCP (receive), C-STORE SCU (send)."""
