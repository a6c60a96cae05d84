"""Test helpers: a throw-away PKI made with the openssl CLI, and a scripted one-connection
server on 127.0.0.1 that speaks a plaintext dialog and then TLS (Python's ssl module)."""

import os
import shutil
import socket
import ssl
import subprocess
import threading
import time

__all__ = ["Certs", "make_certs", "ScriptedServer", "tagged", "server_context"]


class Certs:
    """Paths of the generated PEM files, and the server certificate in DER."""

    def __init__(self, directory):
        self.dir = directory
        self.ca = os.path.join(directory, "ca.pem")
        self.ca_key = os.path.join(directory, "ca.key")
        self.other_ca = os.path.join(directory, "other-ca.pem")
        self.server = os.path.join(directory, "server.pem")
        self.server_key = os.path.join(directory, "server.key")
        self.client = os.path.join(directory, "client.pem")
        self.client_key = os.path.join(directory, "client.key")
        self.server_der = None


def _openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.PIPE, timeout=30)


def _make_ca(directory, name, cn):
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "2", "-subj", f"/CN={cn}",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=directory)


def _make_leaf(directory, name, cn, extensions):
    ext = os.path.join(directory, f"{name}.ext")
    with open(ext, "w") as f:
        f.write("basicConstraints=critical,CA:FALSE\n"
                "keyUsage=critical,digitalSignature\n" + extensions)
    _openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={cn}", cwd=directory)
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", "-extfile", ext,
             cwd=directory)


def make_certs(directory):
    """A test CA, a second unrelated CA, a server certificate for localhost and 127.0.0.1, and
    a client certificate, all signed with the openssl CLI. Needs `openssl` on PATH."""
    if shutil.which("openssl") is None:
        raise RuntimeError("the openssl command is needed to make test certificates")
    _make_ca(directory, "ca", "starttls test CA")
    _make_ca(directory, "other-ca", "some other CA")
    _make_leaf(directory, "server", "localhost",
               "extendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n")
    _make_leaf(directory, "client", "test client", "extendedKeyUsage=clientAuth\n")
    certs = Certs(directory)
    with open(certs.server) as f:
        certs.server_der = ssl.PEM_cert_to_DER_cert(f.read())
    return certs


def server_context(certs, *, client_ca=None, alpn=None, max_version=None):
    """An ssl server context with the test server certificate."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(certs.server, certs.server_key)
    if client_ca:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(client_ca)
    if alpn:
        ctx.set_alpn_protocols(alpn)
    if max_version is not None:
        ctx.maximum_version = max_version
    return ctx


def tagged(text):
    """A reply step that answers the last IMAP command with its own tag: ``tag text``."""
    return lambda server: server.last_tag + b" " + text + b"\r\n"


class ScriptedServer:
    """Accepts one connection on 127.0.0.1 (port 0) and plays a script in a thread.

    Steps (tuples):
      ("send", data)      send bytes, or call ``data(server)`` for them
      ("expect", prefix)  read one line; it must start with ``prefix`` (case-insensitive)
      ("command", prefix) read an IMAP command: ``tag prefix...``; the tag goes to ``last_tag``
      ("tls",)            TLS handshake as the server (with ``context``)
      ("shutdown",)       TLS close_notify, then wait briefly for the peer's
      ("hold",)           say nothing until the client closes (or ``timeout``)
      ("eof",)            the client must close without sending anything more

    ``implicit_tls`` runs the handshake straight after accept. Everything received is kept
    in ``received`` as (encrypted, line) pairs; a failed step lands in ``error`` (the test
    asserts on it), and ``saw_eof`` says whether the client closed the socket.
    """

    def __init__(self, script, context=None, *, implicit_tls=False, timeout=5.0):
        self.script = list(script)
        self.context = context
        self.implicit_tls = implicit_tls
        self.timeout = timeout
        self.received = []
        self.error = None
        self.saw_eof = False
        self.tls_version = None
        self.client_cert = None
        self.alpn = None
        self.last_tag = b""
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
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
        """Waits for the script to end (at most ``timeout`` more seconds)."""
        if self._thread.is_alive():
            self._thread.join(self.timeout + 1)
        self._listener.close()
        return self

    def lines(self, encrypted=None):
        """The received lines (str), all or only those with the given encryption."""
        return [l for e, l in self.received if encrypted is None or e == encrypted]

    # -- the thread --------------------------------------------------------------------------

    def _run(self):
        sock = None
        try:
            sock, _ = self._listener.accept()
            sock.settimeout(self.timeout)
            if self.implicit_tls:
                sock = self._tls(sock)
            for step in self.script:
                sock = self._step(sock, step)
        except Exception as e:  # recorded for the test to assert on
            self.error = e
        finally:
            if sock is not None:
                sock.close()

    def _tls(self, sock):
        tls = self.context.wrap_socket(sock, server_side=True)
        self.tls_version = tls.version()
        self.client_cert = tls.getpeercert(binary_form=True)
        self.alpn = tls.selected_alpn_protocol()
        return tls

    def _step(self, sock, step):
        kind = step[0]
        if kind == "send":
            data = step[1](self) if callable(step[1]) else step[1]
            sock.sendall(data)
        elif kind == "expect":
            line = self._readline(sock)
            if line is None:
                raise AssertionError(f"expected {step[1]!r}, the client closed")
            if not line.upper().startswith(step[1].upper()):
                raise AssertionError(f"expected {step[1]!r}, got {line!r}")
        elif kind == "command":
            line = self._readline(sock)
            if line is None:
                raise AssertionError(f"expected a tagged {step[1]!r}, the client closed")
            tag, _, rest = line.partition(b" ")
            if not tag or not rest.upper().startswith(step[1].upper()):
                raise AssertionError(f"expected a tagged {step[1]!r}, got {line!r}")
            self.last_tag = tag
        elif kind == "tls":
            sock = self._tls(sock)
        elif kind == "shutdown":
            sock.settimeout(1.0)
            try:
                sock = sock.unwrap()
            except (OSError, ssl.SSLError):
                pass
        elif kind in ("hold", "eof"):
            deadline = time.monotonic() + self.timeout
            while time.monotonic() < deadline:
                line = self._readline(sock)
                if line is None:
                    break
                if kind == "eof":
                    raise AssertionError(f"expected the client to close, got {line!r}")
        else:
            raise ValueError(f"unknown step {step!r}")
        return sock

    def _readline(self, sock):
        """One line, byte by byte (so nothing after it is consumed); None on EOF."""
        line = bytearray()
        while not line.endswith(b"\n"):
            try:
                b = sock.recv(1)
            except ConnectionResetError:
                b = b""
            except socket.timeout:
                raise AssertionError(f"no complete line from the client within {self.timeout} s")
            if not b:
                self.saw_eof = True
                return None
            line += b
            if len(line) > 1 << 20:
                raise AssertionError("line too long")
        encrypted = isinstance(sock, ssl.SSLSocket)
        self.received.append((encrypted, bytes(line).rstrip(b"\r\n").decode("utf-8", "replace")))
        return bytes(line)
