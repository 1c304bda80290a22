"""Coded concepts of the verification SR, and the private coding scheme for what has no standard code.

DICOM has no code for SSIM, nor for "this segmentation passed an automated quality check"; PS3.16 §8.2
(Coding Scheme Designator) lets an implementation define a private scheme whose designator begins with
"99", provided the SR declares it in the Coding Scheme Identification Sequence (PS3.3 C.12.1.1.4).
Standard codes are used wherever one fits:

- unit ``(1, UCUM, "no units")`` for SSIM, a dimensionless ratio (CID 7181 / UCUM unity);
- ``(373098007, SCT, "Mean")`` and ``(255605001, SCT, "Minimum")`` from CID 7464 "General Region of
  Interest Measurement Modifiers" as the Derivation of the segment score (strip-weighted mean over
  frames) and the worst frame's score;
- ``(C0034375, UMLS, "Qualitative Evaluations")``, the container of TID 1500 row 12, for the verdict on
  the whole SEG.

Pass/Fail are private: the nearest standard pair, ``(111222, DCM, "Succeeded")`` /
``(111224, DCM, "Failed")`` of CID 6042 "Status of Results", says whether a CAD *algorithm ran*, not
whether the *segmentation is acceptable*, and a viewer would show the wrong meaning.
"""

from __future__ import annotations

from typing import Final

from highdicom.coding_schemes import CodingSchemeIdentificationItem
from pydicom.sr.coding import Code

CODING_SCHEME_DESIGNATOR: Final = "99QGATE"
CODING_SCHEME_NAME: Final = "SEG quality gate private codes"
CODING_SCHEME_RESPONSIBLE_ORGANIZATION: Final = "SEG quality gate project"
CODING_SCHEME_VERSION: Final = "1"


def coding_scheme_identification() -> CodingSchemeIdentificationItem:
    """Item of the Coding Scheme Identification Sequence (0008,0110) that declares ``99QGATE``.

    A new item each call: a pydicom Dataset is mutable and may be placed in only one sequence.
    """
    return CodingSchemeIdentificationItem(
        designator=CODING_SCHEME_DESIGNATOR,
        name=CODING_SCHEME_NAME,
        version=CODING_SCHEME_VERSION,
        responsible_organization=CODING_SCHEME_RESPONSIBLE_ORGANIZATION,
    )


def _private(value: str, meaning: str) -> Code:
    return Code(value=value, scheme_designator=CODING_SCHEME_DESIGNATOR, meaning=meaning)


# Concept name of the TID 300 Measurement: mean SSIM over the strip pixels (arXiv 2310.16999).
STRIP_SSIM: Final = _private("STRIP-SSIM", "Strip SSIM")
# The same minus the strip's blur ceiling (gate.verify.verifier.frame_scores), when the model card says so.
STRIP_SSIM_GAIN: Final = _private("STRIP-SSIM-GAIN", "Strip SSIM gain over blurred original")
# Concept name of the TID 1411 / TID 1500 qualitative evaluation, with value PASS or FAIL.
SEGMENTATION_QUALITY: Final = _private("SEG-QUALITY", "Segmentation quality")
PASS: Final = _private("PASS", "Pass")
FAIL: Final = _private("FAIL", "Fail")
# Measurement Method (TID 300 / TID 1411 row "Measurement Method"): the "Trust, but Verify" method.
STRIP_SSIM_VERIFICATION: Final = _private("TBV-STRIP-SSIM", "Strip SSIM verification (Trust, but Verify)")
# Procedure Reported (TID 1500 row 4): automated quality verification of a segmentation.
SEGMENTATION_VERIFICATION: Final = _private("SEG-VERIFY", "Segmentation quality verification")

# Standard codes (see module docstring for the choice).
UNITY: Final = Code(value="1", scheme_designator="UCUM", meaning="no units")
MEAN: Final = Code(value="373098007", scheme_designator="SCT", meaning="Mean")
MINIMUM: Final = Code(value="255605001", scheme_designator="SCT", meaning="Minimum")
QUALITATIVE_EVALUATIONS: Final = Code(
    value="C0034375", scheme_designator="UMLS", meaning="Qualitative Evaluations"
)

__all__ = [
    "CODING_SCHEME_DESIGNATOR",
    "CODING_SCHEME_NAME",
    "CODING_SCHEME_RESPONSIBLE_ORGANIZATION",
    "CODING_SCHEME_VERSION",
    "FAIL",
    "MEAN",
    "MINIMUM",
    "PASS",
    "QUALITATIVE_EVALUATIONS",
    "SEGMENTATION_QUALITY",
    "SEGMENTATION_VERIFICATION",
    "STRIP_SSIM",
    "STRIP_SSIM_GAIN",
    "STRIP_SSIM_VERIFICATION",
    "UNITY",
    "coding_scheme_identification",
]
