"""The ctypes layer: finds libstarttls, declares every exported function.

Nothing here is public API; use the names re-exported by the ``starttls`` package.
ctypes.CDLL releases the GIL for the duration of every call, so a blocking connect, read or
write in one thread does not stop other Python threads.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import glob
import os
import sys
from typing import Any, Callable, Iterator

__all__ = ["lib", "library_path", "LOG_CALLBACK"]

_HERE = os.path.dirname(os.path.abspath(__file__))


def _shared_suffix() -> str:
    if sys.platform == "darwin":
        return ".dylib"
    if sys.platform == "win32":
        return ".dll"
    return ".so"


def _candidates() -> Iterator[tuple[str, str | None]]:
    """Yields (description, path) pairs in the documented search order."""
    env = os.environ.get("STARTTLS_LIBRARY")
    if env:
        yield "$STARTTLS_LIBRARY", env
        return
    suffix = _shared_suffix()
    name = "starttls.dll" if suffix == ".dll" else "libstarttls" + suffix
    # The copy `pip install` built into the package (_libstarttls.cpython-*.so), or one installed
    # beside it by hand (libstarttls.so, libstarttls.so.0, ...).
    beside = sorted(glob.glob(os.path.join(_HERE, "_libstarttls*" + suffix)))
    beside += sorted(glob.glob(os.path.join(_HERE, glob.escape(name) + "*")))
    if beside:
        for path in beside:
            yield "beside the package", path
    else:
        yield "beside the package", os.path.join(_HERE, name + "*")
    # The Cargo build tree, when the package is used from a checkout (python/starttls/): the
    # optimised build first.
    root = os.path.normpath(os.path.join(_HERE, os.pardir, os.pardir))
    for profile in ("release", "debug"):
        yield "build tree", os.path.join(root, "target", profile, name)
    found = ctypes.util.find_library("starttls")
    yield "ctypes.util.find_library", found


def _load() -> tuple[Any, str]:
    tried: list[str] = []
    for where, path in _candidates():
        if path is None:
            tried.append(f"  {where}: nothing found")
            continue
        if "*" in path:
            tried.append(f"  {where}: {path} (no match)")
            continue
        is_name_only = where == "ctypes.util.find_library" and os.sep not in path
        if not is_name_only and not os.path.exists(path):
            tried.append(f"  {where}: {path} (does not exist)")
            continue
        try:
            return ctypes.CDLL(path), path
        except OSError as e:
            tried.append(f"  {where}: {path} ({e})")
    raise ImportError(
        "cannot load the starttls shared library; looked in:\n"
        + "\n".join(tried)
        + "\nInstall the package with `pip install ./python` (it builds the library), build it"
        " with `cargo build --release`, or set STARTTLS_LIBRARY to its path."
    )


# Functions loaded from the CDLL are untyped: `lib` is the typed boundary (Any).
lib: Any
library_path: str
lib, library_path = _load()

# Short names for the C types.
_u8p = ctypes.c_void_p  # uint8_t * (in or out): bytes, ctypes arrays or None
_charp = ctypes.c_char_p  # const char * in: NUL-terminated bytes
_bufp = ctypes.c_void_p  # char * out: a ctypes char array
_u16 = ctypes.c_uint16
_u32 = ctypes.c_uint32
_size = ctypes.c_size_t
_sizep = ctypes.POINTER(ctypes.c_size_t)
_bool = ctypes.c_bool
_int = ctypes.c_int
_handle = ctypes.c_void_p  # opaque handles are kept as plain addresses
_handlep = ctypes.POINTER(ctypes.c_void_p)

# void (*)(void *userdata, uint32_t direction, bool encrypted, const char *line)
LOG_CALLBACK = ctypes.CFUNCTYPE(None, ctypes.c_void_p, _u32, _bool, ctypes.c_char_p)

_SIGNATURES: dict[str, tuple[Any, list[Any]]] = {
    # library
    "starttls_version": (ctypes.c_char_p, []),
    "starttls_crypto_provider": (ctypes.c_char_p, []),
    "starttls_result_name": (ctypes.c_char_p, [_u32]),
    "starttls_result_description": (ctypes.c_char_p, [_u32]),
    "starttls_last_error": (_size, [_bufp, _size]),
    "starttls_last_os_error": (_int, []),
    "starttls_last_peer_cert_count": (_size, []),
    "starttls_last_peer_cert_len": (_size, [_size]),
    "starttls_last_peer_cert": (_u32, [_size, _u8p, _size, _sizep]),
    "starttls_supports_protocol": (_bool, [_u32]),
    "starttls_protocol_name": (ctypes.c_char_p, [_u32]),
    "starttls_protocol_default_port": (ctypes.c_uint16, [_u32]),
    # config builder
    "starttls_config_builder_new": (_handle, []),
    "starttls_config_builder_free": (None, [_handle]),
    "starttls_config_builder_set_ca_file": (_u32, [_handle, _charp]),
    "starttls_config_builder_add_ca_pem": (_u32, [_handle, _u8p, _size]),
    "starttls_config_builder_add_system_roots": (_u32, [_handle]),
    "starttls_config_builder_add_webpki_roots": (_u32, [_handle]),
    "starttls_config_builder_set_client_cert_files": (_u32, [_handle, _charp, _charp]),
    "starttls_config_builder_set_client_cert_pem": (_u32, [_handle, _u8p, _size, _u8p, _size]),
    "starttls_config_builder_set_client_name": (_u32, [_handle, _charp]),
    "starttls_config_builder_add_alpn": (_u32, [_handle, _u8p, _size]),
    "starttls_config_builder_set_min_tls_version": (_u32, [_handle, _u16]),
    "starttls_config_builder_set_max_tls_version": (_u32, [_handle, _u16]),
    "starttls_config_builder_set_policy": (_u32, [_handle, _u32]),
    "starttls_config_builder_set_timeout_ms": (_u32, [_handle, _u32]),
    "starttls_config_builder_set_phase_timeout_ms": (_u32, [_handle, _u32, _u32]),
    "starttls_config_builder_set_fetch_capabilities": (_u32, [_handle, _bool]),
    "starttls_config_builder_set_key_log_from_env": (_u32, [_handle, _bool]),
    "starttls_config_builder_add_pin_sha256": (_u32, [_handle, _charp]),
    "starttls_config_builder_set_pin_only": (_u32, [_handle, _bool]),
    "starttls_config_builder_dangerous_accept_any_certificate": (_u32, [_handle, _bool]),
    "starttls_config_builder_dangerous_allow_login_without_verification": (_u32, [_handle, _bool]),
    # The callback is passed as a plain pointer so that NULL (None) removes it.
    "starttls_config_builder_set_log_callback": (_u32, [_handle, ctypes.c_void_p, ctypes.c_void_p]),
    "starttls_config_builder_build": (_u32, [_handle, _handlep]),
    "starttls_config_free": (None, [_handle]),
    # connections
    "starttls_connect": (_u32, [_handle, _u32, _charp, _u16, _charp, _handlep]),
    "starttls_upgrade_fd": (_u32, [_handle, _u32, _int, _charp, _u32, _handlep]),
    "starttls_handshake_fd": (_u32, [_handle, _int, _charp, _u32, _handlep]),
    # DANE and pins
    "starttls_tlsa_set_new": (_handle, []),
    "starttls_tlsa_set_free": (None, [_handle]),
    "starttls_tlsa_set_add": (_u32, [_handle, ctypes.c_uint8, ctypes.c_uint8, ctypes.c_uint8,
                                     _u8p, _size]),
    "starttls_tlsa_set_add_text": (_u32, [_handle, _charp]),
    "starttls_tlsa_set_count": (_size, [_handle]),
    "starttls_connect_dane": (_u32, [_handle, _u32, _charp, _u16, _charp, _handle, _handlep]),
    "starttls_upgrade_fd_dane": (_u32, [_handle, _u32, _int, _charp, _u32, _handle, _handlep]),
    "starttls_conn_dane": (_u32, [_handle]),
    "starttls_conn_dane_matched": (_size, [_handle, _bufp, _size]),
    "starttls_cert_pin_sha256": (_size, [_u8p, _size, _bufp, _size]),
    "starttls_read": (_u32, [_handle, _u8p, _size, _sizep]),
    "starttls_write": (_u32, [_handle, _u8p, _size, _sizep]),
    "starttls_close": (_u32, [_handle]),
    "starttls_conn_free": (None, [_handle]),
    "starttls_conn_error": (_size, [_handle, _bufp, _size]),
    "starttls_conn_os_error": (_int, [_handle]),
    "starttls_conn_tls_version": (_u16, [_handle]),
    "starttls_conn_cipher_suite_id": (_u16, [_handle]),
    "starttls_conn_cipher_suite": (_size, [_handle, _bufp, _size]),
    "starttls_conn_key_exchange_group": (_size, [_handle, _bufp, _size]),
    "starttls_conn_auth_mechanism": (_size, [_handle, _bufp, _size]),
    "starttls_conn_auth_channel_binding": (_size, [_handle, _bufp, _size]),
    "starttls_conn_alpn": (_u32, [_handle, _u8p, _size, _sizep]),
    "starttls_conn_peer_cert_count": (_size, [_handle]),
    "starttls_conn_peer_cert": (_u32, [_handle, _size, _u8p, _size, _sizep]),
    "starttls_conn_peer_cert_len": (_size, [_handle, _size]),
    "starttls_conn_greeting": (_size, [_handle, _bufp, _size]),
    "starttls_conn_peer_cert_validity": (_u32, [_handle, ctypes.POINTER(ctypes.c_int64),
                                                ctypes.POINTER(ctypes.c_int64)]),
    "starttls_conn_peer_cert_subject": (_size, [_handle, _bufp, _size]),
    "starttls_conn_peer_cert_issuer": (_size, [_handle, _bufp, _size]),
    "starttls_conn_peer_cert_names": (_size, [_handle, _bufp, _size]),
    "starttls_conn_peer_cert_sha256": (_u32, [_handle, _bool, _u8p]),
    "starttls_conn_capabilities_before_tls": (_size, [_handle, _bufp, _size]),
    "starttls_conn_capabilities": (_size, [_handle, _bufp, _size]),
    "starttls_conn_has_capabilities": (_bool, [_handle]),
    "starttls_conn_fetch_capabilities": (_u32, [_handle]),
    "starttls_conn_quit": (_u32, [_handle]),
    "starttls_conn_authenticate": (_u32, [_handle, _charp, _charp, _charp]),
    "starttls_conn_authenticate_database": (_u32, [_handle, _charp, _charp, _charp]),
    "starttls_conn_authenticate_token": (_u32, [_handle, _charp, _charp, _charp]),
    "starttls_conn_authenticate_external": (_u32, [_handle, _charp]),
    "starttls_conn_fd": (_int, [_handle]),
    "starttls_conn_pending": (_size, [_handle]),
    "starttls_conn_cipher_bits": (_int, [_handle]),
    "starttls_conn_set_io_timeout_ms": (_u32, [_handle, ctypes.c_uint64]),
    "starttls_conn_is_encrypted": (_bool, [_handle]),
    "starttls_conn_plaintext_reason": (_u32, [_handle]),
    "starttls_conn_starttls_offered": (_int, [_handle]),
    "starttls_conn_is_resumed": (_bool, [_handle]),
    "starttls_conn_verification": (_u32, [_handle]),
    "starttls_conn_verification_problem": (_size, [_handle, _bufp, _size]),
    "starttls_conn_is_server": (_bool, [_handle]),
    "starttls_conn_peer_name": (_size, [_handle, _bufp, _size]),
    # server config builder
    "starttls_server_config_builder_new": (_handle, []),
    "starttls_server_config_builder_free": (None, [_handle]),
    "starttls_server_config_builder_set_certificate_files": (_u32, [_handle, _charp, _charp]),
    "starttls_server_config_builder_add_certificate_pem":
        (_u32, [_handle, _u8p, _size, _u8p, _size]),
    "starttls_server_config_builder_add_sni_certificate_pem":
        (_u32, [_handle, _charp, _u8p, _size, _u8p, _size]),
    "starttls_server_config_builder_set_client_ca_file": (_u32, [_handle, _charp, _u32]),
    "starttls_server_config_builder_add_alpn": (_u32, [_handle, _u8p, _size]),
    "starttls_server_config_builder_set_min_tls_version": (_u32, [_handle, _u16]),
    "starttls_server_config_builder_set_session_tickets": (_u32, [_handle, _bool]),
    "starttls_server_config_builder_set_hostname": (_u32, [_handle, _charp]),
    "starttls_server_config_builder_set_greeting": (_u32, [_handle, _charp]),
    "starttls_server_config_builder_set_timeout_ms": (_u32, [_handle, _u32]),
    "starttls_server_config_builder_set_log_callback":
        (_u32, [_handle, ctypes.c_void_p, ctypes.c_void_p]),
    "starttls_server_config_builder_build": (_u32, [_handle, _handlep]),
    "starttls_server_config_free": (None, [_handle]),
    # server side
    "starttls_accept_fd": (_u32, [_handle, _u32, _int, _u32, _handlep]),
    "starttls_accept_tls_fd": (_u32, [_handle, _int, _u8p, _size, _u32, _handlep]),
}

for _name, (_restype, _argtypes) in _SIGNATURES.items():
    _fn = getattr(lib, _name)
    _fn.restype = _restype
    _fn.argtypes = _argtypes
del _name, _restype, _argtypes, _fn


def get_string(fn: Callable[..., int], *args: Any, initial: int = 256) -> bytes:
    """Calls an snprintf-style getter ``fn(*args, buf, len) -> full length`` and returns the
    whole string as ``bytes``, growing the buffer once the length is known."""
    size = initial
    while True:
        buf = ctypes.create_string_buffer(size)
        n = fn(*args, buf, size)
        if n < size:
            return buf.raw[:n]
        size = n + 1


def last_error() -> str:
    """This thread's last failure message from the library (``str``)."""
    return get_string(lib.starttls_last_error).decode("utf-8", "replace")
