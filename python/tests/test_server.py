"""Tests of the server side of the wrapper (ServerConfig, accept_socket, accept_tls_socket):
the library's own client against it, Python's smtplib/imaplib/poplib, and hostile clients.
Everything runs on 127.0.0.1 with ports from bind(0).

Run from the repository root:
    STARTTLS_LIBRARY=target/debug/libstarttls.so \
        python3 -m unittest discover -s python/tests -t python -v
"""

import imaplib
import os
import poplib
import shutil
import smtplib
import socket
import ssl
import sys
import tempfile
import threading
import unittest


import starttls  # noqa: E402

try:
    from . import _servers  # noqa: E402
except ImportError:
    import _servers  # noqa: E402

CERTS = None
_TMP = None


def setUpModule():
    global CERTS, _TMP
    _TMP = tempfile.mkdtemp(prefix="starttls-py-server-")
    CERTS = _servers.make_certs(_TMP)


def tearDownModule():
    if _TMP:
        shutil.rmtree(_TMP, ignore_errors=True)


def read_file(path):
    with open(path, "rb") as f:
        return f.read()


def server_config(**kw):
    """A server config with the test certificate and timeouts short enough for tests."""
    if "cert_pem" not in kw:
        kw.setdefault("cert_file", CERTS.server)
        kw.setdefault("key_file", CERTS.server_key)
    kw.setdefault("hostname", "mx.test")
    kw.setdefault("timeout", 5)
    return starttls.ServerConfig(**kw)


def client_config(**kw):
    kw.setdefault("ca_file", CERTS.ca)
    kw.setdefault("timeout", 5)
    return starttls.Config(**kw)


def client_context():
    """An ssl client context trusting the test CA (the certificate has an IP SAN)."""
    return ssl.create_default_context(cafile=CERTS.ca)


class Server:
    """Accepts one connection on 127.0.0.1 in a thread, runs ``accept(sock)`` (by default
    accept_socket with ``protocol``), then ``app(conn)``. The app's return value lands in
    ``result``, any exception in ``error``; the connection is freed and the socket closed."""

    def __init__(self, protocol=None, config=None, app=None, *, accept=None, timeout=10):
        self.protocol = protocol
        self.config = config if config is not None else server_config()
        self.app = app
        self.accept = accept or (lambda sock: starttls.accept_socket(sock, self.protocol,
                                                                     self.config))
        self.timeout = timeout
        self.result = None
        self.error = None
        self.conn_info = {}
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(1)
        self._listener.settimeout(timeout)
        self.port = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.join()

    def join(self):
        self._thread.join(self.timeout + 5)
        self._listener.close()
        if self._thread.is_alive():
            raise AssertionError("the server thread did not finish")
        return self

    def _run(self):
        sock = None
        try:
            sock, _ = self._listener.accept()
            with self.accept(sock) as conn:
                self.conn_info = {
                    "is_server": conn.is_server,
                    "peer_name": conn.peer_name,
                    "encrypted": conn.encrypted,
                    "verification": conn.verification,
                    "tls_version": conn.tls_version,
                    "peer_certificates": conn.peer_certificates,
                }
                if self.app is not None:
                    self.result = self.app(conn)
        except BaseException as e:  # recorded for the test to assert on
            self.error = e
        finally:
            if sock is not None:
                sock.close()


def line_app(answers, last):
    """A tiny line-based application after TLS: answers each command by its first word (or,
    for IMAP, the word after the tag, with ``TAG`` in the answer replaced by the tag). Stops
    after answering ``last``, or when the client closes. Returns the commands it saw."""

    def app(conn):
        seen = []
        while True:
            line = conn.readline().decode("utf-8", "replace").rstrip("\r\n")
            if not line:
                return seen
            seen.append(line)
            words = line.split(" ")
            tag = None
            word = words[0].upper()
            if word not in answers and len(words) > 1:
                tag, word = words[0], words[1].upper()
            if word not in answers:
                raise AssertionError(f"unexpected command {line!r}")
            reply = answers[word]
            if tag is not None:
                reply = reply.replace("TAG", tag)
            conn.sendall(reply.encode())
            if word == last:
                return seen

    return app


