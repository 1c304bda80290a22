"""C-STORE SCU: send files to a destination, one association per batch."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pydicom import dcmread
from pydicom.errors import InvalidDicomError
from pynetdicom import AE
from pynetdicom.association import Association
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from gate.config import Destination
from gate.errors import ConfigError
from gate.net.access import describe_rejection
from gate.net.tls import ClientTlsContext, client_tls_args, handshake_failure

log = logging.getLogger("gate.send")

# Uncompressed syntaxes every SCP must accept (PS3.5 10.1); we offer them beside the file's own.
_UNCOMPRESSED = ("1.2.840.10008.1.2.1", "1.2.840.10008.1.2")


@dataclass(frozen=True)
class SendOutcome:
    path: Path
    status: int | None  # DIMSE status, or None when no response came (association failed)
    error: str | None = None

    @property
    def delivered(self) -> bool:
        from gate.net.status import is_success

        return self.status is not None and is_success(self.status)


def send_files(
    paths: Sequence[Path], destination: Destination, *, calling_ae: str, timeout: float = 30.0
) -> list[SendOutcome]:
    """C-STORE each file over one association; every file gets its own outcome.

    Contexts are proposed per (SOP class, transfer syntax) the files need — pynetdicom's default
    requestor list omits Label Map SEG, and one association may carry at most 128 contexts.
    """
    datasets = []
    outcomes: list[SendOutcome] = []
    for path in paths:
        try:
            ds = dcmread(path)
        except (InvalidDicomError, OSError) as exc:
            outcomes.append(SendOutcome(path, None, f"cannot read {path}: {exc}"))
            continue
        datasets.append((path, ds))
    if not datasets:
        return outcomes

    ae = AE(ae_title=calling_ae)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout
    ae.connection_timeout = timeout
    contexts: dict[str, set[str]] = {}
    for _, ds in datasets:
        syntaxes = contexts.setdefault(str(ds.SOPClassUID), set(_UNCOMPRESSED))
        syntaxes.add(str(ds.file_meta.TransferSyntaxUID))
    for sop_class, syntaxes in list(contexts.items())[:127]:
        ae.add_requested_context(sop_class, sorted(syntaxes))
    ae.add_requested_context(Verification)

    try:
        tls_args = client_tls_args(destination)
    except ConfigError as exc:
        log.error(
            "send to %s@%s:%d impossible: %s", destination.ae_title, destination.host, destination.port, exc
        )
        return outcomes + [SendOutcome(p, None, str(exc)) for p, _ in datasets]
    assoc = ae.associate(destination.host, destination.port, ae_title=destination.ae_title, tls_args=tls_args)
    if not assoc.is_established:
        reason = _no_association_reason(assoc, tls_args)
        log.warning(
            "send to %s@%s:%d failed: %s", destination.ae_title, destination.host, destination.port, reason
        )
        return outcomes + [SendOutcome(p, None, reason) for p, _ in datasets]
    try:
        for path, ds in datasets:
            try:
                rsp = assoc.send_c_store(ds)
            except (ValueError, RuntimeError) as exc:
                outcomes.append(SendOutcome(path, None, f"no presentation context: {exc}"))
                continue
            if not rsp or "Status" not in rsp:
                outcomes.append(SendOutcome(path, None, "no response (timeout or abort)"))
                if not assoc.is_established:
                    break
                continue
            status = int(rsp.Status)
            comment = str(rsp.get("ErrorComment", "")) or None
            outcomes.append(SendOutcome(path, status, comment))
            log.info("sent %s to %s: status 0x%04X", ds.SOPInstanceUID, destination.ae_title, status)
    finally:
        if assoc.is_established:
            assoc.release()
    done = {o.path for o in outcomes}
    outcomes += [SendOutcome(p, None, "association lost") for p, _ in datasets if p not in done]
    return outcomes


def _no_association_reason(assoc: Association, tls_args: tuple[ClientTlsContext, str] | None) -> str:
    """Why no association came up, in words an administrator can act on."""
    if assoc.is_rejected:
        rj = assoc.acceptor.primitive
        if rj is None or rj.result is None:
            return "association rejected"
        return "association rejected: " + describe_rejection(
            int(rj.result), int(rj.result_source or 0), int(rj.diagnostic or 0)
        )
    tls_failure = handshake_failure(tls_args)
    if tls_failure is not None:
        return tls_failure
    return "no association (peer down or aborted)"


def echo(destination: Destination, *, calling_ae: str, timeout: float = 10.0) -> bool:
    """C-ECHO the destination (over TLS when it has ``tls``): is it there and does it accept us?"""
    ae = AE(ae_title=calling_ae)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = ae.connection_timeout = timeout
    ae.add_requested_context(Verification)
    try:
        tls_args = client_tls_args(destination)
    except ConfigError as exc:
        log.error(
            "echo %s@%s:%d impossible: %s", destination.ae_title, destination.host, destination.port, exc
        )
        return False
    assoc = ae.associate(destination.host, destination.port, ae_title=destination.ae_title, tls_args=tls_args)
    if not assoc.is_established:
        log.warning(
            "echo %s@%s:%d failed: %s",
            destination.ae_title,
            destination.host,
            destination.port,
            _no_association_reason(assoc, tls_args),
        )
        return False
    try:
        rsp = assoc.send_c_echo()
        return bool(rsp) and int(rsp.Status) == 0
    finally:
        assoc.release()
