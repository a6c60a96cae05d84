"""Tests of the ctypes wrapper against the real library and scripted servers on 127.0.0.1.

Run from the repository root against the checkout's package and a library you built:
    STARTTLS_LIBRARY=target/debug/libstarttls.so \
        python3 -m unittest discover -s python/tests -t python -v
or against the installed package (python/check-package.sh does this in a fresh venv):
    cd /tmp && python3 -m unittest discover -s REPO/python/tests -t REPO/python/tests -v
"""

import base64
import errno
import io
import hashlib
import hmac
import builtins
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import unittest


import starttls  # noqa: E402

# The package under test: the checkout's (run from the repository) or the installed one.
_PYTHON_DIR = os.path.dirname(os.path.dirname(os.path.abspath(starttls.__file__)))

try:
    from . import _servers  # noqa: E402
except ImportError:
    import _servers  # noqa: E402

ScriptedServer = _servers.ScriptedServer
tagged = _servers.tagged

CERTS = None
_TMP = None


def setUpModule():
    global CERTS, _TMP
    _TMP = tempfile.mkdtemp(prefix="starttls-py-")
    CERTS = _servers.make_certs(_TMP)


def tearDownModule():
    if _TMP:
        shutil.rmtree(_TMP, ignore_errors=True)


def config(**kw):
    """A config that trusts the test CA, with timeouts short enough for tests."""
    kw.setdefault("ca_file", CERTS.ca)
    kw.setdefault("timeout", 5)
    return starttls.Config(**kw)


def context(**kw):
    return _servers.server_context(CERTS, **kw)


# Reusable dialog pieces.
SMTP_GREETING = ("send", b"220 mx.test ESMTP ready\r\n")
SMTP_EHLO_TLS = ("send", b"250-mx.test hello\r\n250-PIPELINING\r\n250 STARTTLS\r\n")
SMTP_EHLO_PLAIN = ("send", b"250-mx.test hello\r\n250-PIPELINING\r\n250 8BITMIME\r\n")
SMTP_UPGRADE = [SMTP_GREETING, ("expect", b"EHLO "), SMTP_EHLO_TLS, ("expect", b"STARTTLS"),
                ("send", b"220 2.0.0 Ready to start TLS\r\n"), ("tls",)]
SMTP_QUIT = [("expect", b"QUIT"), ("send", b"221 2.0.0 Bye\r\n"), ("shutdown",)]


def recv_line(sock):
    """One line from a plain socket, byte by byte (nothing after it is consumed)."""
    line = b""
    while not line.endswith(b"\n"):
        b = sock.recv(1)
        if not b:
            break
        line += b
    return line


class LibraryTests(unittest.TestCase):
    def test_version(self):
        v = starttls.version()
        self.assertTrue(v.startswith("starttls "), v)
        self.assertIn(starttls.__version__, v)
        self.assertIn(starttls.crypto_provider(), ("aws-lc-rs", "ring"))

    def test_result_names_and_descriptions(self):
        self.assertEqual(starttls.result_name(0), "STARTTLS_OK")
        for code in starttls.Result:
            self.assertEqual(starttls.result_name(code), "STARTTLS_" + code.name)
            self.assertTrue(starttls.result_description(code))
        self.assertEqual(starttls.result_name(999), "STARTTLS_ERR_UNKNOWN")
        self.assertEqual(starttls.ERR_INJECTION, 304)

    def test_error_classes_by_code(self):
        expected = {
            100: starttls.InvalidArgumentError, 101: starttls.ConfigError,
            102: starttls.PanicError, 103: starttls.BufferTooSmallError,
            200: starttls.ConnectionIOError, 201: starttls.TimeoutError,
            202: starttls.ClosedError, 203: starttls.ResolveError,
            300: starttls.NotOfferedError, 301: starttls.RefusedError,
            302: starttls.DowngradeError, 303: starttls.ProtocolError,
            304: starttls.InjectionError, 305: starttls.NotEncryptedError,
            306: starttls.AuthenticationError, 400: starttls.TLSError,
            401: starttls.CertificateError,
        }
        self.assertEqual(set(expected), {int(c) for c in starttls.Result if c})
        for code, cls in expected.items():
            self.assertIs(starttls.error_class(code), cls)
            self.assertTrue(issubclass(cls, starttls.Error))
            self.assertEqual(cls.code, code)
        self.assertIs(starttls.error_class(999), starttls.Error)
        self.assertTrue(issubclass(starttls.TimeoutError, builtins.TimeoutError))
        self.assertTrue(issubclass(starttls.ConnectionIOError, OSError))

    def test_protocols(self):
        # Every protocol the wrapper names is supported by the library, under the same scheme,
        # and every protocol the library supports is named by the wrapper.
        known = {int(p) for p in starttls.Protocol}
        for code in range(1, 64):
            if starttls.supports_protocol(code):
                self.assertIn(code, known, starttls.protocol_name(code))
        for p in starttls.Protocol:
            self.assertTrue(starttls.supports_protocol(p), p)
            self.assertEqual(starttls.protocol_name(p), p.name.lower().replace("_", "-"))
            self.assertIs(starttls._protocol(p.name.lower().replace("_", "-")), p)
        self.assertIs(starttls._protocol("postgres-direct"), starttls.Protocol.POSTGRES_DIRECT)
        self.assertFalse(starttls.supports_protocol(99))
        self.assertIsNone(starttls.protocol_name(99))
        self.assertEqual(starttls.default_port("imaps"), 993)
        self.assertEqual(starttls.default_port(starttls.Protocol.LMTP), 24)
        self.assertIsNone(starttls.default_port("tls"))

    def _run_python(self, code, env):
        return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                              text=True, timeout=30)

    def test_loader_reports_where_it_looked(self):
        env = dict(os.environ, STARTTLS_LIBRARY="/nonexistent/libstarttls.so",
                   PYTHONPATH=_PYTHON_DIR)
        r = self._run_python("import starttls", env)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("ImportError", r.stderr)
        self.assertIn("/nonexistent/libstarttls.so", r.stderr)
        self.assertIn("STARTTLS_LIBRARY", r.stderr)

    def test_loader_finds_a_library_beside_the_package(self):
        with tempfile.TemporaryDirectory() as tmp:
            pkg = os.path.join(tmp, "starttls")
            shutil.copytree(os.path.join(_PYTHON_DIR, "starttls"), pkg,
                            ignore=shutil.ignore_patterns("__pycache__", "*.so*"))
            os.symlink(os.path.abspath(starttls.library_path),
                       os.path.join(pkg, "libstarttls.so.0"))
            env = {k: v for k, v in os.environ.items() if k != "STARTTLS_LIBRARY"}
            env["PYTHONPATH"] = tmp
            r = self._run_python("import starttls; print(starttls.library_path); "
                                 "print(starttls.version())", env)
            self.assertEqual(r.returncode, 0, r.stderr)
            path, version = r.stdout.splitlines()
            self.assertEqual(path, os.path.join(pkg, "libstarttls.so.0"))
            self.assertEqual(version, starttls.version())


