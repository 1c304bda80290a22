"""atheris fuzz target: untrusted bytes through the gate's parse → references → decode path.

One input is a DICOM Part 10 file as it could sit in the spool. It is parsed the way assembly reads
the spool (:func:`gate.assemble.loader.parse_dataset`), its source references are read
(:func:`~gate.assemble.references.referenced_source_uids`), and then either its segments are decoded
(:func:`~gate.assemble.references.read_segment_masks`, for a SEG) or its pixel data are (the source
path, :func:`~gate.assemble.loader.source_pixels`). The gate promises that all of this either works
or raises :class:`gate.errors.InvalidObjectError` with a reason; that is the only exception caught
here, so anything else — a stray ``IndexError`` from a library, a crash in a decoder — is a finding.

Run (seeds: the hostile corpus, ``python -m gate.synth.hostile var/hostile``)::

    python fuzz/fuzz_parse_assemble.py -max_total_time=60 -rss_limit_mb=3072 -timeout=30 \
        var/fuzz-found var/hostile/cases

Without atheris, :func:`one_input` is a plain function (tests/test_fuzz_smoke.py calls it).
"""

from __future__ import annotations

import logging
import sys
import warnings

if __name__ == "__main__":
    import atheris

    with atheris.instrument_imports(include=["gate", "pydicom", "highdicom"]):
        import gate.assemble.loader  # noqa: F401
        import gate.assemble.references  # noqa: F401

from gate.assemble.loader import source_pixels  # noqa: E402
from gate.assemble.references import read_segment_masks, referenced_source_uids  # noqa: E402
from gate.assemble.validate import check_image_geometry, parse_dataset  # noqa: E402
from gate.dicom import is_seg  # noqa: E402
from gate.errors import InvalidObjectError  # noqa: E402

# pydicom warns about every odd value it reads; the fuzzer reads little else.
warnings.simplefilter("ignore")
logging.disable(logging.CRITICAL)


def one_input(data: bytes) -> None:
    """Parse and assemble ``data``; only :class:`InvalidObjectError` may escape... and is swallowed."""
    try:
        ds = parse_dataset(data, "fuzz input")
        refs = referenced_source_uids(ds)
        check_image_geometry(ds)
        if is_seg(str(ds.get("SOPClassUID", ""))):
            shape = (int(ds.get("Rows", 1) or 1), int(ds.get("Columns", 1) or 1))
            read_segment_masks(ds, dict.fromkeys(refs, shape))
        elif "PixelData" in ds or "Rows" in ds:
            source_pixels(ds)
    except InvalidObjectError:
        return


def main() -> None:
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
