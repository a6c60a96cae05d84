"""STARTTLS done right: a ctypes wrapper around the ``libstarttls`` C library.

``connect()`` dials a server, runs the protocol's pre-TLS dialog (SMTP, LMTP, IMAP, POP3, or
implicit TLS), completes the TLS handshake, verifies the certificate, and returns a
:class:`Connection` that reads and writes decrypted bytes. ``upgrade_socket()`` does the same on
a socket you connected yourself. Failures raise a subclass of :class:`Error` chosen by the
library's result code.

The server side: :func:`accept_socket` plays a protocol's server dialog (greeting,
capabilities, the go-ahead) and the TLS handshake on a socket you accepted, with a
:class:`ServerConfig`; :func:`accept_tls_socket` does the handshake alone after your own dialog.

The library is found through ``$STARTTLS_LIBRARY``, then ``libstarttls.so*`` beside this
package, then the Cargo build tree (``target/debug``, ``target/release``), then
``ctypes.util.find_library("starttls")``.

Blocking calls release the GIL. A :class:`Config` or :class:`ServerConfig` may be shared by any number of threads; a
:class:`Connection` serialises its own calls with a lock.
"""

from __future__ import annotations

import builtins
import collections
import ctypes
import enum
import errno
import io
import math
import os
import socket
import threading
from typing import TYPE_CHECKING, Any, Callable, Iterable, Optional, Union, cast, overload

from . import _ffi
from ._ffi import lib as _lib

if TYPE_CHECKING:
    from ctypes import _CFunctionType
    from typing import Literal, NamedTuple, TypedDict

    from _typeshed import ReadableBuffer, WriteableBuffer
    from typing_extensions import Self

    # What the public functions accept.
    _ProtocolArg = Union["Protocol", int, str]
    _StrPath = Union[str, bytes, "os.PathLike[str]", "os.PathLike[bytes]"]
    _AnyBytes = Union[str, ReadableBuffer]  # str is encoded as UTF-8
    # A PEM or ALPN value given alone (anything else is taken as an iterable of them).
    _OneBytes = Union[str, bytes, bytearray, memoryview]
    _ManyBytes = Union[_OneBytes, Iterable[_AnyBytes]]
    _LogFn = Callable[[str, bool, str], object]
    # TLSA records: "3 1 1 0f3c..." text or (usage, selector, matching_type, data) tuples.
    _TlsaArg = Iterable[Union[str, tuple[int, int, int, bytes]]]

    class _AuthOutcomeBase(NamedTuple):
        mechanism: str
        channel_binding: Optional[str]

    class _CertificateFacts(TypedDict):
        not_before: int
        not_after: int
        subject: str
        issuer: str
        names: list[str]
        sha256: str
        spki_sha256: str

    _BinaryMode = Literal["b", "rb", "br", "wb", "bw", "rwb", "rbw", "wrb", "wbr", "brw",
                          "bwr"]
else:
    _AuthOutcomeBase = collections.namedtuple("AuthOutcome", ["mechanism", "channel_binding"])

__version__ = "0.1.0"

__all__ = [
    "Protocol", "Policy", "Result", "Verification",
    "Error", "InvalidArgumentError", "ConfigError", "PanicError", "BufferTooSmallError",
    "ConnectionIOError", "TimeoutError", "ClosedError", "ResolveError",
    "NotOfferedError", "RefusedError", "DowngradeError", "ProtocolError", "InjectionError",
    "TLSError", "CertificateError",
    "Config", "Connection", "AuthOutcome", "connect", "upgrade_socket", "handshake_socket",
    "ServerConfig", "accept_socket", "accept_tls_socket",
    "version", "crypto_provider", "result_name", "result_description", "supports_protocol",
    "protocol_name", "default_port", "library_path", "pin_sha256",
]

library_path = _ffi.library_path

# Header version (include/starttls.h) this wrapper was written against.
VERSION_MAJOR = 0
VERSION_MINOR = 1
VERSION_PATCH = 0

FD_TAKE_OWNERSHIP = 1
_WANT_READ = 1  # STARTTLS_WANT_READ: a non-blocking call must wait for the socket
_WANT_WRITE = 2
TLS_1_2 = 0x0303
TLS_1_3 = 0x0304
DIRECTION_SENT = 0
DIRECTION_RECEIVED = 1
CLIENT_AUTH_OPTIONAL = 1
CLIENT_AUTH_REQUIRED = 2


# --------------------------------------------------------------------------------------------
# Constants


class Protocol(enum.IntEnum):
    """``STARTTLS_PROTO_*``: the dialog run before (or instead of) TLS. An older library may
    not support every member: see :func:`supports_protocol`."""

    SMTP = 1
    LMTP = 2
    IMAP = 3
    POP3 = 4
    LDAP = 5
    FTP = 6
    XMPP = 7
    NNTP = 8
    SIEVE = 9
    POSTGRES = 10
    HTTP = 11
    TLS = 12
    SUBMISSION = 13
    SMTPS = 14
    IMAPS = 15
    POP3S = 16
    NNTPS = 17
    POSTGRES_DIRECT = 18
    HTTPS = 19
    LDAPS = 20
    XMPP_SERVER = 21
    XMPPS = 22
    FTPS = 23
    MYSQL = 24


class Policy(enum.IntEnum):
    """``STARTTLS_POLICY_*``: what happens when TLS cannot be had."""

    REQUIRE = 0
    OPPORTUNISTIC = 1


class Result(enum.IntEnum):
    """The library's result codes (frozen, append-only)."""

    OK = 0
    ERR_INVALID_ARGUMENT = 100
    ERR_CONFIG = 101
    ERR_PANIC = 102
    ERR_BUFFER_TOO_SMALL = 103
    ERR_IO = 200
    ERR_TIMEOUT = 201
    ERR_CLOSED = 202
    ERR_RESOLVE = 203
    ERR_NOT_OFFERED = 300
    ERR_REFUSED = 301
    ERR_DOWNGRADE = 302
    ERR_PROTOCOL = 303
    ERR_INJECTION = 304
    ERR_NOT_ENCRYPTED = 305
    ERR_AUTH_FAILED = 306
    ERR_TLS = 400
    ERR_CERTIFICATE = 401


OK = Result.OK
# Module-level aliases, e.g. starttls.ERR_NOT_OFFERED == 300.
globals().update({m.name: m for m in Result})


class Verification(str, enum.Enum):
    """``STARTTLS_VERIFY_*`` as strings: how the peer's certificate was checked
    (``NO_PEER_CERTIFICATE``: server side, the client presented none)."""

    VERIFIED = "verified"
    SKIPPED = "skipped"
    NOT_ENCRYPTED = "not-encrypted"
    NO_PEER_CERTIFICATE = "no-peer-certificate"


_VERIFICATION = {0: Verification.VERIFIED, 1: Verification.SKIPPED, 2: Verification.NOT_ENCRYPTED,
                 3: Verification.NO_PEER_CERTIFICATE}

_TIMEOUT_PHASES = {"connect": 1, "reply": 2, "handshake": 3, "io": 4}


class AuthOutcome(_AuthOutcomeBase):
    """How a login went: the ``mechanism`` used (``"SCRAM-SHA-256-PLUS"``, ``"PLAIN"``, ...)
    and the ``channel_binding`` it was bound to (``"tls-exporter"``,
    ``"tls-server-end-point"``), or None when the server did not prove it saw this very TLS
    connection."""

    __slots__ = ()


# --------------------------------------------------------------------------------------------
# Errors