class BadInputTests(unittest.TestCase):
    def test_unknown_protocol_name(self):
        with self.assertRaises(ValueError):
            starttls.connect("gopher", "127.0.0.1", 70)

    def test_unknown_protocol_number_is_refused_by_the_library(self):
        with self.assertRaises(starttls.InvalidArgumentError) as cm:
            starttls.connect(99, "127.0.0.1", 1, config=config())
        self.assertEqual(cm.exception.code, 100)
        self.assertEqual(cm.exception.name, "STARTTLS_ERR_INVALID_ARGUMENT")
        self.assertIn("99", cm.exception.message)

    def test_tls_needs_a_port(self):
        with self.assertRaises(ValueError):
            starttls.connect(starttls.Protocol.TLS, "127.0.0.1")
        with self.assertRaises(ValueError):
            starttls.connect("smtp", "127.0.0.1", 70000)

    def test_unreadable_ca_file(self):
        with self.assertRaises(starttls.ConfigError) as cm:
            starttls.Config(ca_file="/nonexistent")
        self.assertEqual(cm.exception.code, 101)
        self.assertEqual(cm.exception.name, "STARTTLS_ERR_CONFIG")
        self.assertIn("/nonexistent", str(cm.exception))

    def test_ca_pem_without_certificates(self):
        with self.assertRaises(starttls.ConfigError):
            starttls.Config(ca_pem=b"not a certificate")

    def test_ca_pem_bytes_are_accepted(self):
        with open(CERTS.ca, "rb") as f:
            starttls.Config(ca_pem=f.read()).close()

    def test_bad_values(self):
        with self.assertRaises(ValueError):
            starttls.Config(timeout=0)
        with self.assertRaises(ValueError):
            starttls.Config(timeout={"greeting": 1})
        with self.assertRaises(ValueError):
            starttls.Config(min_tls_version="1.1")
        with self.assertRaises(ValueError):
            starttls.Config(policy=7)
        with self.assertRaises(ValueError):
            starttls.Config(client_cert=CERTS.client)
        with self.assertRaises(starttls.InvalidArgumentError):
            starttls.Config(alpn=[b""])  # the library checks 1..255 bytes
        with self.assertRaises(starttls.InvalidArgumentError):
            starttls.Config(alpn=[b"x" * 256])

    def test_closed_config_and_socket(self):
        cfg = config()
        cfg.close()
        cfg.close()
        with self.assertRaises(ValueError):
            starttls.connect("smtp", "127.0.0.1", 25, config=cfg)
        s = socket.socket()
        s.close()
        with self.assertRaises(ValueError):
            starttls.upgrade_socket(s, "smtp", "localhost", config=config())

    def test_connection_refused(self):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()  # nothing listens there now
        with self.assertRaises(starttls.Error) as cm:
            starttls.connect("smtp", "127.0.0.1", port, config=config())
        self.assertIsInstance(cm.exception, starttls.ConnectionIOError)
        self.assertIsInstance(cm.exception, OSError)
        self.assertEqual(cm.exception.errno, errno.ECONNREFUSED)


class SocketInterfaceTests(unittest.TestCase):
    """A Connection used as a socket: what smtplib, imaplib and poplib call."""

    def test_recv_send_makefile_timeouts_and_shutdown(self):
        script = SMTP_UPGRADE + [
            ("expect", b"EHLO"), ("send", b"250-mx.test\r\n250 PIPELINING\r\n"),
            ("expect", b"NOOP"), ("send", b"250 2.0.0 one\r\n"),
            ("expect", b"NOOP"), ("send", b"250 2.0.0 two\r\n"),
            ("expect", b"QUIT"), ("send", b"221 2.0.0 Bye\r\n"), ("shutdown",),
        ]
        with ScriptedServer(script, context()) as srv:
            with starttls.connect("smtp", "localhost", srv.port, config=config()) as c:
                self.assertEqual(c.send(b"EHLO client\r\n"), 13)
                self.assertEqual(c.readline(), b"250-mx.test\r\n")
                # The rest of the reply came in the same record: buffered, and select() would
                # not see it; pending() does.
                self.assertEqual(c.pending(), len(b"250 PIPELINING\r\n"))
                f = c.makefile("rb")
                self.assertEqual(f.readline(), b"250 PIPELINING\r\n")
                self.assertEqual(c.pending(), 0)
                c.sendall(b"NOOP\r\n")
                buf = bytearray(64)
                n = c.recv_into(buf)
                self.assertEqual(bytes(buf[:n]), b"250 2.0.0 one\r\n")
                # Non-blocking: nothing to read now is BlockingIOError, not a hang.
                c.settimeout(0)
                self.assertEqual(c.gettimeout(), 0.0)
                self.assertFalse(c.getblocking())
                with self.assertRaises(BlockingIOError):
                    c.recv(100)
                c.settimeout(5)
                self.assertTrue(c.getblocking())
                self.assertEqual(c.gettimeout(), 5.0)
                text = c.makefile("rw", encoding="ascii", newline="")
                text.write("NOOP\r\n")
                text.flush()
                self.assertEqual(text.readline(), "250 2.0.0 two\r\n")
                c.sendall(b"QUIT\r\n")
                self.assertEqual(c.recv(100), b"221 2.0.0 Bye\r\n")
                with self.assertRaises(ValueError):
                    c.recv(10, socket.MSG_PEEK)
                c.shutdown(socket.SHUT_RDWR)
                c.settimeout(None)
                self.assertIsNone(c.gettimeout())
        self.assertIsNone(srv.error)

    def test_a_timeout_is_a_timeout_error_with_its_errno(self):
        script = SMTP_UPGRADE + [("hold",)]
        with ScriptedServer(script, context(), timeout=3) as srv:
            with starttls.connect("smtp", "localhost", srv.port, config=config()) as c:
                c.settimeout(0.2)
                with self.assertRaises(TimeoutError) as cm:
                    c.recv(10)
                self.assertEqual(cm.exception.errno, errno.ETIMEDOUT)
                c.free()


