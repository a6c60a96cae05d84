//! Test fixtures: a private PKI made on the spot, and scripted servers on loopback.
#![allow(dead_code)] // Each test file uses a different part of the fixtures.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, OnceLock};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{ServerConfig, ServerConnection, StreamOwned};
use starttls::{ClientConfig, ClientConfigBuilder};

pub struct Leaf {
    pub chain: Vec<CertificateDer<'static>>,
    pub key_der: Vec<u8>,
    pub chain_pem: String,
    pub key_pem: String,
}

impl Leaf {
    pub fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()))
    }
}

pub struct Pki {
    pub ca_pem: String,
    /// localhost, 127.0.0.1, ::1
    pub server: Leaf,
    /// Valid, but for another name only.
    pub other_host: Leaf,
    /// For localhost, but expired.
    pub expired: Leaf,
    /// For localhost, signed by a CA nobody trusts.
    pub unknown_ca: Leaf,
    /// A client certificate from the trusted CA.
    pub client: Leaf,
}

fn leaf(names: &[&str], issuer: &CertifiedIssuer<'static, KeyPair>, expired: bool) -> Leaf {
    let mut params =
        CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .expect("params");
    if expired {
        params.not_before = rcgen::date_time_ymd(2001, 1, 1);
        params.not_after = rcgen::date_time_ymd(2002, 1, 1);
    }
    let key = KeyPair::generate().expect("key");
    let cert = params.signed_by(&key, issuer).expect("sign");
    Leaf {
        chain: vec![cert.der().clone()],
        key_der: key.serialize_der(),
        chain_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    }
}

fn make_ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    CertifiedIssuer::self_signed(params, KeyPair::generate().expect("key")).expect("ca")
}

/// One PKI for the whole test binary (key generation is not free).
pub fn pki() -> &'static Pki {
    static PKI: OnceLock<Pki> = OnceLock::new();
    PKI.get_or_init(|| {
        let ca = make_ca("starttls test CA");
        let rogue = make_ca("rogue CA");
        Pki {
            ca_pem: ca.pem(),
            server: leaf(&["localhost", "127.0.0.1", "::1"], &ca, false),
            other_host: leaf(&["elsewhere.example"], &ca, false),
            expired: leaf(&["localhost", "127.0.0.1"], &ca, true),
            unknown_ca: leaf(&["localhost", "127.0.0.1"], &rogue, false),
            client: leaf(&["client.test"], &ca, false),
        }
    })
}

pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// A rustls server config presenting `leaf`.
pub fn server_config(leaf: &Leaf) -> Arc<ServerConfig> {
    let cfg = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(leaf.chain.clone(), leaf.key())
        .expect("server cert");
    Arc::new(cfg)
}

/// A server that asks for a client certificate from the test CA (mTLS).
pub fn server_config_requiring_client_cert(leaf: &Leaf) -> Arc<ServerConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::pem::PemObject::pem_slice_iter(pki().ca_pem.as_bytes()) {
        roots.add(cert.expect("CA PEM")).expect("CA");
    }
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
            .build()
            .expect("client verifier");
    Arc::new(
        ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_client_cert_verifier(verifier)
            .with_single_cert(leaf.chain.clone(), leaf.key())
            .expect("server cert"),
    )
}

/// The test client config: trusts the test CA, short timeouts so a failure cannot hang a test.
pub fn client_builder() -> ClientConfigBuilder {
    ClientConfig::builder()
        .trust_ca_pem(pki().ca_pem.clone().into_bytes())
        .timeout(Duration::from_secs(5))
}

pub fn client_config() -> ClientConfig {
    client_builder().build().expect("client config")
}

/// The server's end of a test connection.
pub struct Peer {
    pub sock: TcpStream,
}

impl Peer {
    pub fn send(&mut self, bytes: &[u8]) {
        self.sock.write_all(bytes).expect("peer send");
    }

    /// Reads one line (without CRLF), byte by byte so nothing past it is taken.
    pub fn line(&mut self) -> String {
        read_line(&mut self.sock)
    }

    /// Everything the client sends until it closes (bounded by the socket timeout).
    pub fn rest(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        let _ = self.sock.read_to_end(&mut out);
        out
    }