class Error(Exception):
    """A failure reported by the library.

    ``code`` is the numeric result code, ``name`` its symbolic name (``STARTTLS_ERR_...``) and
    ``message`` the detailed message (with the server's reply line where there is one).
    """

    code: int | None = None

    def __init__(self, message: str = "", code: int | None = None,
                 name: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code
        self.name = name if name is not None else (
            result_name(self.code) if self.code is not None else None
        )
        self.message = message

    def __str__(self) -> str:
        if self.name:
            return f"[{self.name}] {self.message}" if self.message else self.name
        return self.message


class InvalidArgumentError(Error):
    """A bad argument, an unknown enum value, or a call in the wrong state (100)."""
    code = 100


class ConfigError(Error):
    """The configuration could not be built (101)."""
    code = 101


class PanicError(Error):
    """A bug inside the library was caught (102)."""
    code = 102


class BufferTooSmallError(Error):
    """A buffer was too small (103); the wrapper sizes buffers itself, so this is rare."""
    code = 103


class ConnectionIOError(Error, OSError):
    """An operating-system I/O error (200)."""
    code = 200


class TimeoutError(Error, builtins.TimeoutError):
    """A step did not finish within its timeout (201); the message names the phase."""
    code = 201


class ClosedError(Error):
    """The peer closed the connection mid-step, or without close_notify (202)."""
    code = 202


class ResolveError(Error):
    """The host name did not resolve (203)."""
    code = 203


class NotOfferedError(Error):
    """The server did not offer STARTTLS, or it was stripped on the way (300)."""
    code = 300


class RefusedError(Error):
    """The server refused STARTTLS (``454``, ``NO``, ``-ERR``) or the connection (301)."""
    code = 301


class DowngradeError(Error):
    """The server skipped TLS on its own, e.g. IMAP ``PREAUTH`` (302)."""
    code = 302


class ProtocolError(Error):
    """The peer broke the protocol: malformed, unexpected or oversized reply (303)."""
    code = 303


class InjectionError(Error):
    """Plaintext arrived after the go-ahead and before TLS: a possible attack (304)."""
    code = 304


class NotEncryptedError(Error):
    """Credentials were not sent: the connection is not encrypted (305)."""
    code = 305


class AuthenticationError(Error):
    """The server rejected the login; the message carries its reply (306)."""
    code = 306


class TLSError(Error):
    """The TLS handshake or a TLS record failed (400)."""
    code = 400


class CertificateError(Error):
    """The server's certificate was rejected (401). ``peer_certificates`` holds the chain the
    server presented (DER, leaf first) when the rejection came from a connect, so that what was
    rejected can still be inspected; ``peer_pin`` is its leaf's :func:`pin_sha256`, to pass as
    ``Config(pin_sha256=...)`` once a user chose to trust it (trust on first use)."""
    code = 401
    peer_certificates: list[bytes] = []

    @property
    def peer_pin(self) -> str | None:
        """The SHA-256 pin of the rejected leaf's public key, or ``None`` without one."""
        if not self.peer_certificates:
            return None
        try:
            return pin_sha256(self.peer_certificates[0])
        except ValueError:
            return None


_ERRORS: dict[int | None, type[Error]] = {
    cls.code: cls
    for cls in (
        InvalidArgumentError, ConfigError, PanicError, BufferTooSmallError, ConnectionIOError,
        TimeoutError, ClosedError, ResolveError, NotOfferedError, RefusedError, DowngradeError,
        ProtocolError, InjectionError, NotEncryptedError, AuthenticationError, TLSError,
        CertificateError,
    )
}


def error_class(code: int) -> type[Error]:
    """The exception class for a result code: a subclass of :class:`Error`, or ``Error``
    itself for a code this wrapper does not know."""
    return _ERRORS.get(code, Error)


def _error(code: int, message: str, os_error: int = 0) -> Error:
    cls = error_class(code)
    err = cls(message, code=code, name=result_name(code))
    if isinstance(err, OSError):
        # The errno behind a system error or a timeout (ECONNREFUSED, ETIMEDOUT, ...).
        err.errno = os_error or None
        err.strerror = message
    return err


def _check(code: int) -> None:
    """Raises the thread's last error for a non-zero result code."""
    if code != 0:
        err = _error(code, _ffi.last_error(), _lib.starttls_last_os_error())
        if isinstance(err, CertificateError):
            err.peer_certificates = _last_presented_chain()
        raise err


def _last_presented_chain() -> list[bytes]:
    """The chain the server presented in this thread's last rejected handshake."""
    chain = []
    for i in range(_lib.starttls_last_peer_cert_count()):
        n = _lib.starttls_last_peer_cert_len(i)
        buf = ctypes.create_string_buffer(n)
        out = ctypes.c_size_t()
        if _lib.starttls_last_peer_cert(i, buf, n, ctypes.byref(out)) == 0:
            chain.append(buf.raw[:out.value])
    return chain


# --------------------------------------------------------------------------------------------
# Library information


def pin_sha256(certificate: _AnyBytes) -> str:
    """The SHA-256 pin (base64, 44 characters) of a DER certificate's public key: what
    ``Config(pin_sha256=...)`` and curl's ``--pinnedpubkey sha256//...`` take. Raises
    ``ValueError`` when ``certificate`` is not one."""
    der = _bytes(certificate, "certificate")
    buf = ctypes.create_string_buffer(64)
    n = _lib.starttls_cert_pin_sha256(der, len(der), buf, len(buf))
    if n == 0:
        raise ValueError("not a DER certificate")
    return buf.value.decode("ascii")


def _static(ptr: bytes | None) -> str | None:
    return ptr.decode("utf-8", "replace") if ptr is not None else None


def version() -> str | None:
    """The library's version string, e.g. ``"starttls 0.1.0 (rustls 0.23)"``."""
    return _static(_lib.starttls_version())


def crypto_provider() -> str | None:
    """The crypto provider rustls was built with: ``"aws-lc-rs"`` or ``"ring"``."""
    return _static(_lib.starttls_crypto_provider())


def result_name(code: int) -> str | None:
    """The symbolic name of a result code, ``"STARTTLS_ERR_UNKNOWN"`` for a non-code."""
    return _static(_lib.starttls_result_name(_u32(code)))


def result_description(code: int) -> str | None:
    """A one-line description of a result code."""
    return _static(_lib.starttls_result_description(_u32(code)))


def supports_protocol(protocol: _ProtocolArg) -> bool:
    """Whether this build of the library supports ``protocol``."""
    try:
        p = _protocol(protocol)
    except ValueError:
        return False
    return bool(_lib.starttls_supports_protocol(p))


def protocol_name(protocol: int) -> str | None:
    """The URL scheme of a protocol (``"smtp"``, ``"imaps"``, ...), or ``None``."""
    return _static(_lib.starttls_protocol_name(_u32(int(protocol))))


def default_port(protocol: _ProtocolArg) -> int | None:
    """The well-known port of a protocol, or ``None`` (``Protocol.TLS`` has none)."""
    port: int = _lib.starttls_protocol_default_port(_u32(int(_protocol(protocol))))
    return port or None


def _u32(value: int) -> int:
    value = int(value)
    if not 0 <= value <= 0xFFFFFFFF:
        raise ValueError(f"{value} does not fit in a uint32_t")
    return value


def _protocol(protocol: object) -> Protocol | int:
    """A Protocol (or, for an unknown number, the int itself, which the library rejects)."""
    if isinstance(protocol, str):
        try:
            return Protocol[protocol.strip().upper().replace("-", "_")]
        except KeyError:
            known = ", ".join(p.name.lower().replace("_", "-") for p in Protocol)
            raise ValueError(f"unknown protocol {protocol!r} (known: {known})") from None
    if isinstance(protocol, bool) or not isinstance(protocol, int):
        raise TypeError(f"protocol must be a Protocol, an int or a str, not {protocol!r}")
    try:
        return Protocol(protocol)
    except ValueError:
        return _u32(protocol)


def _cstr(value: object, what: str) -> bytes | None:
    """A str or path-like as NUL-terminated bytes (None stays None)."""
    if value is None:
        return None
    if isinstance(value, (bytes, bytearray)):
        b = bytes(value)
    else:
        b = os.fsencode(value) if isinstance(value, os.PathLike) else str(value).encode("utf-8")
    if b"\0" in b:
        raise ValueError(f"{what} contains a NUL byte")
    return b


def _bytes(value: object, what: str) -> bytes:
    if isinstance(value, str):
        return value.encode("utf-8")
    try:
        return bytes(memoryview(cast("ReadableBuffer", value)))  # checked at run time
    except TypeError:
        raise TypeError(f"{what} must be bytes or str, not {type(value).__name__}") from None


def _tls_version(value: str | int, what: str = "min_tls_version") -> int:
    versions: dict[str | int, int] = {"1.2": TLS_1_2, "1.3": TLS_1_3, "TLSv1.2": TLS_1_2,
                                      "TLSv1.3": TLS_1_3, TLS_1_2: TLS_1_2, TLS_1_3: TLS_1_3}
    if isinstance(value, bool) or value not in versions:
        raise ValueError(f"{what} must be '1.2' or '1.3', not {value!r}")
    return versions[value]


def _alpn_list(alpn: _ManyBytes) -> list[bytes]:
    if isinstance(alpn, (str, bytes, bytearray, memoryview)):
        alpn = (alpn,)
    return [_bytes(proto, "alpn") for proto in alpn]


def _ms(seconds: float, what: str) -> int:
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        raise TypeError(f"{what} must be a number of seconds")
    if not seconds > 0 or math.isinf(seconds):
        raise ValueError(f"{what} must be a positive, finite number of seconds")
    ms = max(1, math.ceil(seconds * 1000))
    if ms > 0xFFFFFFFF:
        raise ValueError(f"{what} is too large")
    return ms


# --------------------------------------------------------------------------------------------
# Config


class Config:
    """An immutable client configuration; share it freely between threads and connections.

    Defaults are the library's safe ones: built-in webpki roots, ``Policy.REQUIRE``,
    TLS >= 1.2, finite timeouts, verification on.

    - ``ca_file`` / ``ca_pem``: trust only these CAs (plus ``system_roots`` if true) instead of
      the built-in roots. The file is read now.
    - ``client_cert`` / ``client_key``: a client certificate chain and key, both file paths or
      both PEM bytes.
    - ``policy``: ``Policy.REQUIRE`` (or ``"require"``) or ``Policy.OPPORTUNISTIC``.
    - ``client_name``: the EHLO/LHLO name. ``alpn``: protocols to offer (bytes or str).
    - ``min_tls_version``: ``"1.2"`` or ``"1.3"``. ``max_tls_version``: the highest offered
      (``"1.3"`` by default; ``"1.2"`` to test a server's TLS 1.2).
    - ``timeout``: seconds for every phase, or a dict with some of ``"connect"``, ``"reply"``,
      ``"handshake"``, ``"io"``.
    - ``fetch_capabilities``: ask again for the capabilities inside TLS on every connection.
    - ``key_log``: write the TLS secrets to the file ``$SSLKEYLOGFILE`` names, when it is set
      (NSS key log format, for Wireshark). Off by default: that file decrypts the traffic.
    - ``pin_sha256``: one pin or several (base64 SHA-256 of the server's public key, bare or
      ``"sha256//..."``; several for a key rollover): the server's key must match one, in
      addition to verification, or instead of it with ``pin_only=True`` (self-signed servers).
      A mismatch raises :class:`CertificateError`, whose ``peer_pin`` is the key's pin.
    - ``dangerous_allow_login_without_verification``: let ``authenticate`` send credentials
      over a connection whose certificate was not verified (refused otherwise).
    - ``log``: ``callable(direction, encrypted, line)`` called for every dialog line, with
      direction ``"sent"`` or ``"received"``; it runs on the connecting thread.

    The C config is freed by :meth:`close` (or when the object is collected); connections
    already made from it stay usable.
    """

    def __init__(self, ca_file: _StrPath | None = None, ca_pem: _ManyBytes | None = None,
                 system_roots: bool = False,
                 client_cert: _StrPath | bytearray | memoryview | None = None,
                 client_key: _StrPath | bytearray | memoryview | None = None,
                 client_name: str | None = None, alpn: _ManyBytes = (),
                 min_tls_version: str | int | None = None,
                 max_tls_version: str | int | None = None,
                 policy: Policy | int | str = Policy.REQUIRE,
                 timeout: float | dict[str, float] | None = None,
                 fetch_capabilities: bool = False,
                 dangerous_accept_any_certificate: bool = False,
                 dangerous_allow_login_without_verification: bool = False,
                 log: _LogFn | None = None, key_log: bool = False,
                 pin_sha256: str | Iterable[str] = (), pin_only: bool = False) -> None:
        self._ptr: int | None = None
        # Keeps the C callback alive while the config or its conns live.
        self._callback: _CFunctionType | None = None
        if isinstance(policy, str):
            try:
                policy = Policy[policy.upper()]
            except KeyError:
                raise ValueError(f"unknown policy {policy!r}") from None
        self.policy = Policy(policy)
        self._lock = threading.Lock()

        # Validate everything in Python first, so that a TypeError leaks no builder.
        steps: list[tuple[Any, ...]] = []
        if ca_file is not None:
            steps.append((_lib.starttls_config_builder_set_ca_file, _cstr(ca_file, "ca_file")))
        if ca_pem is not None:
            pems = [ca_pem] if isinstance(ca_pem, (str, bytes, bytearray, memoryview)) else ca_pem
            for pem in pems:
                data = _bytes(pem, "ca_pem")
                steps.append((_lib.starttls_config_builder_add_ca_pem, data, len(data)))
        if system_roots:
            steps.append((_lib.starttls_config_builder_add_system_roots,))
        if (client_cert is None) != (client_key is None):
            raise ValueError("client_cert and client_key go together")
        if client_cert is not None:
            if isinstance(client_cert, (bytes, bytearray, memoryview)):
                chain, key = _bytes(client_cert, "client_cert"), _bytes(client_key, "client_key")
                steps.append((_lib.starttls_config_builder_set_client_cert_pem,
                              chain, len(chain), key, len(key)))
            else:
                steps.append((_lib.starttls_config_builder_set_client_cert_files,
                              _cstr(client_cert, "client_cert"), _cstr(client_key, "client_key")))
        if client_name is not None:
            steps.append((_lib.starttls_config_builder_set_client_name,
                          _cstr(client_name, "client_name")))
        for data in _alpn_list(alpn):
            steps.append((_lib.starttls_config_builder_add_alpn, data, len(data)))
        if min_tls_version is not None:
            steps.append((_lib.starttls_config_builder_set_min_tls_version,
                          _tls_version(min_tls_version)))
        if max_tls_version is not None:
            steps.append((_lib.starttls_config_builder_set_max_tls_version,
                          _tls_version(max_tls_version, "max_tls_version")))
        steps.append((_lib.starttls_config_builder_set_policy, int(self.policy)))
        if isinstance(timeout, dict):
            for phase, seconds in timeout.items():
                if phase not in _TIMEOUT_PHASES:
                    raise ValueError(f"unknown timeout phase {phase!r} "
                                     f"(known: {', '.join(_TIMEOUT_PHASES)})")
                steps.append((_lib.starttls_config_builder_set_phase_timeout_ms,
                              _TIMEOUT_PHASES[phase], _ms(seconds, f"timeout[{phase!r}]")))
        elif timeout is not None:
            steps.append((_lib.starttls_config_builder_set_timeout_ms, _ms(timeout, "timeout")))
        if fetch_capabilities:
            steps.append((_lib.starttls_config_builder_set_fetch_capabilities, True))
        if key_log:
            steps.append((_lib.starttls_config_builder_set_key_log_from_env, True))
        for pin in [pin_sha256] if isinstance(pin_sha256, str) else pin_sha256:
            steps.append((_lib.starttls_config_builder_add_pin_sha256, _cstr(pin, "pin_sha256")))
        if pin_only:
            steps.append((_lib.starttls_config_builder_set_pin_only, True))
        if dangerous_accept_any_certificate:
            steps.append((_lib.starttls_config_builder_dangerous_accept_any_certificate, True))
        if dangerous_allow_login_without_verification:
            steps.append(
                (_lib.starttls_config_builder_dangerous_allow_login_without_verification, True))
        if log is not None:
            if not callable(log):
                raise TypeError("log must be callable")
            self._callback = _make_log_callback(log)
            steps.append((_lib.starttls_config_builder_set_log_callback,
                          ctypes.cast(self._callback, ctypes.c_void_p), None))

        builder = _lib.starttls_config_builder_new()
        if not builder:
            raise PanicError("starttls_config_builder_new failed", code=102)
        try:
            for fn, *args in steps:
                _check(fn(builder, *args))
        except BaseException:
            _lib.starttls_config_builder_free(builder)
            raise
        out = ctypes.c_void_p()
        # build() frees the builder whatever the result.
        _check(_lib.starttls_config_builder_build(builder, ctypes.byref(out)))
        self._ptr = out.value

    def _handle(self) -> int:
        if self._ptr is None:
            raise ValueError("the config is closed")
        return self._ptr

    def close(self) -> None:
        """Frees the C config. Connections made from it stay usable."""
        with self._lock:
            ptr, self._ptr = self._ptr, None
        if ptr is not None:
            _lib.starttls_config_free(ptr)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # Bound at class creation so that __del__ still works while the interpreter shuts down.
    _free = staticmethod(_lib.starttls_config_free)

    def __del__(self) -> None:
        ptr = getattr(self, "_ptr", None)
        if ptr is not None:
            self._ptr = None
            self._free(ptr)


def _make_log_callback(log: _LogFn) -> _CFunctionType:
    def trampoline(_userdata: int | None, direction: int, encrypted: bool,
                   line: bytes | None) -> None:
        text = line.decode("utf-8", "replace") if line is not None else ""
        log("sent" if direction == DIRECTION_SENT else "received", bool(encrypted), text)
    # An exception raised by `log` is reported through sys.unraisablehook by ctypes.
    return _ffi.LOG_CALLBACK(trampoline)


_default_config: Config | None = None
_default_lock = threading.Lock()


def _config(config: Config | None) -> Config:
    global _default_config
    if config is not None:
        return config
    with _default_lock:
        if _default_config is None:
            _default_config = Config()
        return _default_config


# --------------------------------------------------------------------------------------------
# ServerConfig


_CLIENT_AUTH = {"optional": CLIENT_AUTH_OPTIONAL, "required": CLIENT_AUTH_REQUIRED,
                CLIENT_AUTH_OPTIONAL: CLIENT_AUTH_OPTIONAL,
                CLIENT_AUTH_REQUIRED: CLIENT_AUTH_REQUIRED}


class ServerConfig:
    """An immutable server configuration for :func:`accept_socket` and
    :func:`accept_tls_socket`; share it freely between threads and connections.

    - ``cert_file`` / ``key_file`` (PEM paths, read now) or ``cert_pem`` / ``key_pem`` (PEM
      bytes): the certificate chain and private key served by default. One is required.
    - ``sni_certs``: ``(name, cert_pem, key_pem)`` triples served when the client's SNI is
      ``name``.
    - ``client_ca_file``: verify client certificates against these CAs; ``client_auth`` is
      ``"optional"`` (the default) or ``"required"``.
    - ``alpn``: protocols the server accepts. ``min_tls_version``: ``"1.2"`` or ``"1.3"``.
    - ``session_tickets``: stateless tickets besides the in-memory session cache.
    - ``hostname`` (default ``localhost``) and ``greeting``: what the greeting announces.
    - ``timeout``: seconds for every phase (each client command, the handshake, each I/O).
    - ``dangerous_allow_login_without_verification``: let ``authenticate`` send credentials
      over a connection whose certificate was not verified (refused otherwise).
    - ``log``: ``callable(direction, encrypted, line)`` for every dialog line, as for
      :class:`Config`; it runs on the accepting thread.

    The C config is freed by :meth:`close` (or when collected); connections made from it stay
    usable.
    """

    def __init__(self, cert_file: _StrPath | None = None, key_file: _StrPath | None = None,
                 cert_pem: _AnyBytes | None = None, key_pem: _AnyBytes | None = None,
                 sni_certs: Iterable[tuple[str, _AnyBytes, _AnyBytes]] = (),
                 client_ca_file: _StrPath | None = None, client_auth: str | int = "optional",
                 alpn: _ManyBytes = (), min_tls_version: str | int | None = None,
                 session_tickets: bool = False, hostname: str | None = None,
                 greeting: str | None = None, timeout: float | None = None,
                 log: _LogFn | None = None) -> None:
        self._ptr: int | None = None
        # Keeps the C callback alive while the config or its conns live.
        self._callback: _CFunctionType | None = None
        self._lock = threading.Lock()

        # Validate everything in Python first, so that a TypeError leaks no builder.
        steps: list[tuple[Any, ...]] = []
        chain: _AnyBytes
        key: _AnyBytes
        if (cert_file is None) != (key_file is None):
            raise ValueError("cert_file and key_file go together")
        if (cert_pem is None) != (key_pem is None):
            raise ValueError("cert_pem and key_pem go together")
        if cert_file is not None and cert_pem is not None:
            raise ValueError("give cert_file/key_file or cert_pem/key_pem, not both")
        if cert_file is not None:
            steps.append((_lib.starttls_server_config_builder_set_certificate_files,
                          _cstr(cert_file, "cert_file"), _cstr(key_file, "key_file")))
        if cert_pem is not None:
            chain, key = _bytes(cert_pem, "cert_pem"), _bytes(key_pem, "key_pem")
            steps.append((_lib.starttls_server_config_builder_add_certificate_pem,
                          chain, len(chain), key, len(key)))
        for entry in sni_certs:
            try:
                name, chain, key = entry
            except (TypeError, ValueError):
                raise ValueError("sni_certs holds (name, cert_pem, key_pem) triples") from None
            chain, key = _bytes(chain, "sni cert_pem"), _bytes(key, "sni key_pem")
            steps.append((_lib.starttls_server_config_builder_add_sni_certificate_pem,
                          _cstr(name, "sni name"), chain, len(chain), key, len(key)))
        mode = client_auth.lower() if isinstance(client_auth, str) else client_auth
        if isinstance(mode, bool) or mode not in _CLIENT_AUTH:
            raise ValueError(f"client_auth must be 'optional' or 'required', not {client_auth!r}")
        if client_ca_file is not None:
            steps.append((_lib.starttls_server_config_builder_set_client_ca_file,
                          _cstr(client_ca_file, "client_ca_file"), _CLIENT_AUTH[mode]))
        for data in _alpn_list(alpn):
            steps.append((_lib.starttls_server_config_builder_add_alpn, data, len(data)))
        if min_tls_version is not None:
            steps.append((_lib.starttls_server_config_builder_set_min_tls_version,
                          _tls_version(min_tls_version)))
        if session_tickets:
            steps.append((_lib.starttls_server_config_builder_set_session_tickets, True))
        if hostname is not None:
            steps.append((_lib.starttls_server_config_builder_set_hostname,
                          _cstr(hostname, "hostname")))
        if greeting is not None:
            steps.append((_lib.starttls_server_config_builder_set_greeting,
                          _cstr(greeting, "greeting")))
        if timeout is not None:
            steps.append((_lib.starttls_server_config_builder_set_timeout_ms,
                          _ms(timeout, "timeout")))
        if log is not None:
            if not callable(log):
                raise TypeError("log must be callable")
            self._callback = _make_log_callback(log)
            steps.append((_lib.starttls_server_config_builder_set_log_callback,
                          ctypes.cast(self._callback, ctypes.c_void_p), None))

        builder = _lib.starttls_server_config_builder_new()
        if not builder:
            raise PanicError("starttls_server_config_builder_new failed", code=102)
        try:
            for fn, *args in steps:
                _check(fn(builder, *args))
        except BaseException:
            _lib.starttls_server_config_builder_free(builder)
            raise
        out = ctypes.c_void_p()
        # build() frees the builder whatever the result.
        _check(_lib.starttls_server_config_builder_build(builder, ctypes.byref(out)))
        self._ptr = out.value

    def _handle(self) -> int:
        if self._ptr is None:
            raise ValueError("the server config is closed")
        return self._ptr

    def close(self) -> None:
        """Frees the C config. Connections made from it stay usable."""
        with self._lock:
            ptr, self._ptr = self._ptr, None
        if ptr is not None:
            _lib.starttls_server_config_free(ptr)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    _free = staticmethod(_lib.starttls_server_config_free)

    def __del__(self) -> None:
        ptr = getattr(self, "_ptr", None)
        if ptr is not None:
            self._ptr = None
            self._free(ptr)


# --------------------------------------------------------------------------------------------
# Connection


class _ConnectionIO(io.RawIOBase):
    """The raw stream under ``Connection.makefile``: reads and writes go to the connection."""

    def __init__(self, conn: Connection, mode: str) -> None:
        super().__init__()
        self._conn = conn
        self._reading = "r" in mode
        self._writing = "w" in mode

    def readable(self) -> bool:
        return self._reading

    def writable(self) -> bool:
        return self._writing

    def readinto(self, b: WriteableBuffer) -> int:
        self._checkClosed()
        return self._conn.recv_into(b)

    def write(self, b: ReadableBuffer) -> int:
        self._checkClosed()
        return self._conn.send(bytes(b))

    def fileno(self) -> int:
        return self._conn.fileno()


class Connection:
    """An upgraded connection: read and write decrypted bytes.

    Made by :func:`connect`, :func:`upgrade_socket` or :func:`handshake_socket` on the client
    side, by :func:`accept_socket` or :func:`accept_tls_socket` on the server side
    (:attr:`is_server`). Either way it stands where the protocol says the client speaks next
    (for SMTP: the client sends EHLO again).
    :meth:`close` sends close_notify (reading may go on); :meth:`free` releases it without
    that; a ``with`` block does both. The socket is closed on free only when the library owns
    it (``connect()``, or ``take_ownership=True``). Calls are serialised with a lock, so a
    call from a second thread waits for the first (a read waits at most the I/O timeout).
    """

    def __init__(self, ptr: int | None, *, sock: socket.socket | None = None,
                 config: Config | ServerConfig | None = None) -> None:
        self._ptr = ptr
        self._sock = sock  # a borrowed socket is kept open as long as the connection lives
        self._config = config  # keeps a log callback alive
        self._callback = config._callback if config is not None else None
        self._lock = threading.RLock()
        self._rbuf = b""
        self._timeout: float | None = None

    # -- plumbing ----------------------------------------------------------------------------

    def _handle(self) -> int:
        if self._ptr is None:
            raise ValueError("I/O operation on a freed connection")
        return self._ptr

    def _call(self, fn: Callable[..., int], *args: Any) -> None:
        """Calls ``fn(conn, *args)`` and raises the connection's error on failure."""
        with self._lock:
            ptr = self._handle()
            code = fn(ptr, *args)
            if code in (_WANT_READ, _WANT_WRITE):
                raise BlockingIOError(
                    errno.EAGAIN,
                    "the socket is not ready: wait for it to be "
                    + ("readable" if code == _WANT_READ else "writable")
                    + " (select/poll; pending() first) and call again",
                )
            if code != 0:
                message = _ffi.get_string(_lib.starttls_conn_error, ptr).decode("utf-8", "replace")
                raise _error(code, message, _lib.starttls_conn_os_error(ptr))

    def _string(self, fn: Callable[..., int]) -> str:
        with self._lock:
            return _ffi.get_string(fn, self._handle()).decode("utf-8", "replace")

    def _value(self, fn: Callable[..., Any], *args: Any) -> Any:
        with self._lock:
            return fn(self._handle(), *args)

    # -- I/O ---------------------------------------------------------------------------------

    def read(self, n: int = 16384) -> bytes:
        """Reads up to ``n`` decrypted bytes, blocking within the I/O timeout. Returns ``b""``
        when the peer closed cleanly (close_notify); a close without it raises ClosedError."""
        if n < 0:
            raise ValueError("n must be >= 0")
        with self._lock:
            if self._rbuf:
                data, self._rbuf = self._rbuf[:n], self._rbuf[n:]
                return data
            if n == 0:
                return b""
            buf = ctypes.create_string_buffer(n)
            out = ctypes.c_size_t()
            self._call(_lib.starttls_read, buf, n, ctypes.byref(out))
            return buf.raw[:out.value]

    def readline(self, limit: int = 65536) -> bytes:
        """Reads up to and including ``b"\\n"`` (or ``limit`` bytes, or to the end)."""
        with self._lock:
            while b"\n" not in self._rbuf and len(self._rbuf) < limit:
                buf = ctypes.create_string_buffer(16384)
                out = ctypes.c_size_t()
                self._call(_lib.starttls_read, buf, 16384, ctypes.byref(out))
                if out.value == 0:
                    break
                self._rbuf += buf.raw[:out.value]
            end = self._rbuf.find(b"\n")
            end = len(self._rbuf) if end < 0 else end + 1
            end = min(end, limit)
            line, self._rbuf = self._rbuf[:end], self._rbuf[end:]
            return line

    def write(self, data: _AnyBytes) -> int:
        """Writes ``data`` (bytes-like) and flushes it; returns the number of bytes taken."""
        data = _bytes(data, "data") if not isinstance(data, bytes) else data
        out = ctypes.c_size_t()
        self._call(_lib.starttls_write, data, len(data), ctypes.byref(out))
        return out.value

    def sendall(self, data: _AnyBytes) -> None:
        """Writes all of ``data``."""
        data = _bytes(data, "data") if not isinstance(data, bytes) else data
        view = memoryview(data)
        while view:
            n = self.write(view[:1 << 20].tobytes())
            view = view[n:]

    # -- the socket interface (so that the standard library's clients can use a Connection) -

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        """As ``socket.recv``: up to ``bufsize`` decrypted bytes, ``b""`` at a clean close.
        In non-blocking mode (``setblocking(False)``) raises ``BlockingIOError`` when nothing
        can be read now."""
        if flags:
            raise ValueError("recv flags are not supported on a TLS connection")
        return self.read(bufsize)

    def recv_into(self, buffer: WriteableBuffer, nbytes: int = 0, flags: int = 0) -> int:
        """As ``socket.recv_into``: reads into a writable bytes-like object; returns the count."""
        view = memoryview(buffer).cast("B")
        n = nbytes or len(view)
        if n < 0 or n > len(view):
            raise ValueError("nbytes is negative or larger than the buffer")
        data = self.recv(n, flags)
        view[:len(data)] = data
        return len(data)

    def send(self, data: _AnyBytes, flags: int = 0) -> int:
        """As ``socket.send``: writes ``data``; returns how many bytes were taken."""
        if flags:
            raise ValueError("send flags are not supported on a TLS connection")
        return self.write(data)

    def settimeout(self, value: float | None) -> None:
        """As ``socket.settimeout``: ``None`` blocks without a limit, ``0`` is non-blocking,
        a number of seconds bounds every read and write (``starttls.TimeoutError``, a
        ``TimeoutError``, when it runs out)."""
        if value is None:
            self.set_io_timeout(0)
            self.setblocking(True)
            self._timeout = None
            return
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ValueError(f"timeout must be None or a number >= 0, not {value!r}")
        if value == 0:
            self.setblocking(False)
        else:
            self.set_io_timeout(value)
            self.setblocking(True)
        self._timeout = float(value)

    def gettimeout(self) -> float | None:
        """As ``socket.gettimeout``: seconds, ``0.0`` when non-blocking, ``None`` without a
        limit set here (the config's I/O timeout then applies)."""
        return self._timeout

    def setblocking(self, flag: bool) -> None:
        """As ``socket.setblocking``: switches the socket's ``O_NONBLOCK``; non-blocking reads
        and writes raise ``BlockingIOError`` instead of waiting."""
        os.set_blocking(self.fileno(), bool(flag))
        self._timeout = None if flag else 0.0

    def getblocking(self) -> bool:
        """As ``socket.getblocking``."""
        return os.get_blocking(self.fileno())

    def shutdown(self, how: int) -> None:
        """As ``socket.shutdown``: ``SHUT_WR``/``SHUT_RDWR`` send close_notify (reading may
        go on); ``SHUT_RD`` does nothing (TLS has no half-close for reading)."""
        if how not in (socket.SHUT_RD, socket.SHUT_WR, socket.SHUT_RDWR):
            raise ValueError(f"unknown shutdown mode {how!r}")
        if how != socket.SHUT_RD:
            self.close()

    @overload
    def makefile(self, mode: _BinaryMode, buffering: Literal[0], *, encoding: str | None = None,
                 errors: str | None = None, newline: str | None = None) -> _ConnectionIO: ...

    @overload
    def makefile(self, mode: Literal["rwb", "rbw", "wrb", "wbr", "brw", "bwr"],
                 buffering: Literal[-1, 1] | None = None, *, encoding: str | None = None,
                 errors: str | None = None, newline: str | None = None) -> io.BufferedRWPair: ...

    @overload
    def makefile(self, mode: Literal["b", "rb", "br"], buffering: Literal[-1, 1] | None = None,
                 *, encoding: str | None = None, errors: str | None = None,
                 newline: str | None = None) -> io.BufferedReader: ...

    @overload
    def makefile(self, mode: Literal["wb", "bw"], buffering: Literal[-1, 1] | None = None, *,
                 encoding: str | None = None, errors: str | None = None,
                 newline: str | None = None) -> io.BufferedWriter: ...

    @overload
    def makefile(self, mode: Literal["r", "w", "rw", "wr"] = "r", buffering: int | None = None,
                 *, encoding: str | None = None, errors: str | None = None,
                 newline: str | None = None) -> io.TextIOWrapper: ...

    @overload
    def makefile(self, mode: str = "r", buffering: int | None = None, *,
                 encoding: str | None = None, errors: str | None = None,
                 newline: str | None = None) -> io.IOBase: ...

    def makefile(self, mode: str = "r", buffering: int | None = None, *,
                 encoding: str | None = None, errors: str | None = None,
                 newline: str | None = None) -> io.IOBase:
        """As ``socket.makefile``: a file object over the decrypted stream (``"rb"`` for
        smtplib, imaplib and poplib). Closing it leaves the connection open."""
        if not set(mode) <= {"r", "w", "b"}:
            raise ValueError(f"invalid mode {mode!r} (only r, w, b)")
        reading, writing, binary = "r" in mode, "w" in mode, "b" in mode
        if not reading and not writing:
            reading = True
        raw = _ConnectionIO(self, ("r" if reading else "") + ("w" if writing else ""))
        if buffering is None:
            buffering = -1
        if buffering < 0:
            buffering = io.DEFAULT_BUFFER_SIZE
        if buffering == 0:
            if not binary:
                raise ValueError("unbuffered streams must be binary")
            return raw
        buffered: io.BufferedIOBase
        if reading and writing:
            buffered = io.BufferedRWPair(raw, raw, buffering)
        elif reading:
            buffered = io.BufferedReader(raw, buffering)
        else:
            buffered = io.BufferedWriter(raw, buffering)
        if binary:
            return buffered
        # Any: typeshed's BufferedRWPair lacks the .name TextIOWrapper's stub asks for, and its
        # TextIOWrapper.mode is read-only (it is writable at run time).
        text = io.TextIOWrapper(cast(Any, buffered), encoding, errors, newline)
        cast(Any, text).mode = mode
        return text

    def close(self) -> None:
        """Sends close_notify (and, for a socket the library owns, shuts its write side).
        Does not free: reading may go on until the peer closes. Idempotent after free."""
        with self._lock:
            if self._ptr is None:
                return
            self._call(_lib.starttls_close)

    def free(self) -> None:
        """Releases the connection without close_notify. Closes the socket only if the
        library owns it; a borrowed socket stays open and is the caller's again."""
        with self._lock:
            ptr, self._ptr = self._ptr, None
            self._sock = None
        if ptr is not None:
            _lib.starttls_conn_free(ptr)

    @property
    def freed(self) -> bool:
        """True after :meth:`free`."""
        return self._ptr is None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if self._ptr is not None:
                self.close()
        except Error:
            pass
        finally:
            self.free()

    _free = staticmethod(_lib.starttls_conn_free)

    def __del__(self) -> None:
        ptr = getattr(self, "_ptr", None)
        if ptr is not None:
            self._ptr = None
            self._free(ptr)

    def fileno(self) -> int:
        """The socket's fd (the library's for connect(): do not close it)."""
        fd: int = self._value(_lib.starttls_conn_fd)
        return fd

    @property
    def certificate_facts(self) -> _CertificateFacts | None:
        """What the peer's leaf certificate says about itself, or ``None`` without one: a dict
        with ``not_before`` and ``not_after`` (Unix times), ``subject``, ``issuer``, ``names``
        (``["DNS:mx.example.org", ...]``), ``sha256`` and ``spki_sha256`` (hex)."""
        before, after = ctypes.c_int64(), ctypes.c_int64()
        with self._lock:
            ptr = self._handle()
            if _lib.starttls_conn_peer_cert_validity(ptr, ctypes.byref(before),
                                                     ctypes.byref(after)) != 0:
                return None
            digests: list[str] = []
            for spki in (False, True):
                out = ctypes.create_string_buffer(32)
                _check(_lib.starttls_conn_peer_cert_sha256(ptr, spki, out))
                digests.append(out.raw.hex())
        names = self._string(_lib.starttls_conn_peer_cert_names)
        return {
            "not_before": before.value,
            "not_after": after.value,
            "subject": self._string(_lib.starttls_conn_peer_cert_subject),
            "issuer": self._string(_lib.starttls_conn_peer_cert_issuer),
            "names": names.split("\n") if names else [],
            "sha256": digests[0],
            "spki_sha256": digests[1],
        }

    def pending(self) -> int:
        """Decrypted bytes that ``read`` can return now without touching the socket (the
        library's and this wrapper's buffers, after a ``readline``): drain them before waiting in
        ``select``/``poll``, which does not see them."""
        with self._lock:
            n: int = self._value(_lib.starttls_conn_pending)
            return n + len(self._rbuf)

    def cipher_bits(self) -> int:
        """The negotiated cipher's strength in bits (128, 256), 0 without TLS."""
        bits: int = self._value(_lib.starttls_conn_cipher_bits)
        return bits

    def set_io_timeout(self, seconds: float) -> None:
        """This connection's read/write timeout in seconds (``0``: none), instead of the
        config's I/O timeout (an IMAP IDLE may wait longer than other reads)."""
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds < 0:
            raise ValueError(f"seconds must be a number >= 0, not {seconds!r}")
        self._call(_lib.starttls_conn_set_io_timeout_ms, int(seconds * 1000))

    # -- details -----------------------------------------------------------------------------

    @property
    def tls_version(self) -> str | None:
        """``"TLSv1.2"``, ``"TLSv1.3"``, or ``None`` when not encrypted."""
        v: int = self._value(_lib.starttls_conn_tls_version)
        return {0: None, TLS_1_2: "TLSv1.2", TLS_1_3: "TLSv1.3"}.get(v, f"0x{v:04x}")

    @property
    def cipher(self) -> str | None:
        """The IANA name of the cipher suite, or ``None`` when not encrypted."""
        return self._string(_lib.starttls_conn_cipher_suite) or None

    @property
    def dane(self) -> str | None:
        """What DANE decided: the TLSA record that authenticated the server (``"3 1 1 ..."``),
        ``"no-usable-records"`` when none could be used (SMTP is then encrypted but not
        authenticated), or ``None`` for a connection made without ``tlsa``."""
        status: int = self._value(_lib.starttls_conn_dane)
        if status == 1:
            return self._string(_lib.starttls_conn_dane_matched)
        return "no-usable-records" if status == 2 else None

    @property
    def key_exchange(self) -> str | None:
        """The key-exchange group (``"X25519"``, ``"X25519MLKEM768"``, ``"secp256r1"``), or
        ``None`` when not encrypted."""
        return self._string(_lib.starttls_conn_key_exchange_group) or None

    @property
    def cipher_id(self) -> int:
        """The IANA number of the cipher suite, 0 when not encrypted."""
        suite: int = self._value(_lib.starttls_conn_cipher_suite_id)
        return suite

    @property
    def alpn(self) -> bytes | None:
        """The negotiated ALPN protocol (bytes), or ``None``."""
        buf = ctypes.create_string_buffer(256)  # ALPN names are at most 255 bytes
        out = ctypes.c_size_t()
        self._call(_lib.starttls_conn_alpn, buf, 256, ctypes.byref(out))
        return buf.raw[:out.value] or None

    @property
    def peer_certificates(self) -> list[bytes]:
        """The server's chain as a list of DER ``bytes``, leaf first (empty in plaintext)."""
        certs: list[bytes] = []
        with self._lock:
            count: int = _lib.starttls_conn_peer_cert_count(self._handle())
            for i in range(count):
                size: int = _lib.starttls_conn_peer_cert_len(self._ptr, i)
                buf = ctypes.create_string_buffer(max(size, 1))
                out = ctypes.c_size_t()
                self._call(_lib.starttls_conn_peer_cert, i, buf, size, ctypes.byref(out))
                certs.append(buf.raw[:out.value])
        return certs

    @property
    def greeting(self) -> str | None:
        """The server's greeting (lines joined by ``\\n``), or ``None``. For STARTTLS it came
        in plaintext: show it, do not act on it."""
        return self._string(_lib.starttls_conn_greeting) or None

    @property
    def capabilities_before_tls(self) -> list[str]:
        """Capabilities seen in plaintext (a list of str). UNTRUSTED: informational only."""
        text = self._string(_lib.starttls_conn_capabilities_before_tls)
        return text.split("\n") if text else []

    @property
    def capabilities(self) -> list[str] | None:
        """Capabilities learned inside TLS (a list of str), or ``None`` if none are known."""
        if not self._value(_lib.starttls_conn_has_capabilities):
            return None
        text = self._string(_lib.starttls_conn_capabilities)
        return text.split("\n") if text else []

    def quit(self) -> None:
        """Ends the session politely: the protocol's goodbye inside TLS (QUIT, LOGOUT, ...),
        its reply, then close_notify."""
        self._call(_lib.starttls_conn_quit)

    def authenticate(self, user: str | bytes, password: str | bytes, authzid: str | None = None,
                     database: str | None = None) -> AuthOutcome:
        """Logs in inside TLS with the strongest mechanism the server offers there:
        SCRAM-SHA-256-PLUS (bound to this TLS connection), SCRAM-SHA-256, PLAIN, then the
        protocol's own (SMTP AUTH LOGIN, IMAP LOGIN, POP3 USER/PASS, NNTP AUTHINFO USER, LDAP
        simple bind, FTP USER/PASS). PostgreSQL logs in to ``database`` (default: the user
        name) with SCRAM, md5 or the password, as the server asks, and the connection is then
        ready for queries. Returns an ``AuthOutcome`` (``mechanism``, ``channel_binding``:
        ``"tls-exporter"``, ``"tls-server-end-point"`` or None). Raises
        NotEncryptedError on a plaintext connection (nothing is sent), Error (invalid argument)
        on a connection whose certificate was not verified unless the config was made with
        ``dangerous_allow_login_without_verification=True``, AuthenticationError with the
        server's reply when the login is rejected, RefusedError when PostgreSQL accepted the
        credentials but not the session (no such database).

        The library wipes every copy of the password it makes; the ``str`` and ``bytes`` objects
        that hold it on the Python side are immutable and cannot be wiped from here."""
        if database is not None:
            if authzid is not None:
                raise ValueError("authzid and database cannot be combined")
            self._call(
                _lib.starttls_conn_authenticate_database,
                _cstr(user, "user"),
                _cstr(password, "password"),
                _cstr(database, "database"),
            )
        else:
            self._call(
                _lib.starttls_conn_authenticate,
                _cstr(user, "user"),
                _cstr(password, "password"),
                _cstr(authzid, "authzid"),
            )
        return self._auth_outcome()

    def authenticate_token(self, user: str | bytes, token: str | bytes,
                           mechanism: str | None = None) -> AuthOutcome:
        """Logs in inside TLS with an OAuth 2.0 bearer token you obtained (the library fetches
        none): OAUTHBEARER (RFC 7628) where offered, else XOAUTH2, or only ``mechanism``. The
        token is never sent as a password. Returns an ``AuthOutcome``; a rejection raises
        AuthenticationError whose message carries the server's JSON error decoded
        (``status=invalid_token scope=...``), never the token."""
        self._call(
            _lib.starttls_conn_authenticate_token,
            _cstr(user, "user"),
            _cstr(token, "token"),
            _cstr(mechanism, "mechanism"),
        )
        return self._auth_outcome()

    def authenticate_external(self, authzid: str | None = None) -> AuthOutcome:
        """Logs in inside TLS with SASL EXTERNAL: the client certificate the config presented
        (``Config(client_cert=..., client_key=...)``) is the identity, ``authzid`` the identity
        to act as. Returns an ``AuthOutcome``."""
        self._call(_lib.starttls_conn_authenticate_external, _cstr(authzid, "authzid"))
        return self._auth_outcome()

    def _auth_outcome(self) -> AuthOutcome:
        return AuthOutcome(
            self._string(_lib.starttls_conn_auth_mechanism),
            self._string(_lib.starttls_conn_auth_channel_binding) or None,
        )

    def fetch_capabilities(self) -> list[str]:
        """Asks the server for its capabilities again, inside TLS, and returns them."""
        self._call(_lib.starttls_conn_fetch_capabilities)
        return self.capabilities or []

    @property
    def encrypted(self) -> bool:
        """True when the connection is encrypted (always, under Policy.REQUIRE)."""
        return bool(self._value(_lib.starttls_conn_is_encrypted))

    @property
    def plaintext_reason(self) -> type[Error] | None:
        """Why the connection is not encrypted: an Error subclass (e.g. NotOfferedError), or
        ``None`` when it is encrypted."""
        code: int = self._value(_lib.starttls_conn_plaintext_reason)
        return None if code == 0 else error_class(code)

    @property
    def starttls_offered(self) -> bool | None:
        """True/False: whether STARTTLS was advertised in plaintext; None when not asked."""
        v: int = self._value(_lib.starttls_conn_starttls_offered)
        return None if v < 0 else bool(v)

    @property
    def resumed(self) -> bool:
        """True when this connection resumed an earlier TLS session of the same config."""
        return bool(self._value(_lib.starttls_conn_is_resumed))

    @property
    def is_server(self) -> bool:
        """True for a connection made by :func:`accept_socket` / :func:`accept_tls_socket`."""
        return bool(self._value(_lib.starttls_conn_is_server))

    @property
    def peer_name(self) -> str | None:
        """Server side: the name the client gave before TLS (EHLO/LHLO argument, XMPP ``to``,
        HTTP ``Host``), or ``None``. UNTRUSTED: it came in plaintext."""
        return self._string(_lib.starttls_conn_peer_name) or None

    @property
    def verification(self) -> str:
        """``"verified"``, ``"skipped"`` (dangerous mode), ``"not-encrypted"``, or on the
        server side ``"no-peer-certificate"`` when the client presented none."""
        v: int = self._value(_lib.starttls_conn_verification)
        return _VERIFICATION.get(v, Verification.NOT_ENCRYPTED).value

    @property
    def verification_problem(self) -> str | None:
        """In dangerous mode, what verification would have rejected; otherwise ``None``."""
        return self._string(_lib.starttls_conn_verification_problem) or None

    def __repr__(self) -> str:
        if self._ptr is None:
            return "<starttls.Connection freed>"
        return (f"<starttls.Connection fd={self.fileno()} {self.tls_version or 'plaintext'} "
                f"{self.verification}>")


# --------------------------------------------------------------------------------------------
# Entry points


def _new_conn(fn: Callable[..., int], *args: Any) -> int | None:
    out = ctypes.c_void_p()
    _check(fn(*args, ctypes.byref(out)))
    return out.value


class _TlsaSet:
    """A C ``starttls_tlsa_set`` for one call: records as ``"3 1 1 0f3c..."`` text or
    ``(usage, selector, matching_type, data)`` tuples."""

    def __init__(self, tlsa: _TlsaArg) -> None:
        if isinstance(tlsa, (str, bytes, tuple)):
            raise TypeError("tlsa must be a list of records (\"3 1 1 ...\" or tuples)")
        self._ptr = _lib.starttls_tlsa_set_new()
        if not self._ptr:
            raise PanicError("starttls_tlsa_set_new failed", code=102)
        try:
            for record in tlsa:
                if isinstance(record, str):
                    _check(_lib.starttls_tlsa_set_add_text(self._ptr, _cstr(record, "tlsa")))
                elif isinstance(record, tuple) and len(record) == 4:
                    usage, selector, matching, data = record
                    fields = (usage, selector, matching)
                    if not all(isinstance(f, int) and 0 <= f <= 255 for f in fields):
                        raise ValueError(f"TLSA fields must be ints 0..255: {record!r}")
                    raw = _bytes(data, "tlsa data")
                    _check(_lib.starttls_tlsa_set_add(self._ptr, usage, selector, matching,
                                                      raw, len(raw)))
                else:
                    raise TypeError(f"a TLSA record is text or a 4-tuple, not {record!r}")
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self._ptr:
            _lib.starttls_tlsa_set_free(self._ptr)
            self._ptr = None

    def __enter__(self) -> _TlsaSet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def connect(protocol: _ProtocolArg, host: str, port: int | None = None, *,
            config: Config | None = None, server_name: str | None = None,
            tlsa: _TlsaArg | None = None) -> Connection:
    """Connects to ``host:port``, runs ``protocol``'s upgrade and the TLS handshake, and
    verifies the certificate for ``server_name`` (default: ``host``).

    ``protocol`` is a :class:`Protocol` or its name (``"smtp"``, ``"imaps"``, ...); ``port``
    defaults to the protocol's well-known port (``Protocol.TLS`` needs one). The library owns
    the socket. ``config`` defaults to a shared ``Config()``.

    ``tlsa``: the destination's TLSA records (DANE, as an MTA looked them up, DNSSEC-validated),
    as ``"3 1 1 0f3c..."`` text or ``(usage, selector, matching_type, data)`` tuples; they
    authenticate the server instead of the config's roots (DANE-EE by the record alone, names
    and validity unchecked; DANE-TA with the named certificate as the only anchor, the name
    checked). A set that authenticates nothing raises :class:`CertificateError` naming the
    records tried; :attr:`Connection.dane` tells what decided.
    """
    p = _protocol(protocol)
    if port is None:
        port = default_port(p)
        if port is None:
            raise ValueError(f"protocol {protocol!r} has no default port: pass port=")
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port <= 0xFFFF:
        raise ValueError(f"port must be an int in 1..65535, not {port!r}")
    cfg = _config(config)
    if tlsa is None:
        ptr = _new_conn(_lib.starttls_connect, cfg._handle(), int(p), _cstr(host, "host"), port,
                        _cstr(server_name, "server_name"))
    else:
        with _TlsaSet(tlsa) as records:
            ptr = _new_conn(_lib.starttls_connect_dane, cfg._handle(), int(p),
                            _cstr(host, "host"), port, _cstr(server_name, "server_name"),
                            records._ptr)
    return Connection(ptr, config=cfg)


def _fd_upgrade(sock: socket.socket, config: Config | None, take_ownership: bool,
                call: Callable[[int, int, int, Any], int]) -> Connection:
    if not hasattr(sock, "fileno"):
        raise TypeError("sock must be a socket object")
    cfg = _config(config)
    handle = cfg._handle()
    flags = FD_TAKE_OWNERSHIP if take_ownership else 0
    if take_ownership:
        # The library owns the fd from here on, even if the call fails.
        fd = sock.detach()
        keep: socket.socket | None = None
    else:
        fd = sock.fileno()
        keep = sock
    if fd < 0:
        raise ValueError("the socket is closed")
    ptr = _new_conn(call, handle, fd, flags)
    return Connection(ptr, sock=keep, config=cfg)


def upgrade_socket(sock: socket.socket, protocol: _ProtocolArg, server_name: str, *,
                   config: Config | None = None, take_ownership: bool = False,
                   tlsa: _TlsaArg | None = None) -> Connection:
    """Runs ``protocol``'s upgrade and the handshake on ``sock``, a socket you connected and
    have not read from, verifying the certificate for ``server_name``.

    By default the socket is borrowed: the Connection keeps a reference to it, the library
    works on a duplicate fd and never closes yours, and you must not use the socket until the
    Connection is freed. The library sets the fd to blocking mode, TCP_NODELAY and its own
    timeouts. With ``take_ownership=True`` the socket is detached and the library closes the
    fd when the Connection is freed (or at once on failure). ``tlsa``: DANE, as for
    :func:`connect`.
    """
    p = _protocol(protocol)
    name = _cstr(server_name, "server_name")
    if tlsa is None:
        return _fd_upgrade(sock, config, take_ownership,
                           lambda cfg, fd, flags, out: _lib.starttls_upgrade_fd(
                               cfg, int(p), fd, name, flags, out))
    with _TlsaSet(tlsa) as records:
        return _fd_upgrade(sock, config, take_ownership,
                           lambda cfg, fd, flags, out: _lib.starttls_upgrade_fd_dane(
                               cfg, int(p), fd, name, flags, records._ptr, out))


def handshake_socket(sock: socket.socket, server_name: str, *, config: Config | None = None,
                     take_ownership: bool = False) -> Connection:
    """TLS only, for a caller that ran the dialog itself and read the go-ahead (and nothing
    after it). Socket ownership as for :func:`upgrade_socket`."""
    name = _cstr(server_name, "server_name")
    return _fd_upgrade(sock, config, take_ownership,
                       lambda cfg, fd, flags, out: _lib.starttls_handshake_fd(
                           cfg, fd, name, flags, out))


def _fd_accept(sock: socket.socket, config: ServerConfig, take_ownership: bool,
               call: Callable[[int, int, int, Any], int]) -> Connection:
    if not isinstance(config, ServerConfig):
        raise TypeError(f"config must be a ServerConfig, not {type(config).__name__}")
    if not hasattr(sock, "fileno"):
        raise TypeError("sock must be a socket object")
    handle = config._handle()
    if sock.fileno() < 0:
        raise ValueError("the socket is closed")
    flags = FD_TAKE_OWNERSHIP if take_ownership else 0
    if take_ownership:
        # The library owns the fd from here on, even if the call fails.
        fd = sock.detach()
        keep: socket.socket | None = None
    else:
        fd = sock.fileno()
        keep = sock
    ptr = _new_conn(call, handle, fd, flags)
    return Connection(ptr, sock=keep, config=config)


def accept_socket(sock: socket.socket, protocol: _ProtocolArg, config: ServerConfig, *,
                  take_ownership: bool = False) -> Connection:
    """Plays the server side of ``protocol`` on ``sock``, a socket you accepted and have not
    read from: greeting, capabilities advertising STARTTLS, "TLS first" answers to other
    commands, credentials refused, the go-ahead, then the TLS handshake with ``config`` (a
    :class:`ServerConfig`). The returned Connection stands where the client speaks next.

    A client that pipelines anything after its STARTTLS command gets no go-ahead: this raises
    :class:`InjectionError`, and those bytes are never read as commands.

    By default the socket is borrowed: the Connection keeps a reference to it, the library
    works on a duplicate fd and never closes yours, and you must not use the socket until the
    Connection is freed (the library sets it to blocking mode and its own timeouts). With
    ``take_ownership=True`` the socket is detached and the library closes the fd when the
    Connection is freed, or at once on failure.
    """
    p = _protocol(protocol)
    return _fd_accept(sock, config, take_ownership,
                      lambda cfg, fd, flags, out: _lib.starttls_accept_fd(
                          cfg, int(p), fd, flags, out))


def accept_tls_socket(sock: socket.socket, config: ServerConfig,
                      buffered: _AnyBytes | None = b"", *,
                      take_ownership: bool = False) -> Connection:
    """TLS only, for a server that ran its own dialog on ``sock`` and just sent its go-ahead.

    ``buffered`` is whatever you had already read from the client after its STARTTLS command.
    It must be empty: anything there means the client pipelined data after STARTTLS, and this
    raises :class:`InjectionError` without reading from the socket. Socket ownership as for
    :func:`accept_socket`.
    """
    data = _bytes(buffered, "buffered") if buffered is not None else b""
    return _fd_accept(sock, config, take_ownership,
                      lambda cfg, fd, flags, out: _lib.starttls_accept_tls_fd(
                          cfg, fd, data or None, len(data), flags, out))