class SmtpTests(unittest.TestCase):
    def test_end_to_end(self):
        inside = b"250-mx.test\r\n250-PIPELINING\r\n250-AUTH PLAIN LOGIN\r\n250 SIZE 10240000\r\n"
        script = SMTP_UPGRADE + [("expect", b"EHLO "), ("send", inside)] + SMTP_QUIT
        with ScriptedServer(script, context()) as srv:
            with starttls.connect("smtp", "localhost", srv.port, config=config()) as conn:
                self.assertEqual(conn.greeting, "220 mx.test ESMTP ready")
                self.assertEqual(conn.capabilities_before_tls, ["PIPELINING", "STARTTLS"])
                self.assertIsNone(conn.capabilities)
                self.assertTrue(conn.starttls_offered)
                self.assertEqual(conn.fetch_capabilities(),
                                 ["PIPELINING", "AUTH PLAIN LOGIN", "SIZE 10240000"])
                self.assertEqual(conn.capabilities,
                                 ["PIPELINING", "AUTH PLAIN LOGIN", "SIZE 10240000"])
                facts = conn.certificate_facts
                self.assertIn("DNS:localhost", facts["names"])
                self.assertEqual(facts["sha256"], hashlib.sha256(CERTS.server_der).hexdigest())
                self.assertGreater(facts["not_after"], facts["not_before"])
                self.assertNotEqual(facts["spki_sha256"], facts["sha256"])
                conn.set_io_timeout(30)
                self.assertGreaterEqual(conn.cipher_bits(), 128)
                self.assertEqual(conn.pending(), 0)
                self.assertEqual(conn.write(b"QUIT\r\n"), 6)
                self.assertEqual(conn.read(1), b"2")
                # The rest of the reply is inside the library, where select() cannot see it.
                self.assertGreater(conn.pending(), 0)
                self.assertTrue(conn.readline().startswith(b"21 "))
                self.assertEqual(conn.read(), b"")  # the server's close_notify
                self.assertIn(conn.tls_version, ("TLSv1.2", "TLSv1.3"))
                self.assertEqual(conn.tls_version, srv.tls_version)
                self.assertTrue(conn.cipher.startswith("TLS"), conn.cipher)
                self.assertNotEqual(conn.cipher_id, 0)
                self.assertIsNone(conn.alpn)
                certs = conn.peer_certificates
                self.assertEqual(len(certs), 1)
                self.assertEqual(certs[0], CERTS.server_der)
                self.assertEqual(conn.verification, "verified")
                self.assertIsNone(conn.verification_problem)
                self.assertTrue(conn.encrypted)
                self.assertIsNone(conn.plaintext_reason)
                self.assertFalse(conn.resumed)
                self.assertGreaterEqual(conn.fileno(), 0)
            self.assertTrue(conn.freed)
            with self.assertRaises(ValueError):
                conn.read()
        self.assertIsNone(srv.error)
        self.assertEqual([e for e, _ in srv.received], [False, False, True, True])
        self.assertEqual(srv.lines(encrypted=False)[1], "STARTTLS")

    def test_a_forked_child_resolves_names(self):
        # The library keeps its name-lookup helper threads; a child of fork() has none of them
        # and must start its own rather than wait on the parent's.
        for _ in range(2):
            with ScriptedServer(SMTP_UPGRADE + SMTP_QUIT, context()) as srv:
                with starttls.connect("smtp", "localhost", srv.port, config=config()) as conn:
                    conn.quit()
            self.assertIsNone(srv.error)
        with ScriptedServer(SMTP_UPGRADE + SMTP_QUIT, context()) as srv:
            pid = os.fork()
            if pid == 0:
                code = 1
                try:
                    with starttls.connect("smtp", "localhost", srv.port, config=config()) as c:
                        c.quit()
                    code = 0
                finally:
                    os._exit(code)
            _, status = os.waitpid(pid, 0)
            self.assertEqual(os.waitstatus_to_exitcode(status), 0)
        self.assertIsNone(srv.error)

    def test_authenticate_with_scram_sha_256_checks_the_server(self):
        # The server side of SCRAM-SHA-256 (RFC 5802), written here with hashlib.
        salt, iterations, password = b"pepper", 4096, "pencil"
        salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
        state = {}

        def last_line(srv):
            return srv.received[-1][1]

        def server_first(srv):
            first = base64.b64decode(last_line(srv).split(" ")[2]).decode()
            state["gs2"], bare = first[:3], first[3:]
            state["bare"] = bare
            nonce = bare.split(",r=")[1] + "srv"
            state["first"] = f"r={nonce},s={base64.b64encode(salt).decode()},i={iterations}"
            return b"334 " + base64.b64encode(state["first"].encode()) + b"\r\n"

        def server_final(srv, wrong=False):
            final = base64.b64decode(last_line(srv)).decode()
            without_proof, proof = final.rsplit(",p=", 1)
            auth = ",".join([state["bare"], state["first"], without_proof]).encode()
            client_key = hmac.new(salted, b"Client Key", "sha256").digest()
            sig = hmac.new(hashlib.sha256(client_key).digest(), auth, "sha256").digest()
            if bytes(a ^ b for a, b in zip(base64.b64decode(proof), sig)) != client_key:
                return b"535 5.7.8 bad proof\r\n"
            key = hmac.new(salted, b"Server Key", "sha256").digest()
            v = hmac.new(key, auth + (b"x" if wrong else b""), "sha256").digest()
            return b"334 " + base64.b64encode(b"v=" + base64.b64encode(v)) + b"\r\n"

        for wrong in (False, True):
            script = SMTP_UPGRADE + [
                ("expect", b"EHLO"), ("send", b"250-mx.test\r\n250 AUTH PLAIN SCRAM-SHA-256\r\n"),
                ("expect", b"AUTH SCRAM-SHA-256 "), ("send", server_first),
                ("expect", b""), ("send", lambda srv, w=wrong: server_final(srv, w)),
            ] + ([("expect", b"*"), ("send", b"501 cancelled\r\n")] if wrong else
                 [("expect", b""), ("send", b"235 2.7.0 ok\r\n")]) + SMTP_QUIT
            with ScriptedServer(script, context()) as srv:
                with starttls.connect("submission", "localhost", srv.port, config=config()) as c:
                    if wrong:
                        with self.assertRaises(starttls.AuthenticationError) as cm:
                            c.authenticate("user", password)
                        self.assertIn("wrong server signature", str(cm.exception))
                        self.assertNotIn(password, str(cm.exception))
                    else:
                        outcome = c.authenticate("user", password)
                        self.assertEqual(outcome, starttls.AuthOutcome("SCRAM-SHA-256", None))
                        self.assertEqual(outcome.mechanism, "SCRAM-SHA-256")
                    c.quit()
            self.assertIsNone(srv.error)
            # The client could bind but the server offered no -PLUS: the `y` flag.
            self.assertEqual(state["gs2"], "y,,")

    def test_authenticate_token_reports_the_json_error_and_never_the_token(self):
        token = "ya29.python-secret"
        error = base64.b64encode(b'{"status":"invalid_token","scope":"mail"}')
        script = SMTP_UPGRADE + [
            ("expect", b"EHLO"), ("send", b"250-mx.test\r\n250 AUTH PLAIN OAUTHBEARER\r\n"),
            ("expect", b"AUTH OAUTHBEARER "), ("send", b"334 " + error + b"\r\n"),
            ("expect", b"AQ=="), ("send", b"535 5.7.8 Authentication failed\r\n"),
            ("expect", b"AUTH OAUTHBEARER "), ("send", b"235 2.7.0 ok\r\n"),
        ] + SMTP_QUIT
        with ScriptedServer(script, context()) as srv:
            with starttls.connect("submission", "localhost", srv.port, config=config()) as c:
                with self.assertRaises(starttls.AuthenticationError) as cm:
                    c.authenticate_token("alice", token)
                self.assertIn("status=invalid_token", str(cm.exception))
                self.assertNotIn(token, str(cm.exception))
                outcome = c.authenticate_token("alice", token, mechanism="OAUTHBEARER")
                self.assertEqual(outcome, starttls.AuthOutcome("OAUTHBEARER", None))
                c.quit()
        self.assertIsNone(srv.error)
        sent = base64.b64decode(srv.lines(encrypted=True)[1].split(" ")[2])
        self.assertEqual(sent, b"n,a=alice,\x01auth=Bearer " + token.encode() + b"\x01\x01")

    def test_key_log_only_when_asked_for(self):
        path = os.path.join(_TMP, "keys.log")
        old = os.environ.get("SSLKEYLOGFILE")
        os.environ["SSLKEYLOGFILE"] = path
        try:
            for asked in (False, True):
                with ScriptedServer(SMTP_UPGRADE + SMTP_QUIT, context()) as srv:
                    with starttls.connect("smtp", "localhost", srv.port,
                                          config=config(key_log=asked)) as c:
                        c.quit()
                self.assertEqual(os.path.exists(path), asked)
            with open(path) as f:
                self.assertIn("CLIENT_TRAFFIC_SECRET_0 ", f.read())
        finally:
            if old is None:
                del os.environ["SSLKEYLOGFILE"]
            else:
                os.environ["SSLKEYLOGFILE"] = old

    def test_capabilities_fetched_by_config_and_client_name(self):
        script = SMTP_UPGRADE + [("expect", b"EHLO client.test"),
                                 ("send", b"250-mx.test\r\n250 AUTH PLAIN\r\n")] + SMTP_QUIT
        with ScriptedServer(script, context()) as srv:
            cfg = config(fetch_capabilities=True, client_name="client.test")
            with starttls.connect(starttls.Protocol.SUBMISSION, "localhost", srv.port,
                                  config=cfg) as conn:
                self.assertEqual(conn.capabilities, ["AUTH PLAIN"])
                conn.sendall(memoryview(b"QUIT\r\n"))
                self.assertTrue(conn.readline().startswith(b"221"))
        self.assertIsNone(srv.error)
        self.assertEqual(srv.lines()[0], "EHLO client.test")

    def test_lmtp_uses_lhlo(self):
        script = [("send", b"220 lmtp.test LMTP\r\n"), ("expect", b"LHLO "),
                  ("send", b"250-lmtp.test\r\n250 STARTTLS\r\n"), ("expect", b"STARTTLS"),
                  ("send", b"220 go\r\n"), ("tls",), ("hold",)]
        with ScriptedServer(script, context()) as srv:
            with starttls.connect("lmtp", "localhost", srv.port, config=config()) as conn:
                self.assertTrue(conn.encrypted)
        self.assertIsNone(srv.error)

    def test_log_callback_sees_the_dialog(self):
        seen = []
        script = SMTP_UPGRADE + [("expect", b"EHLO"), ("send", b"250 mx.test\r\n"), ("hold",)]
        with ScriptedServer(script, context()) as srv:
            cfg = config(client_name="client.test",
                         log=lambda d, enc, line: seen.append((d, enc, line)))
            with starttls.connect("smtp", "localhost", srv.port, config=cfg) as conn:
                conn.fetch_capabilities()
        self.assertIsNone(srv.error)
        self.assertEqual(seen[0], ("received", False, "220 mx.test ESMTP ready"))
        self.assertIn(("sent", False, "EHLO client.test"), seen)
        self.assertIn(("sent", False, "STARTTLS"), seen)
        self.assertIn(("sent", True, "EHLO client.test"), seen)
        self.assertIn(("received", True, "250 mx.test"), seen)

    def test_stripped_starttls_raises_not_offered(self):
        script = [SMTP_GREETING, ("expect", b"EHLO"), SMTP_EHLO_PLAIN, ("eof",)]
        with ScriptedServer(script, context()) as srv:
            with self.assertRaises(starttls.NotOfferedError) as cm:
                starttls.connect("smtp", "localhost", srv.port, config=config())
        self.assertEqual(cm.exception.code, 300)
        self.assertIsNone(srv.error)  # nothing was sent after EHLO
        self.assertEqual(len(srv.received), 1)

    def test_454_raises_refused_with_the_reply(self):
        script = [SMTP_GREETING, ("expect", b"EHLO"), SMTP_EHLO_TLS, ("expect", b"STARTTLS"),
                  ("send", b"454 4.7.0 TLS not available due to temporary reason\r\n"),
                  ("eof",)]
        with ScriptedServer(script, context()) as srv:
            with self.assertRaises(starttls.RefusedError) as cm:
                starttls.connect("smtp", "localhost", srv.port, config=config())
        self.assertIn("454", str(cm.exception))
        self.assertIn("454 4.7.0 TLS not available", cm.exception.message)
        self.assertEqual(cm.exception.name, "STARTTLS_ERR_REFUSED")
        self.assertIsNone(srv.error)

    def test_bytes_after_the_go_ahead_raise_injection(self):
        script = [SMTP_GREETING, ("expect", b"EHLO"), SMTP_EHLO_TLS, ("expect", b"STARTTLS"),
                  ("send", b"220 2.0.0 go ahead\r\n250-injected\r\n250 AUTH PLAIN\r\n"),
                  ("hold",)]
        with ScriptedServer(script, context()) as srv:
            with self.assertRaises(starttls.InjectionError) as cm:
                starttls.connect("smtp", "localhost", srv.port, config=config())
        self.assertEqual(cm.exception.code, 304)
        self.assertIsNone(srv.error)

    def test_forged_go_ahead_queued_behind_ehlo_is_refused(self):
        script = [SMTP_GREETING, ("expect", b"EHLO"),
                  ("send", b"250-mx.test\r\n250 STARTTLS\r\n220 forged go ahead\r\n"), ("hold",)]
        with ScriptedServer(script, context()) as srv:
            with self.assertRaises(starttls.ProtocolError) as cm:
                starttls.connect("smtp", "localhost", srv.port, config=config())
        self.assertIn("unsolicited", str(cm.exception))
        self.assertEqual(srv.lines(), ["EHLO [127.0.0.1]"])  # STARTTLS was never sent

    def test_wrong_ca_raises_certificate_error(self):
        with ScriptedServer(SMTP_UPGRADE, context()) as srv:
            with self.assertRaises(starttls.CertificateError) as cm:
                starttls.connect("smtp", "localhost", srv.port,
                                 config=config(ca_file=CERTS.other_ca))
        self.assertEqual(cm.exception.code, 401)
        self.assertIsInstance(srv.error, ssl.SSLError)  # the client sent an alert
        # The rejected certificate can still be inspected: the chain as presented.
        self.assertEqual(cm.exception.peer_certificates[:1], [CERTS.server_der])

    def test_wrong_name_raises_certificate_error(self):
        with ScriptedServer(SMTP_UPGRADE, context()) as srv:
            with self.assertRaises(starttls.CertificateError):
                starttls.connect("smtp", "127.0.0.1", srv.port, config=config(),
                                 server_name="mail.example.com")

    def _spki_sha256(self):
        """SHA-256 of the server key's SubjectPublicKeyInfo, by the openssl CLI."""
        pub = subprocess.run(["openssl", "x509", "-in", CERTS.server, "-noout", "-pubkey"],
                             check=True, capture_output=True).stdout
        der = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "DER"], input=pub,
                             check=True, capture_output=True).stdout
        return hashlib.sha256(der).digest()

    def test_pin_sha256_is_the_key_digest_openssl_computes(self):
        pin = starttls.pin_sha256(CERTS.server_der)
        self.assertEqual(base64.b64decode(pin), self._spki_sha256())
        with self.assertRaises(ValueError):
            starttls.pin_sha256(b"not a certificate")

    def test_dane_ee_authenticates_under_another_name_and_an_unknown_ca(self):
        digest = self._spki_sha256()
        for record in (f"3 1 1 {digest.hex()}", (3, 1, 1, digest)):
            with ScriptedServer(SMTP_UPGRADE + [("hold",)], context()) as srv:
                cfg = config(ca_file=CERTS.other_ca)
                with starttls.connect("smtp", "127.0.0.1", srv.port, config=cfg,
                                      server_name="mail.example.com", tlsa=[record]) as conn:
                    self.assertEqual(conn.verification, "verified")
                    self.assertEqual(conn.dane, f"3 1 1 {digest.hex()}")
            self.assertIsNone(srv.error)

    def test_dane_record_that_matches_nothing_raises_with_the_servers_pin(self):
        wrong = bytes(32)
        with ScriptedServer(SMTP_UPGRADE, context()) as srv:
            with self.assertRaises(starttls.CertificateError) as cm:
                starttls.connect("smtp", "localhost", srv.port, config=config(),
                                 tlsa=[(3, 1, 1, wrong)])
        self.assertIn("no TLSA record authenticated", str(cm.exception))
        self.assertEqual(cm.exception.peer_pin, starttls.pin_sha256(CERTS.server_der))

    def test_dane_on_a_socket_and_no_dane_without_records(self):
        digest = self._spki_sha256()
        with ScriptedServer(SMTP_UPGRADE + [("hold",)], context()) as srv:
            sock = socket.create_connection(("127.0.0.1", srv.port))
            with starttls.upgrade_socket(sock, "smtp", "localhost", tlsa=[(3, 1, 1, digest)],
                                         config=config(ca_file=CERTS.other_ca)) as conn:
                self.assertEqual(conn.dane, f"3 1 1 {digest.hex()}")
            sock.close()
        with ScriptedServer(SMTP_UPGRADE + [("hold",)], context()) as srv:
            with starttls.connect("smtp", "localhost", srv.port, config=config()) as conn:
                self.assertIsNone(conn.dane)

    def test_bad_tlsa_arguments_are_refused_before_connecting(self):
        for bad, error in (("3 1 1 abcd", TypeError), (["3 1 1 zz"], starttls.InvalidArgumentError),
                           ([(3, 1, 256, b"x")], ValueError), ([(3, 1)], TypeError),
                           ([42], TypeError)):
            with self.assertRaises(error, msg=repr(bad)):
                starttls.connect("smtp", "127.0.0.1", 1, config=config(), tlsa=bad)

    def test_pins_alone_or_with_the_roots(self):
        pin = starttls.pin_sha256(CERTS.server_der)
        with ScriptedServer(SMTP_UPGRADE + [("hold",)], context()) as srv:
            cfg = config(ca_file=CERTS.other_ca, pin_sha256=["sha256//" + "A" * 43 + "=", pin],
                         pin_only=True)
            with starttls.connect("smtp", "127.0.0.1", srv.port, config=cfg,
                                  server_name="elsewhere.example") as conn:
                self.assertEqual(conn.verification, "verified")
        with ScriptedServer(SMTP_UPGRADE, context()) as srv:
            with self.assertRaises(starttls.CertificateError) as cm:
                starttls.connect("smtp", "localhost", srv.port,
                                 config=config(pin_sha256="A" * 43 + "="))
        self.assertIn(pin, str(cm.exception))
        with self.assertRaises(starttls.InvalidArgumentError):
            starttls.Config(pin_sha256="not a pin")
        with self.assertRaises(starttls.ConfigError):
            starttls.Config(pin_only=True)

    def test_dangerous_mode_reports_what_was_wrong(self):
        with ScriptedServer(SMTP_UPGRADE + [("hold",)], context()) as srv:
            cfg = config(ca_file=CERTS.other_ca, dangerous_accept_any_certificate=True)
            with starttls.connect("smtp", "localhost", srv.port, config=cfg) as conn:
                self.assertTrue(conn.encrypted)
                self.assertEqual(conn.verification, "skipped")
                self.assertTrue(conn.verification_problem)
                self.assertEqual(conn.peer_certificates[0], CERTS.server_der)
        self.assertIsNone(srv.error)

    def test_silent_server_times_out(self):
        with ScriptedServer([("hold",)], context()) as srv:
            start = time.monotonic()
            with self.assertRaises(starttls.TimeoutError) as cm:
                starttls.connect("smtp", "localhost", srv.port, config=config(timeout=0.5))
            elapsed = time.monotonic() - start
        self.assertIsInstance(cm.exception, builtins.TimeoutError)
        self.assertEqual(cm.exception.code, 201)
        self.assertIn("greeting", str(cm.exception))  # the message names the phase
        self.assertGreaterEqual(elapsed, 0.4)
        self.assertLess(elapsed, 3)
        self.assertTrue(srv.saw_eof)

    def test_phase_timeouts(self):
        with ScriptedServer([("hold",)], context()) as srv:
            start = time.monotonic()
            with self.assertRaises(builtins.TimeoutError):
                starttls.connect("smtp", "localhost", srv.port,
                                 config=config(timeout={"connect": 2, "reply": 0.3}))
            self.assertLess(time.monotonic() - start, 2)

    def test_opportunistic_without_starttls_stays_plaintext(self):
        script = [SMTP_GREETING, ("expect", b"EHLO"), SMTP_EHLO_PLAIN,
                  ("expect", b"QUIT"), ("send", b"221 bye\r\n"), ("eof",)]
        with ScriptedServer(script) as srv:
            cfg = config(policy=starttls.Policy.OPPORTUNISTIC)
            with starttls.connect("smtp", "localhost", srv.port, config=cfg) as conn:
                self.assertFalse(conn.encrypted)
                self.assertIs(conn.plaintext_reason, starttls.NotOfferedError)
                self.assertIs(conn.starttls_offered, False)
                self.assertEqual(conn.verification, "not-encrypted")
                self.assertIsNone(conn.tls_version)
                self.assertIsNone(conn.cipher)
                self.assertEqual(conn.peer_certificates, [])
                with self.assertRaises(starttls.InvalidArgumentError):
                    conn.fetch_capabilities()  # refused on a plaintext connection
                conn.write(b"QUIT\r\n")
                self.assertEqual(conn.readline(), b"221 bye\r\n")
        self.assertIsNone(srv.error)

    def test_opportunistic_refusal_is_reported(self):
        script = [SMTP_GREETING, ("expect", b"EHLO"), SMTP_EHLO_TLS, ("expect", b"STARTTLS"),
                  ("send", b"454 4.7.0 no TLS today\r\n"), ("hold",)]
        with ScriptedServer(script) as srv:
            cfg = config(policy="opportunistic")
            with starttls.connect("smtp", "localhost", srv.port, config=cfg) as conn:
                self.assertFalse(conn.encrypted)
                self.assertIs(conn.plaintext_reason, starttls.RefusedError)
                self.assertIs(conn.starttls_offered, True)
        self.assertIsNone(srv.error)


