"""Who may associate with the gate, and the audit row each association attempt leaves behind.

The calling-AE allow-list (``Settings.allowed_callers``) is enforced at A-ASSOCIATE time, before any
presentation context is negotiated: a sender that is not listed, or that is listed with a host and
connects from elsewhere, gets an A-ASSOCIATE-RJ "rejected-permanent, DICOM UL service-user, calling
AE title not recognised" (PS3.8 9.3.4, Table 9-21). The check runs in an ``EVT_REQUESTED`` handler,
the hook pynetdicom's maintainers recommend for custom rejections (pydicom/pynetdicom#408), because
pynetdicom's own ``require_calling_aet`` compares titles only and never sees the peer's address.

Every accepted or rejected association is written to the audit table; an audit write that fails
(a briefly locked SQLite file) is logged and never breaks the association it describes.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import ssl
import threading
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from pynetdicom import evt
from pynetdicom.association import Association
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from gate.audit import record_audit
from gate.config import AllowedPeer
from gate.store.models import AuditKind

log = logging.getLogger("gate.access")

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class AssociateResult(IntEnum):
    """A-ASSOCIATE-RJ Result field (PS3.8 9.3.4, Table 9-21)."""

    REJECTED_PERMANENT = 0x01
    REJECTED_TRANSIENT = 0x02


class RejectSource(IntEnum):
    """A-ASSOCIATE-RJ Source field (PS3.8 9.3.4, Table 9-21)."""

    SERVICE_USER = 0x01
    SERVICE_PROVIDER_ACSE = 0x02
    SERVICE_PROVIDER_PRESENTATION = 0x03


class ServiceUserReason(IntEnum):
    """A-ASSOCIATE-RJ Reason/Diag. when the source is the DICOM UL service-user (PS3.8 Table 9-21)."""

    NO_REASON_GIVEN = 0x01
    APPLICATION_CONTEXT_NAME_NOT_SUPPORTED = 0x02
    CALLING_AE_TITLE_NOT_RECOGNISED = 0x03
    CALLED_AE_TITLE_NOT_RECOGNISED = 0x07


# Reason/Diag. wording per source, as PS3.8 Table 9-21 words it; used for logs and audit detail.
_REASON_TEXT: dict[RejectSource, dict[int, str]] = {
    RejectSource.SERVICE_USER: {
        ServiceUserReason.NO_REASON_GIVEN: "no reason given",
        ServiceUserReason.APPLICATION_CONTEXT_NAME_NOT_SUPPORTED: "application context name not supported",
        ServiceUserReason.CALLING_AE_TITLE_NOT_RECOGNISED: "calling AE title not recognised",
        ServiceUserReason.CALLED_AE_TITLE_NOT_RECOGNISED: "called AE title not recognised",
    },
    RejectSource.SERVICE_PROVIDER_ACSE: {0x01: "no reason given", 0x02: "protocol version not supported"},
    RejectSource.SERVICE_PROVIDER_PRESENTATION: {0x01: "temporary congestion", 0x02: "local limit exceeded"},
}


def describe_rejection(result: int, source: int, reason: int) -> str:
    """Human wording of an A-ASSOCIATE-RJ (PS3.8 Table 9-21), e.g. for the audit detail."""
    try:
        result_text = AssociateResult(result).name.lower().replace("_", "-")
    except ValueError:
        result_text = f"result 0x{result:02X}"
    try:
        src = RejectSource(source)
    except ValueError:
        return f"{result_text}, source 0x{source:02X}, reason 0x{reason:02X}"
    reason_text = _REASON_TEXT[src].get(reason, f"reason 0x{reason:02X}")
    return f"{reason_text} ({result_text}, {src.name.lower().replace('_', ' ')})"


def _normalise_ip(address: str) -> IpAddress | None:
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped  # a dual-stack listener reports IPv4 peers as ::ffff:a.b.c.d
    return ip


def _host_matches(allowed: str, peer: IpAddress) -> bool:
    """Does ``peer`` match the configured host: an IP address, a network (CIDR) or a host name?

    A host name is resolved at each association, so a changed DNS entry takes effect without a
    restart; a name that does not resolve matches nothing (the association is refused, not let in).
    """
    try:
        network: IpNetwork = ipaddress.ip_network(allowed, strict=False)
    except ValueError:
        pass
    else:
        return peer in network
    try:
        infos = socket.getaddrinfo(allowed, None, proto=socket.IPPROTO_TCP)
    except OSError as exc:  # socket.gaierror: unknown name, resolver down
        log.warning("allowed caller host %r does not resolve: %s", allowed, exc)
        return False
    return any(_normalise_ip(str(info[4][0])) == peer for info in infos)


@dataclass(frozen=True)
class AccessDecision:
    allowed: bool
    why: str  # for the audit detail and the log


class AccessPolicy:
    """The calling-AE allow-list with its optional per-entry host; empty means any caller may store."""

    def __init__(self, allowed_callers: Sequence[AllowedPeer]) -> None:
        self.allowed_callers = list(allowed_callers)

    @property
    def restricted(self) -> bool:
        return bool(self.allowed_callers)

    @property
    def calling_ae_titles(self) -> list[str]:
        """The listed titles, each once, for pynetdicom's own ``require_calling_aet`` check."""
        return list(dict.fromkeys(p.ae_title for p in self.allowed_callers))

    def decide(self, calling_ae: str, peer_address: str | None) -> AccessDecision:
        """May ``calling_ae`` associate from ``peer_address``? A title may be listed several times
        with different hosts; any matching entry lets it in."""
        if not self.restricted:
            return AccessDecision(True, "any caller allowed (no allow-list)")
        calling_ae = calling_ae.strip()
        entries = [p for p in self.allowed_callers if p.ae_title == calling_ae]
        if not entries:
            return AccessDecision(False, f"calling AE {calling_ae!r} is not in allowed_callers")
        if any(p.host is None for p in entries):
            return AccessDecision(True, f"calling AE {calling_ae!r} is listed")
        peer = _normalise_ip(peer_address) if peer_address else None
        if peer is not None and any(_host_matches(str(p.host), peer) for p in entries):
            return AccessDecision(True, f"calling AE {calling_ae!r} is listed for host {peer}")
        return AccessDecision(
            False,
            f"calling AE {calling_ae!r} is not allowed from host {peer_address or 'unknown'}"
            f" (allowed: {', '.join(str(p.host) for p in entries)})",
        )


