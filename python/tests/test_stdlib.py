"""starttls.stdlib: smtplib, imaplib and poplib on connections the library upgraded, against
scripted servers (the interop suite drives them against Postfix and Dovecot)."""

import imaplib
import poplib
import shutil
import smtplib
import tempfile
import unittest

import starttls  # noqa: E402
import starttls.stdlib  # noqa: E402

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
    _TMP = tempfile.mkdtemp(prefix="starttls-stdlib-")
    CERTS = _servers.make_certs(_TMP)


def tearDownModule():
    if _TMP:
        shutil.rmtree(_TMP, ignore_errors=True)


def config():
    return starttls.Config(ca_file=CERTS.ca, timeout=5)


def context():
    return _servers.server_context(CERTS)


class StdlibTests(unittest.TestCase):
    def test_smtp_logs_in_and_sends_a_message_inside_tls(self):
        script = [
            ("send", b"220 mx.test ESMTP\r\n"), ("expect", b"EHLO "),
            ("send", b"250-mx.test\r\n250 STARTTLS\r\n"), ("expect", b"STARTTLS"),
            ("send", b"220 go\r\n"), ("tls",),
            # smtplib's own EHLO, inside TLS: what it learns is trustworthy.
            ("expect", b"EHLO "), ("send", b"250-mx.test\r\n250-AUTH PLAIN\r\n250 8BITMIME\r\n"),
            ("expect", b"AUTH PLAIN "), ("send", b"235 2.7.0 ok\r\n"),
            ("expect", b"MAIL FROM:<alice@example.org>"), ("send", b"250 ok\r\n"),
            ("expect", b"RCPT TO:<bob@example.org>"), ("send", b"250 ok\r\n"),
            ("expect", b"DATA"), ("send", b"354 go\r\n"),
            ("expect", b"Subject: hi"), ("expect", b""), ("expect", b"hello"),
            ("expect", b"."), ("send", b"250 2.0.0 queued\r\n"),
            ("expect", b"QUIT"), ("send", b"221 bye\r\n"), ("shutdown",),
        ]
        with ScriptedServer(script, context()) as srv:
            with starttls.stdlib.SMTP("localhost", srv.port, config=config()) as smtp:
                self.assertIsInstance(smtp, smtplib.SMTP)
                self.assertEqual(smtp.login("alice", "secret")[0], 235)
                self.assertEqual(smtp.sendmail("alice@example.org", ["bob@example.org"],
                                               "Subject: hi\r\n\r\nhello\r\n"), {})
                with self.assertRaises(smtplib.SMTPException):
                    smtp.starttls()
        self.assertIsNone(srv.error)
        self.assertTrue(all(enc for enc, _ in srv.received[2:]), srv.received)

    def test_smtp_refuses_a_stripped_starttls_where_smtplib_would_go_on_in_plaintext(self):
        script = [("send", b"220 mx.test ESMTP\r\n"), ("expect", b"EHLO "),
                  ("send", b"250-mx.test\r\n250 AUTH PLAIN\r\n"), ("eof",)]
        with ScriptedServer(script, context()) as srv:
            with self.assertRaises(starttls.NotOfferedError):
                starttls.stdlib.SMTP("localhost", srv.port, config=config())
        self.assertIsNone(srv.error)

    def test_imap_logs_in_and_selects_with_capabilities_from_inside_tls(self):
        script = [
            # Before TLS: capabilities the client must not believe (no IMAP4rev1, LOGINDISABLED).
            ("send", b"* OK [CAPABILITY IMAP4 STARTTLS LOGINDISABLED] hi\r\n"),
            ("command", b"STARTTLS"), ("send", tagged(b"OK go")), ("tls",),
            ("command", b"CAPABILITY"),
            ("send", lambda s: b"* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n" + tagged(b"OK done")(s)),
            ("command", b"LOGIN"), ("send", tagged(b"OK logged in")),
            ("command", b"SELECT"),
            ("send", lambda s: b"* 3 EXISTS\r\n" + tagged(b"OK [READ-WRITE] done")(s)),
            ("command", b"LOGOUT"), ("send", lambda s: b"* BYE\r\n" + tagged(b"OK bye")(s)),
            ("shutdown",),
        ]
        with ScriptedServer(script, context()) as srv:
            imap = starttls.stdlib.IMAP4("localhost", srv.port, config=config())
            self.assertIsInstance(imap, imaplib.IMAP4)
            self.assertIn("AUTH=PLAIN", imap.capabilities)
            self.assertNotIn("LOGINDISABLED", imap.capabilities)
            self.assertEqual(imap.login("alice", "secret")[0], "OK")
            self.assertEqual(imap.select("INBOX"), ("OK", [b"3"]))
            with self.assertRaises(imaplib.IMAP4.error):
                imap.starttls()
            imap.logout()
        self.assertIsNone(srv.error)

    def test_pop3_logs_in_and_counts(self):
        script = [
            ("send", b"+OK hi\r\n"), ("expect", b"STLS"), ("send", b"+OK go\r\n"), ("tls",),
            ("expect", b"USER alice"), ("send", b"+OK\r\n"),
            ("expect", b"PASS secret"), ("send", b"+OK logged in\r\n"),
            ("expect", b"STAT"), ("send", b"+OK 2 320\r\n"),
            ("expect", b"QUIT"), ("send", b"+OK bye\r\n"), ("shutdown",),
        ]
        with ScriptedServer(script, context()) as srv:
            pop = starttls.stdlib.POP3("localhost", srv.port, config=config())
            self.assertIsInstance(pop, poplib.POP3)
            pop.user("alice")
            pop.pass_("secret")
            self.assertEqual(pop.stat(), (2, 320))
            with self.assertRaises(poplib.error_proto):
                pop.stls()
            pop.quit()
        self.assertIsNone(srv.error)

    def test_a_peer_that_closes_without_close_notify_does_not_break_quit(self):
        # Many servers close right after their goodbye; socket.close() never raises, nor here.
        script = [("send", b"220 mx.test ESMTP\r\n"), ("expect", b"EHLO "),
                  ("send", b"250-mx.test\r\n250 STARTTLS\r\n"), ("expect", b"STARTTLS"),
                  ("send", b"220 go\r\n"), ("tls",), ("expect", b"QUIT"),
                  ("send", b"221 bye\r\n")]
        with ScriptedServer(script, context()) as srv:
            smtp = starttls.stdlib.SMTP("localhost", srv.port, config=config())
            self.assertEqual(smtp.quit()[0], 221)
        self.assertIsNone(srv.error)

    def test_implicit_tls_by_protocol_name(self):
        script = [("send", b"+OK pop3s ready\r\n"), ("expect", b"QUIT"), ("send", b"+OK\r\n"),
                  ("shutdown",)]
        with ScriptedServer(script, context(), implicit_tls=True) as srv:
            pop = starttls.stdlib.POP3("localhost", srv.port, config=config(), protocol="pop3s")
            pop.quit()
        self.assertIsNone(srv.error)


if __name__ == "__main__":
    unittest.main()
