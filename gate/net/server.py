"""The gate's Storage SCP: which contexts it accepts, who may associate, and how it is started."""

from __future__ import annotations

import logging

from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, evt
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]
from pynetdicom.transport import ThreadedAssociationServer

from gate.config import Settings
from gate.net.access import AccessPolicy, AssociationGuard
from gate.net.receive import ReceiveContext, StoreHandler, handle_echo
from gate.net.tls import server_context

log = logging.getLogger("gate.net")


def make_storage_ae(settings: Settings) -> AE:
    """An AE accepting every storage SOP class (images, SEG, Label Map SEG, SR…) in every transfer
    syntax pynetdicom knows, compressed ones included: we store the bytes as received and decode
    only when verifying (pylibjpeg), which is where mercure's users met trouble.

    The called AE title must be ours (else A-ASSOCIATE-RJ reason 0x07, PS3.8 Table 9-21). With an
    allow-list, pynetdicom's own calling-AE check is set too, behind :class:`AssociationGuard`'s
    title-and-host check, so that the titles stay enforced even if that handler were unbound.
    """
    ae = AE(ae_title=settings.ae_title)
    for cx in AllStoragePresentationContexts:
        assert cx.abstract_syntax is not None
        ae.add_supported_context(cx.abstract_syntax, ALL_TRANSFER_SYNTAXES)
    ae.add_supported_context(Verification)
    ae.maximum_pdu_size = settings.max_pdu_size
    ae.network_timeout = settings.network_timeout_seconds
    ae.acse_timeout = settings.network_timeout_seconds
    ae.dimse_timeout = settings.network_timeout_seconds
    ae.require_called_aet = True
    ae.require_calling_aet = AccessPolicy(settings.allowed_callers).calling_ae_titles
    ae.maximum_associations = settings.max_associations
    return ae


def start_storage_scp(settings: Settings, ctx: ReceiveContext) -> ThreadedAssociationServer:
    """Start the SCP in the background (one thread per association) and return the server.

    Association requests pass the :class:`AssociationGuard` (allow-list, audit) before any data
    is exchanged; with ``settings.tls`` the listener speaks TLS only (PS3.15 B.9), and with its
    ``ca_file`` it requires client certificates.
    """
    ae = make_storage_ae(settings)
    guard = AssociationGuard(AccessPolicy(settings.allowed_callers), ctx.sessions)
    handlers: list[evt.EventHandlerType] = [
        (evt.EVT_C_STORE, StoreHandler(ctx)),
        (evt.EVT_C_ECHO, handle_echo),
        *guard.handlers(),
    ]
    ssl_context = (
        server_context(settings.tls, io_timeout=settings.network_timeout_seconds)
        if settings.tls is not None
        else None
    )
    server = ae.start_server(
        (settings.bind_address, settings.port), block=False, evt_handlers=handlers, ssl_context=ssl_context
    )
    assert server is not None  # block=False returns the running server
    log.info(
        "Storage SCP %s listening on %s:%d (%s; %s)",
        settings.ae_title,
        settings.bind_address,
        server.server_address[1],
        "TLS" + (" with client certificates required" if settings.tls and settings.tls.ca_file else "")
        if settings.tls
        else "plain TCP",
        f"{len(settings.allowed_callers)} allowed callers" if settings.allowed_callers else "any caller",
    )
    return server