def _calling_ae(assoc: Association) -> str:
    primitive = assoc.requestor.primitive
    title = primitive.calling_ae_title if primitive is not None else assoc.requestor.ae_title
    return str(title or "").strip() or "?"


def _peer_host(assoc: Association) -> str | None:
    address = assoc.requestor.address
    return str(address) if address else None


def _tls_peer(assoc: Association) -> str | None:
    """The subject CN of the sender's TLS client certificate, if it presented one (PS3.15 B.9)."""
    sock = getattr(assoc.dul.socket, "socket", None)
    if not isinstance(sock, ssl.SSLSocket):
        return None
    try:
        cert: dict[str, Any] | None = sock.getpeercert()  # type: ignore[assignment]
    except (ValueError, OSError):  # handshake not complete / socket closed
        return None
    if not cert:
        return "TLS, no client certificate"
    names = [value for rdn in cert.get("subject", ()) for key, value in rdn if key == "commonName"]
    return f"TLS client certificate CN={names[0] if names else '?'}"


class AssociationGuard:
    """Enforces an :class:`AccessPolicy` and audits every association attempt on the SCP.

    Bind with :meth:`handlers` in ``AE.start_server``; one instance serves all association threads.
    """

    def __init__(self, policy: AccessPolicy, sessions: sessionmaker[Session]) -> None:
        self.policy = policy
        self.sessions = sessions
        # Why each admitted association was admitted, for its audit row; weak, so that ended
        # associations (pynetdicom's threads) are forgotten without bookkeeping.
        self._admitted: weakref.WeakKeyDictionary[Association, AccessDecision] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    def handlers(self) -> list[evt.EventHandlerType]:
        return [
            (evt.EVT_REQUESTED, self.on_requested),
            (evt.EVT_ACCEPTED, self.on_accepted),
            (evt.EVT_REJECTED, self.on_rejected),
        ]

    def on_requested(self, event: evt.Event) -> None:
        """Reject a caller the allow-list does not admit, before negotiation (PS3.8 7.1.1, 9.3.4).

        pynetdicom logs and ignores exceptions raised by notification handlers, which would let the
        association proceed; so any unexpected error here rejects instead (fail closed).
        """
        assoc = event.assoc
        calling_ae, peer = _calling_ae(assoc), _peer_host(assoc)
        try:
            decision = self.policy.decide(calling_ae, peer)
        except Exception:  # noqa: BLE001 - fail closed: an access check that crashed admits nobody
            log.exception("access check for %s from %s failed; rejecting", calling_ae, peer)
            decision = AccessDecision(False, "access check failed")
        if decision.allowed:
            with self._lock:
                self._admitted[assoc] = decision
            return
        reason = ServiceUserReason.CALLING_AE_TITLE_NOT_RECOGNISED
        text = describe_rejection(AssociateResult.REJECTED_PERMANENT, RejectSource.SERVICE_USER, reason)
        log.warning("rejected association from %s at %s: %s", calling_ae, peer, decision.why)
        # pynetdicom fires EVT_REJECTED only for its own rejections, so this one is audited here,
        # before the peer learns of it.
        self._audit(AuditKind.ASSOCIATION_REJECTED, calling_ae, peer, f"{text}: {decision.why}")
        assoc.acse.send_reject(AssociateResult.REJECTED_PERMANENT, RejectSource.SERVICE_USER, reason)
        # As pynetdicom does after its own rejections: wait until the A-ASSOCIATE-RJ has gone out and
        # the peer closed the connection (or the ARTIM timer expired), then end the DUL thread.
        assoc.kill()

    def on_accepted(self, event: evt.Event) -> None:
        assoc = event.assoc
        calling_ae, peer = _calling_ae(assoc), _peer_host(assoc)
        with self._lock:
            decision = self._admitted.pop(assoc, None)
        detail = decision.why if decision is not None else "admitted"
        tls = _tls_peer(assoc)
        self._audit(AuditKind.ASSOCIATION_ACCEPTED, calling_ae, peer, f"{detail}; {tls}" if tls else detail)

    def on_rejected(self, event: evt.Event) -> None:
        """pynetdicom's own rejections: wrong called AE, association limit reached (PS3.8 Table 9-21)."""
        assoc = event.assoc
        rj = assoc.acceptor.primitive
        if rj is None or rj.result is None:
            detail = "rejected"
        else:
            detail = describe_rejection(int(rj.result), int(rj.result_source or 0), int(rj.diagnostic or 0))
        primitive = assoc.requestor.primitive
        if (
            primitive is not None
            and rj is not None
            and rj.diagnostic == ServiceUserReason.CALLED_AE_TITLE_NOT_RECOGNISED
        ):
            detail += f": called AE {str(primitive.called_ae_title).strip()!r}"
        calling_ae, peer = _calling_ae(assoc), _peer_host(assoc)
        log.warning("rejected association from %s at %s: %s", calling_ae, peer, detail)
        self._audit(AuditKind.ASSOCIATION_REJECTED, calling_ae, peer, detail)

    def _audit(self, kind: AuditKind, calling_ae: str, peer: str | None, detail: str) -> None:
        try:
            with self.sessions.begin() as session:
                record_audit(session, kind, actor=calling_ae, peer_host=peer, detail=detail)
        except SQLAlchemyError as exc:
            # The association goes on: the audit trail must not become a way to refuse senders.
            log.error(
                "audit %s of %s from %s NOT recorded (database error %s): %s",
                kind,
                calling_ae,
                peer,
                type(exc).__name__,
                exc,
            )