class ConnectionIOTests(unittest.TestCase):
    def test_close_without_close_notify_raises_closed(self):
        with ScriptedServer([("send", b"+OK hi\r\n")], context(), implicit_tls=True) as srv:
            with starttls.connect("pop3s", "localhost", srv.port, config=config()) as conn:
                srv.join()  # the server closed the TCP connection without close_notify
                with self.assertRaises(starttls.ClosedError) as cm:
                    conn.read()
                self.assertIn("read", cm.exception.message)
        self.assertIsNone(srv.error)

    def test_read_times_out_after_the_upgrade(self):
        with ScriptedServer([("send", b"+OK hi\r\n"), ("hold",)], context(),
                            implicit_tls=True) as srv:
            cfg = config(timeout={"io": 0.3})
            with starttls.connect("pop3s", "localhost", srv.port, config=cfg) as conn:
                start = time.monotonic()
                with self.assertRaises(starttls.TimeoutError) as cm:
                    conn.read()
                self.assertLess(time.monotonic() - start, 2)
                self.assertIn("read", str(cm.exception))
        self.assertIsNone(srv.error)

    def test_connection_outlives_its_config(self):
        script = [("expect", b"PING"), ("send", b"PONG\r\n"), ("hold",)]
        with ScriptedServer(script, context(), implicit_tls=True) as srv:
            cfg = config()
            conn = starttls.connect("tls", "localhost", srv.port, config=cfg)
            cfg.close()
            del cfg
            conn.write(b"PING\r\n")
            self.assertEqual(conn.readline(), b"PONG\r\n")
            del conn  # freed by the garbage collector
        self.assertIsNone(srv.error)
        self.assertTrue(srv.saw_eof)

    def test_large_writes_and_small_reads(self):
        big = b"x" * 200000 + b"\r\n"
        script = [("expect", b"xxxx"), ("send", b"0123456789\r\n"), ("hold",)]
        with ScriptedServer(script, context(), implicit_tls=True) as srv:
            with starttls.connect("tls", "localhost", srv.port, config=config()) as conn:
                conn.sendall(big)
                self.assertEqual(conn.write(b""), 0)
                self.assertEqual(conn.read(4), b"0123")
                self.assertEqual(conn.readline(), b"456789\r\n")
        self.assertIsNone(srv.error)
        self.assertEqual(len(srv.lines()[0]), 200000)


