"""The network benchmark's baseline: a bare pynetdicom Storage SCP that only writes and fsyncs.

It accepts the same contexts as the gate (every storage SOP class, every transfer syntax, threaded
associations) and does the least a receiver that keeps its promise must do: write the received
bytes to ``<dir>/<SOPInstanceUID>.dcm``, fsync, and answer Success. No checks, no database, no
rename. Whatever the gate spends beyond this is its own cost.

Run as a subprocess (``python -m bench.baseline_scp --port P --dir D``), so it has its own
interpreter and GIL, as ``gate serve`` has; it stops on SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path

from pydicom import Dataset
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, evt

SUCCESS = 0x0000


def _status(code: int) -> Dataset:
    ds = Dataset()
    ds.Status = code
    return ds


def make_handler(out_dir: Path):  # type: ignore[no-untyped-def]
    def handle_store(event: evt.Event) -> Dataset:
        # The name comes from the request, not from decoding the data set: a bare receiver.
        sop_uid = str(event.request.AffectedSOPInstanceUID)
        data = event.encoded_dataset(include_meta=True)
        fd = os.open(out_dir / f"{sop_uid}.dcm", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        return _status(SUCCESS)

    return handle_store


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--ae-title", default="BASELINE")
    parser.add_argument("--max-associations", type=int, default=16)
    args = parser.parse_args(argv)
    args.dir.mkdir(parents=True, exist_ok=True)

    ae = AE(ae_title=args.ae_title)
    for cx in AllStoragePresentationContexts:
        ae.add_supported_context(cx.abstract_syntax, ALL_TRANSFER_SYNTAXES)
    ae.maximum_associations = args.max_associations
    ae.network_timeout = ae.acse_timeout = ae.dimse_timeout = 60
    server = ae.start_server(
        ("127.0.0.1", args.port), block=False, evt_handlers=[(evt.EVT_C_STORE, make_handler(args.dir))]
    )
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    print(f"baseline SCP {args.ae_title} listening on {args.port}", file=sys.stderr, flush=True)
    stop.wait()
    server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