def recv_until_closed(sock):
    """Everything the peer sends until it closes (or the socket times out)."""
    out = b""
    while True:
        try:
            data = sock.recv(4096)
        except (socket.timeout, ConnectionResetError):
            return out
        if not data:
            return out
        out += data


class LibraryClientTests(unittest.TestCase):
    """starttls.connect against accept_socket, a line each way inside TLS."""

    def _round_trip(self, protocol):
        def app(conn):
            conn.sendall(b"from server\r\n")
            return conn.readline()

        with Server(protocol, app=app) as srv:
            with starttls.connect(protocol, "127.0.0.1", srv.port, server_name="localhost",
                                  config=client_config()) as conn:
                self.assertTrue(conn.encrypted)
                self.assertFalse(conn.is_server)
                self.assertIsNone(conn.peer_name)
                self.assertEqual(conn.verification, "verified")
                self.assertEqual(conn.readline(), b"from server\r\n")
                conn.sendall(b"from client\r\n")
                client_side = conn
                capabilities = conn.capabilities
        self.assertIsNone(srv.error, f"{protocol}: {srv.error!r}")
        self.assertEqual(srv.result, b"from client\r\n")
        self.assertTrue(srv.conn_info["is_server"])
        self.assertTrue(srv.conn_info["encrypted"])
        self.assertEqual(srv.conn_info["verification"], "no-peer-certificate")
        self.assertEqual(srv.conn_info["peer_certificates"], [])
        self.assertTrue(client_side.freed)
        return srv, capabilities

    def test_smtp(self):
        srv, _ = self._round_trip("smtp")
        self.assertEqual(srv.conn_info["peer_name"], "[127.0.0.1]")

    def test_imap(self):
        srv, _ = self._round_trip("imap")
        self.assertIsNone(srv.conn_info["peer_name"])

    def test_pop3(self):
        self._round_trip("pop3")

    def test_nntp(self):
        self._round_trip("nntp")

    def test_ftp(self):
        self._round_trip("ftp")

    def test_sieve(self):
        _, capabilities = self._round_trip("sieve")
        # The capabilities the server re-sends after TLS were read by the client.
        self.assertTrue(capabilities, capabilities)

    def test_quit_sends_the_protocols_goodbye(self):
        for protocol, expected in (("smtp", b"QUIT\r\n"), ("pop3", b"QUIT\r\n")):
            def app(conn):
                line = conn.readline()
                conn.sendall(b"221 bye\r\n" if protocol == "smtp" else b"+OK bye\r\n")
                return line

            with Server(protocol, app=app) as srv:
                with starttls.connect(protocol, "127.0.0.1", srv.port, server_name="localhost",
                                      config=client_config()) as conn:
                    conn.quit()
            self.assertIsNone(srv.error, f"{protocol}: {srv.error!r}")
            self.assertEqual(srv.result, expected)

    def test_authenticate_inside_tls(self):
        def app(conn):
            seen = []
            for reply in (b"250-mx\r\n250 AUTH PLAIN\r\n", b"235 2.7.0 ok\r\n"):
                seen.append(conn.readline())
                conn.sendall(reply)
            return seen

        with Server("submission", app=app) as srv:
            with starttls.connect("submission", "127.0.0.1", srv.port, server_name="localhost",
                                  config=client_config()) as conn:
                conn.authenticate("alice", "secret")
        self.assertIsNone(srv.error, repr(srv.error))
        self.assertEqual(srv.result[1], b"AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n")

        def refusing(conn):
            conn.readline()
            conn.sendall(b"250-mx\r\n250 AUTH PLAIN\r\n")
            conn.readline()
            conn.sendall(b"535 5.7.8 no\r\n")

        with Server("submission", app=refusing) as srv:
            with starttls.connect("submission", "127.0.0.1", srv.port, server_name="localhost",
                                  config=client_config()) as conn:
                with self.assertRaises(starttls.AuthenticationError) as cm:
                    conn.authenticate("alice", "secret")
                self.assertIn("535 5.7.8", str(cm.exception))
                self.assertNotIn("secret", str(cm.exception))

    def test_client_certificate_required(self):
        cfg = server_config(client_ca_file=CERTS.ca, client_auth="required")
        with Server("smtp", cfg, app=lambda conn: conn.readline()) as srv:
            with starttls.connect("smtp", "127.0.0.1", srv.port, server_name="localhost",
                                  config=client_config(client_cert=CERTS.client,
                                                       client_key=CERTS.client_key)) as conn:
                conn.sendall(b"hello\r\n")
        self.assertIsNone(srv.error)
        self.assertEqual(srv.result, b"hello\r\n")
        self.assertEqual(srv.conn_info["verification"], "verified")
        self.assertEqual(srv.conn_info["peer_certificates"][0],
                         ssl.PEM_cert_to_DER_cert(read_file(CERTS.client).decode()))

    def test_pem_certificate_alpn_and_log(self):
        seen = []
        cfg = server_config(cert_pem=read_file(CERTS.server), key_pem=read_file(CERTS.server_key),
                            alpn=["smtp-test"], min_tls_version="1.3",
                            log=lambda d, enc, line: seen.append((d, enc, line)))
        with Server("smtp", cfg, app=lambda conn: conn.alpn) as srv:
            with starttls.connect("smtp", "127.0.0.1", srv.port, server_name="localhost",
                                  config=client_config(alpn=[b"smtp-test"])) as conn:
                self.assertEqual(conn.alpn, b"smtp-test")
                self.assertEqual(conn.tls_version, "TLSv1.3")
                self.assertTrue(conn.greeting.startswith("220 mx.test"), conn.greeting)
        self.assertIsNone(srv.error)
        self.assertEqual(srv.result, b"smtp-test")
        self.assertIn(("received", False, "STARTTLS"), seen)
        self.assertTrue(any(d == "sent" and line.startswith("220 mx.test")
                            for d, _, line in seen), seen)