class ImapTests(unittest.TestCase):
    def test_greeting_with_capabilities_then_fetch_inside_tls(self):
        script = [("send", b"* OK [CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED] ready\r\n"),
                  ("command", b"STARTTLS"), ("send", tagged(b"OK Begin TLS now")), ("tls",),
                  ("command", b"CAPABILITY"),
                  ("send", lambda s: b"* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n"
                                     + tagged(b"OK done")(s)),
                  ("command", b"LOGOUT"),
                  ("send", lambda s: b"* BYE logging out\r\n" + tagged(b"OK bye")(s)),
                  ("shutdown",)]
        with ScriptedServer(script, context()) as srv:
            with starttls.connect("imap", "localhost", srv.port, config=config()) as conn:
                self.assertEqual(conn.greeting,
                                 "* OK [CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED] ready")
                self.assertEqual(conn.capabilities_before_tls,
                                 ["IMAP4rev1", "STARTTLS", "LOGINDISABLED"])
                self.assertTrue(conn.starttls_offered)
                self.assertEqual(conn.fetch_capabilities(), ["IMAP4rev1", "AUTH=PLAIN"])
                conn.write(b"a9 LOGOUT\r\n")
                self.assertEqual(conn.readline(), b"* BYE logging out\r\n")
                self.assertEqual(conn.readline(), b"a9 OK bye\r\n")
                self.assertEqual(conn.verification, "verified")
        self.assertIsNone(srv.error)
        # The greeting announced STARTTLS: no CAPABILITY before TLS.
        self.assertEqual(len(srv.lines(encrypted=False)), 1)

    def test_plain_greeting_asks_for_capabilities(self):
        script = [("send", b"* OK IMAP ready\r\n"), ("command", b"CAPABILITY"),
                  ("send", lambda s: b"* CAPABILITY IMAP4rev1 STARTTLS\r\n"
                                     + tagged(b"OK done")(s)),
                  ("command", b"STARTTLS"), ("send", tagged(b"OK go")), ("tls",), ("hold",)]
        with ScriptedServer(script, context()) as srv:
            with starttls.connect("imap", "localhost", srv.port, config=config()) as conn:
                self.assertEqual(conn.capabilities_before_tls, ["IMAP4rev1", "STARTTLS"])
                self.assertTrue(conn.encrypted)
        self.assertIsNone(srv.error)

    def test_preauth_is_a_downgrade(self):
        script = [("send", b"* PREAUTH [CAPABILITY IMAP4rev1 STARTTLS] welcome back\r\n"),
                  ("eof",)]
        with ScriptedServer(script, context()) as srv:
            with self.assertRaises(starttls.DowngradeError) as cm:
                starttls.connect("imap", "localhost", srv.port, config=config())
        self.assertIn("PREAUTH", str(cm.exception))
        self.assertIsNone(srv.error)
        self.assertEqual(srv.received, [])

    def test_no_is_a_refusal(self):
        script = [("send", b"* OK [CAPABILITY IMAP4rev1 STARTTLS] ready\r\n"),
                  ("command", b"STARTTLS"), ("send", tagged(b"NO [UNAVAILABLE] not now")),
                  ("eof",)]
        with ScriptedServer(script, context()) as srv:
            with self.assertRaises(starttls.RefusedError) as cm:
                starttls.connect("imap", "localhost", srv.port, config=config())
        self.assertIn("not now", str(cm.exception))
        self.assertIsNone(srv.error)

    def test_imaps_reads_the_greeting_inside_tls(self):
        script = [("send", b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] secure\r\n"),
                  ("command", b"NOOP"), ("send", tagged(b"OK nothing")), ("hold",)]
        with ScriptedServer(script, context(), implicit_tls=True) as srv:
            with starttls.connect(starttls.Protocol.IMAPS, "localhost", srv.port,
                                  config=config()) as conn:
                self.assertEqual(conn.greeting, "* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] secure")
                self.assertIsNone(conn.starttls_offered)
                self.assertEqual(conn.capabilities, ["IMAP4rev1", "AUTH=PLAIN"])
                self.assertEqual(conn.peer_certificates[0], CERTS.server_der)
                conn.write(b"x1 NOOP\r\n")
                self.assertEqual(conn.readline(), b"x1 OK nothing\r\n")
        self.assertIsNone(srv.error)
        self.assertEqual(srv.received, [(True, "x1 NOOP")])


