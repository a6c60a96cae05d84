"""The standard library's mail clients on a connection the library upgraded.

``SMTP``, ``IMAP4`` and ``POP3`` are ``smtplib.SMTP``, ``imaplib.IMAP4`` and ``poplib.POP3``
whose constructor connects through :func:`starttls.connect`: STARTTLS (or implicit TLS with
``protocol="smtps"``, ``"imaps"``, ``"pop3s"``) with the library's guarantees — nothing injected
before TLS is read, a stripped or refused STARTTLS fails, capabilities are asked again inside
TLS, the certificate is verified, every step has a timeout. Everything after that (``login``,
``sendmail``/``send_message``, ``select``/``fetch``, ``retr``, ...) is the standard library's own
code, unchanged. Their own ``starttls()``/``stls()`` raise: the connection is already encrypted.

    from starttls.stdlib import SMTP
    with SMTP("mail.example.org", 587) as smtp:
        smtp.login("alice", password)
        smtp.send_message(message)
"""

from __future__ import annotations

import imaplib
import poplib
import smtplib
from typing import TYPE_CHECKING, Any, NoReturn, cast

from . import Error, Protocol, connect

if TYPE_CHECKING:
    import socket
    import ssl

    from _socket import _Address

    from . import Config, Connection, _ProtocolArg

__all__ = ["SMTP", "IMAP4", "POP3"]


def _upgraded(default: Protocol, host: str, port: int | None, protocol: _ProtocolArg | None,
              config: Config | None, server_name: str | None) -> Connection:
    """Connects and upgrades with ``protocol`` (a ``Protocol`` or its name), else ``default``."""
    return connect(default if protocol is None else protocol, host, port or None,
                   config=config, server_name=server_name)


def _replay(conn: Connection, line: bytes) -> None:
    """Puts a line back in front of what the connection will read: the standard library's
    clients read a greeting on connecting, and here the library has read it already (before
    TLS, where it is not to be trusted; or inside TLS for implicit TLS). The replayed line carries
    no capabilities, so the client asks for them inside TLS."""
    with conn._lock:
        conn._rbuf = line + conn._rbuf


class _Socket:
    """The connection as the standard library's clients use their socket; ``close()`` and
    ``shutdown()`` behave as a socket's do: they end it whatever the peer did (close_notify is
    sent when it can be), and never raise."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)

    def shutdown(self, how: int) -> None:
        try:
            self._conn.shutdown(how)
        except (Error, OSError, ValueError):
            pass

    def close(self) -> None:
        try:
            self._conn.close()
        except (Error, OSError, ValueError):
            pass
        finally:
            self._conn.free()


class SMTP(smtplib.SMTP):
    """``smtplib.SMTP`` upgraded by the library: submission with STARTTLS unless ``protocol``
    says otherwise (``"smtp"``, ``"smtps"``, ``"lmtp"``)."""

    def __init__(self, host: str, port: int | None = None, *, config: Config | None = None,
                 server_name: str | None = None, protocol: _ProtocolArg | None = None,
                 local_hostname: str | None = None) -> None:
        self._starttls_args = (host, port, protocol, config, server_name)
        super().__init__(host, port or 0, local_hostname=local_hostname)

    def connect(self, host: str = "localhost", port: int = 0,
                source_address: _Address | None = None) -> tuple[int, bytes]:
        """Connects and upgrades through the library; the server's greeting was read there."""
        _, port_arg, protocol, config, server_name = self._starttls_args
        self._host = host
        conn = _upgraded(Protocol.SUBMISSION, host, port or port_arg, protocol, config,
                         server_name)
        # _Socket stands in for the socket the standard library's stubs expect (duck-typed).
        self.sock = cast("socket.socket", _Socket(conn))
        self.file = None
        greeting = (conn.greeting or "220 ready").encode("utf-8", "replace")
        code = int(greeting[:3]) if greeting[:3].isdigit() else 220
        return code, greeting[4:]

    def starttls(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise smtplib.SMTPException("the connection is already encrypted (starttls.stdlib)")


class IMAP4(imaplib.IMAP4):
    """``imaplib.IMAP4`` upgraded by the library: IMAP with STARTTLS unless ``protocol`` says
    ``"imaps"``."""

    def __init__(self, host: str, port: int | None = None, *, config: Config | None = None,
                 server_name: str | None = None, protocol: _ProtocolArg | None = None) -> None:
        self._starttls_args = (protocol, config, server_name)
        super().__init__(host, port or 0)

    def open(self, host: str = "", port: int = 0, timeout: float | None = None) -> None:
        """Connects and upgrades through the library."""
        protocol, config, server_name = self._starttls_args
        self.host, self.port = host, port
        conn = _upgraded(Protocol.IMAP, host, port, protocol, config, server_name)
        _replay(conn, b"* OK TLS established by starttls\r\n")
        self.sock = cast("socket.socket", _Socket(conn))
        self.file = conn.makefile("rb")
        self._tls_established = True

    def starttls(self, ssl_context: Any | None = None) -> NoReturn:
        raise self.error("the connection is already encrypted (starttls.stdlib)")


class POP3(poplib.POP3):
    """``poplib.POP3`` upgraded by the library: POP3 with STLS unless ``protocol`` says
    ``"pop3s"``."""

    def __init__(self, host: str, port: int | None = None, *, config: Config | None = None,
                 server_name: str | None = None, protocol: _ProtocolArg | None = None) -> None:
        self._starttls_args = (protocol, config, server_name)
        super().__init__(host, port or 0)

    def _create_socket(self, timeout: float) -> socket.socket:
        protocol, config, server_name = self._starttls_args
        conn = _upgraded(Protocol.POP3, self.host, self.port, protocol, config, server_name)
        _replay(conn, b"+OK TLS established by starttls\r\n")
        self._tls_established = True
        return cast("socket.socket", _Socket(conn))

    def stls(self, context: ssl.SSLContext | None = None) -> NoReturn:
        raise poplib.error_proto("the connection is already encrypted (starttls.stdlib)")