    /// Runs the server side of the handshake.
    pub fn tls(self, cfg: Arc<ServerConfig>) -> TlsPeer {
        let mut conn = ServerConnection::new(cfg).expect("server conn");
        let mut sock = self.sock;
        while conn.is_handshaking() {
            conn.complete_io(&mut sock).expect("server handshake");
        }
        TlsPeer {
            stream: StreamOwned::new(conn, sock),
        }
    }
}

pub struct TlsPeer {
    pub stream: StreamOwned<ServerConnection, TcpStream>,
}

impl TlsPeer {
    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("tls send");
        self.stream.flush().expect("tls flush");
    }

    pub fn line(&mut self) -> String {
        read_line(&mut self.stream)
    }

    /// Reads until the client's close_notify; true when it came.
    pub fn saw_close_notify(&mut self) -> bool {
        let mut buf = [0u8; 256];
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(_) => return false,
            }
        }
    }
}

pub fn read_line(r: &mut impl Read) -> String {
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    loop {
        match r.read(&mut b) {
            Ok(0) => break,
            Ok(_) => {
                line.push(b[0]);
                if b[0] == b'\n' {
                    break;
                }
            }
            Err(e) => panic!("peer read: {e}"),
        }
    }
    String::from_utf8_lossy(&line)
        .trim_end_matches(['\r', '\n'])
        .to_owned()
}

/// Starts a one-connection server on 127.0.0.1 running `script`; returns its port and thread.
pub fn serve<R: Send + 'static>(
    script: impl FnOnce(Peer) -> R + Send + 'static,
) -> (u16, JoinHandle<R>) {
    serve_on("127.0.0.1:0", script)
}

pub fn serve_on<R: Send + 'static>(
    addr: &str,
    script: impl FnOnce(Peer) -> R + Send + 'static,
) -> (u16, JoinHandle<R>) {
    let listener = TcpListener::bind(addr).expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let handle = thread::spawn(move || {
        let (sock, _) = listener.accept().expect("accept");
        sock.set_read_timeout(Some(Duration::from_secs(10))).ok();
        script(Peer { sock })
    });
    (port, handle)
}

/// Whether a command runs here (`cmd arg`): tests of real third-party programs skip without it.
pub fn have(cmd: &str, arg: &str) -> bool {
    std::process::Command::new(cmd)
        .arg(arg)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok()
}

const BASE64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64, for the SASL exchanges scripted servers speak.
pub fn base64(data: &[u8]) -> String {
    let mut out = String::new();
    for c in data.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            out.push(if i <= c.len() {
                BASE64[(n >> (18 - 6 * i)) as usize & 63] as char
            } else {
                '='
            });
        }
    }
    out
}

/// Decodes standard base64; panics on anything else (a test's peer sent garbage).
pub fn unbase64(text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0);
    for c in text.trim_end_matches('=').bytes() {
        let v = BASE64
            .iter()
            .position(|&a| a == c)
            .unwrap_or_else(|| panic!("not base64: {text:?}")) as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

/// A DNS resolver on 127.0.0.1 (UDP) answering from `table` (keyed by the lower-case name with
/// its final dot, and the type), with AD as given; other questions get NOERROR and no data.
pub fn scripted_resolver(
    table: std::collections::HashMap<
        (String, hickory_proto::rr::RecordType),
        Vec<hickory_proto::rr::RData>,
    >,
    ad: bool,
) -> u16 {
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = udp.local_addr().unwrap().port();
    let table = std::sync::Arc::new(table);
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok((n, from)) = udp.recv_from(&mut buf) {
            let Ok(q) = hickory_proto::op::Message::from_vec(&buf[..n]) else {
                continue;
            };
            let mut m = hickory_proto::op::Message::response(
                q.metadata.id,
                hickory_proto::op::OpCode::Query,
            );
            m.metadata.message_type = hickory_proto::op::MessageType::Response;
            m.metadata.authentic_data = ad;
            m.metadata.recursion_available = true;
            let query = q.queries[0].clone();
            let key = (
                query.name().to_ascii().to_ascii_lowercase(),
                query.query_type(),
            );
            for data in table.get(&key).cloned().unwrap_or_default() {
                m.add_answer(hickory_proto::rr::Record::from_rdata(
                    query.name().clone(),
                    300,
                    data,
                ));
            }
            m.add_query(query);
            let _ = udp.send_to(&m.to_vec().unwrap(), from);
        }
    });
    port
}
