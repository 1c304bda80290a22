"""The gate's Storage SCP: which contexts it accepts and how it is started."""

from __future__ import annotations

import logging

from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, evt
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]
from pynetdicom.transport import ThreadedAssociationServer

from gate.config import Settings
from gate.net.receive import ReceiveContext, StoreHandler, handle_echo

log = logging.getLogger("gate.net")


def make_storage_ae(settings: Settings) -> AE:
    """An AE accepting every storage SOP class (images, SEG, Label Map SEG, SR…) in every transfer
    syntax pynetdicom knows, compressed ones included: we store the bytes as received and decode
    only when verifying (pylibjpeg), which is where mercure's users met trouble."""
    ae = AE(ae_title=settings.ae_title)
    for cx in AllStoragePresentationContexts:
        ae.add_supported_context(cx.abstract_syntax, ALL_TRANSFER_SYNTAXES)
    ae.add_supported_context(Verification)
    ae.maximum_pdu_size = settings.max_pdu_size
    ae.network_timeout = settings.network_timeout_seconds
    ae.acse_timeout = settings.network_timeout_seconds
    ae.dimse_timeout = settings.network_timeout_seconds
    ae.require_called_aet = True
    ae.maximum_associations = settings.max_associations
    return ae


def start_storage_scp(settings: Settings, ctx: ReceiveContext) -> ThreadedAssociationServer:
    """Start the SCP in the background (one thread per association) and return the server."""
    ae = make_storage_ae(settings)
    handlers = [(evt.EVT_C_STORE, StoreHandler(ctx)), (evt.EVT_C_ECHO, handle_echo)]
    server = ae.start_server((settings.bind_address, settings.port), block=False, evt_handlers=handlers)
    log.info(
        "Storage SCP %s listening on %s:%d",
        settings.ae_title,
        settings.bind_address,
        server.server_address[1],
    )
    return server