class StdlibClientTests(unittest.TestCase):
    """Python's own clients against accept_socket, with a tiny application after TLS."""

    def test_smtplib(self):
        app = line_app({"EHLO": "250-mx.test\r\n250 AUTH PLAIN\r\n", "QUIT": "221 bye\r\n"},
                       "QUIT")
        with Server("smtp", app=app) as srv:
            with smtplib.SMTP("127.0.0.1", srv.port, timeout=5) as s:
                code, _ = s.starttls(context=client_context())
                self.assertEqual(code, 220)
                code, _ = s.ehlo()
                self.assertEqual(code, 250)
                self.assertTrue(s.has_extn("auth"))
                code, _ = s.quit()
                self.assertEqual(code, 221)
        self.assertIsNone(srv.error, repr(srv.error))
        self.assertEqual([l.split()[0].upper() for l in srv.result], ["EHLO", "QUIT"])
        self.assertTrue(srv.conn_info["peer_name"])  # smtplib's EHLO name

    def test_imaplib(self):
        app = line_app({"CAPABILITY": "* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\nTAG OK done\r\n",
                        "LOGOUT": "* BYE logging out\r\nTAG OK bye\r\n"}, "LOGOUT")
        with Server("imap", app=app) as srv:
            m = imaplib.IMAP4("127.0.0.1", srv.port, timeout=5)
            try:
                self.assertIn("STARTTLS", m.capabilities)
                typ, _ = m.starttls(ssl_context=client_context())
                self.assertEqual(typ, "OK")
                self.assertIn("AUTH=PLAIN", m.capabilities)
                self.assertNotIn("STARTTLS", m.capabilities)
            except BaseException:
                m.shutdown()
                raise
            typ, _ = m.logout()  # also closes the socket
            self.assertEqual(typ, "BYE")
        self.assertIsNone(srv.error, repr(srv.error))
        self.assertEqual([l.split()[1].upper() for l in srv.result], ["CAPABILITY", "LOGOUT"])

    def test_poplib(self):
        app = line_app({"QUIT": "+OK bye\r\n"}, "QUIT")
        with Server("pop3", app=app) as srv:
            p = poplib.POP3("127.0.0.1", srv.port, timeout=5)
            try:
                self.assertTrue(p.stls(context=client_context()).startswith(b"+OK"))
                self.assertEqual(p.quit(), b"+OK bye")
            finally:
                p.close()
        self.assertIsNone(srv.error, repr(srv.error))
        self.assertEqual(srv.result, ["QUIT"])