class Pop3Tests(unittest.TestCase):
    def test_stls_then_capa_inside_tls(self):
        script = [("send", b"+OK POP3 ready\r\n"), ("expect", b"STLS"),
                  ("send", b"+OK Begin TLS\r\n"), ("tls",), ("expect", b"CAPA"),
                  ("send", b"+OK list follows\r\nUSER\r\nSASL PLAIN\r\n.\r\n"),
                  ("expect", b"QUIT"), ("send", b"+OK bye\r\n"), ("shutdown",)]
        with ScriptedServer(script, context()) as srv:
            with starttls.connect("pop3", "localhost", srv.port, config=config()) as conn:
                self.assertEqual(conn.greeting, "+OK POP3 ready")
                self.assertEqual(conn.capabilities_before_tls, [])  # no CAPA in plaintext
                # The Rust API documents True here (STLS accepted); the C header says -1/None
                # "when not asked (... POP3)". See the wrapper's report.
                self.assertIs(conn.starttls_offered, True)
                self.assertEqual(conn.fetch_capabilities(), ["USER", "SASL PLAIN"])
                conn.write(b"QUIT\r\n")
                self.assertEqual(conn.readline(), b"+OK bye\r\n")
                self.assertIn(conn.tls_version, ("TLSv1.2", "TLSv1.3"))
        self.assertIsNone(srv.error)
        self.assertEqual(srv.lines(), ["STLS", "CAPA", "QUIT"])

    def test_err_is_a_refusal(self):
        script = [("send", b"+OK POP3 ready\r\n"), ("expect", b"STLS"),
                  ("send", b"-ERR TLS is switched off\r\n"), ("eof",)]
        with ScriptedServer(script, context()) as srv:
            with self.assertRaises(starttls.RefusedError) as cm:
                starttls.connect("pop3", "localhost", srv.port, config=config())
        self.assertIn("-ERR TLS is switched off", str(cm.exception))
        self.assertIsNone(srv.error)

    def test_pop3s(self):
        script = [("send", b"+OK secure POP3\r\n"), ("hold",)]
        with ScriptedServer(script, context(), implicit_tls=True) as srv:
            with starttls.connect("pop3s", "localhost", srv.port, config=config()) as conn:
                self.assertEqual(conn.greeting, "+OK secure POP3")
                self.assertTrue(conn.encrypted)
        self.assertIsNone(srv.error)


