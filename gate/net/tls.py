"""TLS for DICOM associations: the SCP's server context and each destination's client context.

Both follow the BCP 195 TLS Secure Transport Connection Profile (PS3.15 Annex B.9, which replaced the
retired Basic and AES profiles B.1/B.3): TLS 1.2 or later, certificates verified against the
administrator's CA. On the SCP, a configured ``ca_file`` makes client certificates mandatory
(mutual TLS, the node authentication of PS3.15 B.9); towards a destination the server certificate is
always verified, including its name or IP address, and ours is presented when configured.
"""

from __future__ import annotations

import socket
import ssl
from typing import Any

from gate.config import Destination, TlsClient, TlsServer
from gate.errors import ConfigError

# PS3.15 B.9 (BCP 195): TLS versions before 1.2 shall not be negotiated.
MIN_TLS_VERSION = ssl.TLSVersion.TLSv1_2


class _DeferredHandshakeContext(ssl.SSLContext):
    """A server context whose sockets shake hands in their association thread, not in accept().

    pynetdicom wraps each accepted socket in its single accept loop with the default
    ``do_handshake_on_connect=True`` on a blocking socket; one peer that connects and stays silent
    would then stall every later sender. Deferred, OpenSSL completes the handshake on the first read
    in the association's own thread, where a failure concerns that peer only. ``io_timeout`` bounds
    each read and write on the socket (accepted sockets are blocking), so that a peer stalling
    mid-handshake or mid-PDU frees its thread instead of holding it forever.
    """

    io_timeout: float | None = None

    def wrap_socket(  # type: ignore[override]
        self, sock: socket.socket, server_side: bool = False, do_handshake_on_connect: bool = True, **kw: Any
    ) -> ssl.SSLSocket:
        sock.settimeout(self.io_timeout)
        return super().wrap_socket(sock, server_side=server_side, do_handshake_on_connect=False, **kw)


class _RecordingSSLSocket(ssl.SSLSocket):
    """Keeps the handshake failure on its context: pynetdicom only logs it, we report it."""

    def do_handshake(self, block: bool = False) -> None:
        try:
            super().do_handshake(block)
        except (ssl.SSLError, OSError) as exc:
            ctx = self.context
            if isinstance(ctx, ClientTlsContext):
                ctx.handshake_error = exc
            raise


class ClientTlsContext(ssl.SSLContext):
    """Client context that remembers why its last handshake failed (see :func:`handshake_failure`)."""

    sslsocket_class = _RecordingSSLSocket
    handshake_error: OSError | None = None


def _load_error(what: str, path: object, exc: Exception) -> ConfigError:
    return ConfigError(f"TLS {what} {path} cannot be loaded: {exc}")


def server_context(tls: TlsServer, *, io_timeout: float | None = None) -> ssl.SSLContext:
    """The Storage SCP's context: our certificate and key; with ``ca_file``, client certificates
    signed by that CA are required (``CERT_REQUIRED``) and any other peer fails the handshake.

    ``io_timeout`` (seconds; the SCP passes its network timeout) limits each socket read/write of
    an accepted connection, the TLS handshake included.
    """
    ctx = _DeferredHandshakeContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.io_timeout = io_timeout
    ctx.minimum_version = MIN_TLS_VERSION
    try:
        ctx.load_cert_chain(tls.cert_file, tls.key_file)
    except (OSError, ssl.SSLError) as exc:
        raise _load_error("server certificate/key", f"{tls.cert_file} / {tls.key_file}", exc) from exc
    if tls.ca_file is not None:
        try:
            ctx.load_verify_locations(cafile=tls.ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise _load_error("client CA", tls.ca_file, exc) from exc
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def client_context(tls: TlsClient) -> ClientTlsContext:
    """A destination's context: verify its certificate (chain and host name/IP) against
    ``ca_file``; present our certificate when ``cert_file`` is set (mutual TLS)."""
    ctx = ClientTlsContext(ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED and check_hostname by default
    ctx.minimum_version = MIN_TLS_VERSION
    try:
        ctx.load_verify_locations(cafile=tls.ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise _load_error("destination CA", tls.ca_file, exc) from exc
    if tls.cert_file is not None:
        try:
            ctx.load_cert_chain(tls.cert_file, tls.key_file)
        except (OSError, ssl.SSLError) as exc:
            raise _load_error("client certificate/key", f"{tls.cert_file} / {tls.key_file}", exc) from exc
    return ctx


def client_tls_args(destination: Destination) -> tuple[ClientTlsContext, str] | None:
    """``tls_args`` for ``AE.associate`` towards ``destination`` (None: plain TCP).

    The server name to verify is the configured host, so the destination's certificate must carry
    it (a DNS name or, for an IP address, an IP subjectAltName).
    """
    if destination.tls is None:
        return None
    return client_context(destination.tls), destination.host


def handshake_failure(tls_args: tuple[ClientTlsContext, str] | None) -> str | None:
    """Why the last TLS handshake with these ``tls_args`` failed, in words; None if it did not."""
    if tls_args is None or tls_args[0].handshake_error is None:
        return None
    exc = tls_args[0].handshake_error
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate verify failed: {exc.verify_message}"
    if isinstance(exc, ssl.SSLError):
        return f"TLS handshake failed: {exc.reason or exc}"
    return f"TLS handshake failed: {exc}"