class HostileClientTests(unittest.TestCase):
    def test_smtp_pipelined_after_starttls_is_injection(self):
        with Server("smtp") as srv:
            with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as c:
                greeting = c.recv(4096)
                self.assertTrue(greeting.startswith(b"220 mx.test"), greeting)
                c.sendall(b"EHLO x\r\nSTARTTLS\r\nMAIL FROM:<e@x>\r\n")
                rest = recv_until_closed(c)
        self.assertIsInstance(srv.error, starttls.InjectionError, repr(srv.error))
        self.assertEqual(srv.error.code, 304)
        self.assertIn(b"250 STARTTLS", rest)
        self.assertNotIn(b"220 2.0.0", rest)

    def test_accept_tls_socket_with_buffered_bytes_is_injection(self):
        cfg = server_config()
        with socket.socket() as listener:
            listener.bind(("127.0.0.1", 0))
            listener.listen(1)
            with socket.create_connection(listener.getsockname(), timeout=5) as c:
                sock, _ = listener.accept()
                with sock:
                    with self.assertRaises(starttls.InjectionError) as cm:
                        starttls.accept_tls_socket(sock, cfg, b"junk")
                    self.assertEqual(cm.exception.name, "STARTTLS_ERR_INJECTION")
                    # Borrowed: still ours, open and connected.
                    self.assertGreaterEqual(sock.fileno(), 0)
                    sock.sendall(b"still here\r\n")
                    self.assertEqual(c.recv(100), b"still here\r\n")

    def test_accept_tls_socket_after_our_own_dialog(self):
        def accept(sock):
            sock.sendall(b"220 go ahead\r\n")
            return starttls.accept_tls_socket(sock, self.cfg, take_ownership=True)

        self.cfg = server_config()
        with Server(accept=accept, app=lambda conn: conn.readline()) as srv:
            with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as c:
                self.assertEqual(c.recv(100), b"220 go ahead\r\n")
                with starttls.handshake_socket(c, "localhost", config=client_config()) as conn:
                    conn.sendall(b"inside\r\n")
        self.assertIsNone(srv.error, repr(srv.error))
        self.assertEqual(srv.result, b"inside\r\n")


class ServerConfigTests(unittest.TestCase):
    def test_no_certificate(self):
        with self.assertRaises(starttls.ConfigError) as cm:
            starttls.ServerConfig()
        self.assertEqual(cm.exception.code, 101)

    def test_missing_certificate_file(self):
        with self.assertRaises(starttls.ConfigError) as cm:
            starttls.ServerConfig(cert_file="/nonexistent/cert.pem", key_file=CERTS.server_key)
        self.assertIn("/nonexistent/cert.pem", str(cm.exception))

    def test_bad_values(self):
        with self.assertRaises(ValueError):
            server_config(client_auth="sometimes")
        with self.assertRaises(ValueError):
            starttls.ServerConfig(cert_file=CERTS.server)
        with self.assertRaises(ValueError):
            server_config(min_tls_version="1.1")
        with self.assertRaises(ValueError):
            server_config(timeout=0)
        with self.assertRaises(starttls.InvalidArgumentError):
            server_config(alpn=[b""])
        with self.assertRaises(starttls.ConfigError):
            server_config(client_ca_file="/nonexistent/ca.pem")

    def test_sni_certificate_and_close(self):
        cfg = server_config(sni_certs=[("localhost", read_file(CERTS.server),
                                        read_file(CERTS.server_key))],
                            session_tickets=True, greeting="hi there")
        cfg.close()
        cfg.close()
        with socket.socket() as s:
            with self.assertRaises(ValueError):
                starttls.accept_socket(s, "smtp", cfg)

    def test_config_must_be_a_server_config(self):
        with socket.socket() as s:
            with self.assertRaises(TypeError):
                starttls.accept_socket(s, "smtp", client_config())


if __name__ == "__main__":
    unittest.main()