class TlsOptionTests(unittest.TestCase):
    def test_plain_tls_to_an_ip_address_with_alpn(self):
        script = [("expect", b"PING"), ("send", b"PONG\r\n"), ("shutdown",)]
        with ScriptedServer(script, context(alpn=["imap", "h2"]), implicit_tls=True) as srv:
            with starttls.connect("tls", "127.0.0.1", srv.port,
                                  config=config(alpn=[b"imap"])) as conn:
                self.assertEqual(conn.alpn, b"imap")
                self.assertIsNone(conn.greeting)
                self.assertEqual(conn.verification, "verified")  # the IP SAN
                conn.write(b"PING\r\n")
                self.assertEqual(conn.read(), b"PONG\r\n")
                self.assertEqual(conn.read(), b"")
        self.assertIsNone(srv.error)
        self.assertEqual(srv.alpn, "imap")

    def test_min_tls_13_against_a_tls_12_server(self):
        ctx = context(max_version=ssl.TLSVersion.TLSv1_2)
        with ScriptedServer([], ctx, implicit_tls=True) as srv:
            with self.assertRaises(starttls.TLSError):
                starttls.connect("tls", "localhost", srv.port,
                                 config=config(min_tls_version="1.3"))
        with ScriptedServer([("hold",)], ctx, implicit_tls=True) as srv:
            with starttls.connect("tls", "localhost", srv.port, config=config()) as conn:
                self.assertEqual(conn.tls_version, "TLSv1.2")
                self.assertTrue(conn.cipher.startswith("TLS_ECDHE_"), conn.cipher)

    def test_max_tls_12_against_a_tls_13_server_and_the_key_exchange(self):
        ctx = context()  # offers TLS 1.3
        with ScriptedServer([("hold",)], ctx, implicit_tls=True) as srv:
            with starttls.connect("tls", "localhost", srv.port,
                                  config=config(max_tls_version="1.2")) as conn:
                self.assertEqual(conn.tls_version, "TLSv1.2")
                self.assertIn(conn.key_exchange, ("X25519", "secp256r1", "secp384r1"))
        with ScriptedServer([("hold",)], ctx, implicit_tls=True) as srv:
            with starttls.connect("tls", "localhost", srv.port, config=config()) as conn:
                self.assertEqual(conn.tls_version, "TLSv1.3")
                self.assertTrue(conn.key_exchange, conn.key_exchange)
        with self.assertRaises(starttls.ConfigError):
            starttls.Config(min_tls_version="1.3", max_tls_version="1.2")
        with self.assertRaises(ValueError):
            starttls.Config(max_tls_version="1.1")

    def test_client_certificate_files_and_pem(self):
        with open(CERTS.client, "rb") as f:
            chain = f.read()
        with open(CERTS.client_key, "rb") as f:
            key = f.read()
        der = ssl.PEM_cert_to_DER_cert(chain.decode())
        for cert, k in ((CERTS.client, CERTS.client_key), (chain, key)):
            with ScriptedServer([("expect", b"HI")], context(client_ca=CERTS.ca),
                                implicit_tls=True) as srv:
                with starttls.connect("tls", "localhost", srv.port,
                                      config=config(client_cert=cert, client_key=k)) as conn:
                    conn.write(b"HI\r\n")
            self.assertIsNone(srv.error)
            self.assertEqual(srv.client_cert, der)

    def test_second_connection_resumes(self):
        ctx = context()
        cfg = config()
        results = []
        for _ in range(2):
            script = [("expect", b"PING"), ("send", b"PONG\r\n"), ("hold",)]
            with ScriptedServer(script, ctx, implicit_tls=True) as srv:
                with starttls.connect("tls", "localhost", srv.port, config=cfg) as conn:
                    conn.write(b"PING\r\n")
                    self.assertEqual(conn.readline(), b"PONG\r\n")  # also reads the tickets
                    results.append(conn.resumed)
            self.assertIsNone(srv.error)
        self.assertEqual(results, [False, True])


class SocketTests(unittest.TestCase):
    def test_upgrade_socket_borrows_the_fd(self):
        script = SMTP_UPGRADE + [("expect", b"QUIT"), ("send", b"221 bye\r\n"), ("shutdown",),
                                 ("expect", b"PLAIN AGAIN"), ("send", b"250 still here\r\n"),
                                 ("eof",)]
        with ScriptedServer(script, context()) as srv:
            sock = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
            fd = sock.fileno()
            conn = starttls.upgrade_socket(sock, "smtp", "localhost", config=config())
            self.assertEqual(conn.fileno(), fd)
            self.assertEqual(conn.greeting, "220 mx.test ESMTP ready")
            conn.write(b"QUIT\r\n")
            self.assertEqual(conn.readline(), b"221 bye\r\n")
            self.assertEqual(conn.read(), b"")  # close_notify from the server
            conn.close()  # ours; the TLS layer is now shut down on both sides
            conn.free()
            del conn
            # The socket is ours again, open, and still connected.
            self.assertEqual(sock.fileno(), fd)
            os.fstat(fd)
            self.assertEqual(sock.getpeername()[1], srv.port)
            sock.settimeout(5)
            sock.sendall(b"PLAIN AGAIN\r\n")
            self.assertEqual(recv_line(sock), b"250 still here\r\n")
            sock.close()
        self.assertIsNone(srv.error)
        self.assertTrue(srv.saw_eof)

    def test_upgrade_socket_taking_ownership(self):
        script = [("send", b"+OK hi\r\n"), ("expect", b"STLS"), ("send", b"+OK go\r\n"),
                  ("tls",), ("hold",)]
        with ScriptedServer(script, context()) as srv:
            sock = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
            fd = sock.fileno()
            conn = starttls.upgrade_socket(sock, starttls.Protocol.POP3, "localhost",
                                           config=config(), take_ownership=True)
            self.assertEqual(sock.fileno(), -1)  # detached: Python will not close it
            self.assertEqual(conn.fileno(), fd)
            conn.free()  # no close_notify: the library closes the fd
            srv.join()
        self.assertIsNone(srv.error)
        self.assertTrue(srv.saw_eof)

    def test_owned_fd_is_closed_on_failure(self):
        script = [SMTP_GREETING, ("expect", b"EHLO"), SMTP_EHLO_PLAIN, ("eof",)]
        with ScriptedServer(script, context()) as srv:
            sock = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
            with self.assertRaises(starttls.NotOfferedError):
                starttls.upgrade_socket(sock, "smtp", "localhost", config=config(),
                                        take_ownership=True)
            srv.join()
        self.assertIsNone(srv.error)
        self.assertTrue(srv.saw_eof)

    def test_borrowed_fd_survives_failure(self):
        script = [SMTP_GREETING, ("expect", b"EHLO"), SMTP_EHLO_PLAIN,
                  ("expect", b"QUIT"), ("send", b"221 ok\r\n"), ("eof",)]
        with ScriptedServer(script, context()) as srv:
            sock = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
            with self.assertRaises(starttls.NotOfferedError):
                starttls.upgrade_socket(sock, "smtp", "localhost", config=config())
            sock.settimeout(5)
            sock.sendall(b"QUIT\r\n")
            self.assertEqual(recv_line(sock), b"221 ok\r\n")
            sock.close()
        self.assertIsNone(srv.error)

    def test_handshake_socket_after_our_own_dialog(self):
        script = SMTP_UPGRADE + [("expect", b"EHLO me"), ("send", b"250 mx.test\r\n"),
                                 ("hold",)]
        with ScriptedServer(script, context()) as srv:
            with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as sock:
                self.assertTrue(recv_line(sock).startswith(b"220 "))
                sock.sendall(b"EHLO me\r\n")
                while not recv_line(sock).startswith(b"250 "):
                    pass
                sock.sendall(b"STARTTLS\r\n")
                self.assertTrue(recv_line(sock).startswith(b"220 "))
                with starttls.handshake_socket(sock, "localhost", config=config()) as conn:
                    self.assertIsNone(conn.greeting)
                    self.assertEqual(conn.peer_certificates[0], CERTS.server_der)
                    conn.write(b"EHLO me\r\n")
                    self.assertEqual(conn.readline(), b"250 mx.test\r\n")
                self.assertEqual(sock.fileno() >= 0, True)
        self.assertIsNone(srv.error)


class ThreadTests(unittest.TestCase):
    def test_blocking_calls_release_the_gil(self):
        with ScriptedServer([("hold",)]) as srv:
            errors = []

            def run():
                try:
                    starttls.connect("smtp", "localhost", srv.port, config=config(timeout=0.7))
                except starttls.TimeoutError as e:
                    errors.append(e)

            t = threading.Thread(target=run)
            t.start()
            time.sleep(0.1)
            spins = 0
            while t.is_alive():
                spins += 1
            t.join()
        self.assertEqual(len(errors), 1)
        self.assertGreater(spins, 10000)

    def test_one_config_shared_by_threads(self):
        cfg = config()
        ctx = context()
        results = []

        def one():
            script = [("send", b"+OK hi\r\n"), ("expect", b"STLS"), ("send", b"+OK go\r\n"),
                      ("tls",), ("expect", b"NOOP"), ("send", b"+OK fine\r\n"), ("hold",)]
            with ScriptedServer(script, ctx) as srv:
                with starttls.connect("pop3", "localhost", srv.port, config=cfg) as conn:
                    conn.write(b"NOOP\r\n")
                    results.append((conn.readline(), srv))

        threads = [threading.Thread(target=one) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        self.assertEqual([r for r, _ in results], [b"+OK fine\r\n"] * 4)
        for _, srv in results:
            self.assertIsNone(srv.error)


if __name__ == "__main__":
    unittest.main()
