//! `starttls serve`: the library's server side as a test server for mail clients.

use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use starttls::{Protocol, ServerConfig, Timeouts};

use crate::{apps, pki};

pub struct ServeOptions {
    pub protocol: Protocol,
    pub listen: String,
    pub cert: Option<String>,
    pub key: Option<String>,
    pub domain: String,
    pub max_connections: Option<u64>,
    /// Sessions served at once; further connections wait in the listen queue.
    pub max_concurrent: usize,
    /// How long a session may stay silent after TLS.
    pub idle_timeout: Duration,
    pub verbose: bool,
}

/// The defaults of `--max-concurrent` and `--idle-timeout` (seconds).
pub const DEFAULT_MAX_CONCURRENT: u64 = 256;
pub const DEFAULT_IDLE_TIMEOUT_SECS: u64 = 60;
/// Each client command before TLS (the whole pre-TLS dialog gets four of these).
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// Builds the server config: the given certificate, or a throw-away one (whose CA is written
/// to a file and returned).
pub fn server_config(
    opts: &ServeOptions,
) -> Result<(ServerConfig, Option<std::path::PathBuf>), String> {
    let mut b = ServerConfig::builder()
        .hostname(&opts.domain)
        .timeouts(Timeouts {
            reply: REPLY_TIMEOUT,
            handshake: REPLY_TIMEOUT,
            io: opts.idle_timeout,
            ..Timeouts::default()
        });
    if opts.verbose {
        b = b.on_dialog_line(|l| {
            let who = match l.direction {
                starttls::Direction::Sent => "S:",
                starttls::Direction::Received => "C:",
            };
            let tls = if l.encrypted { " [TLS]" } else { "" };
            eprintln!("{who}{tls} {}", l.text);
        });
    }
    let ca_path = match (&opts.cert, &opts.key) {
        (Some(c), Some(k)) => {
            b = b.certificate_files(c, k);
            None
        }
        (None, None) => {
            let pki = pki::make(&opts.domain)?;
            b = b.certificate_pem(pki.chain_pem.into_bytes(), pki.key_pem.into_bytes());
            Some(pki::write_ca(&pki.ca_pem)?)
        }
        _ => return Err("--cert and --key go together".into()),
    };
    let config = b.build().map_err(|e| e.to_string())?;
    Ok((config, ca_path))
}

/// Runs the server; returns the exit status.
pub fn run(opts: &ServeOptions) -> i32 {
    let (config, ca_path) = match server_config(opts) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("starttls serve: {e}");
            return 2;
        }
    };
    let listener = match TcpListener::bind(&opts.listen) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("starttls serve: cannot listen on {}: {e}", opts.listen);
            if let Some(ca) = &ca_path {
                pki::remove_ca(ca);
            }
            return 8;
        }
    };
    let addr = listener
        .local_addr()
        .map_or_else(|_| opts.listen.clone(), |a| a.to_string());
    if let Some(ca) = &ca_path {
        println!("throw-away CA certificate: {}", ca.display());
    }
    println!("serving {} on {addr} as {}", opts.protocol, opts.domain);
    let (protocol, domain) = (opts.protocol, opts.domain.clone());
    accept_loop(
        &listener,
        opts.max_concurrent,
        opts.max_connections,
        "session",
        move |sock| serve_one(&config, protocol, &domain, sock),
    );
    // The throw-away CA is only useful while this server runs (an interrupted run leaves it in
    // the temporary directory, named after the process id).
    if let Some(ca) = &ca_path {
        pki::remove_ca(ca);
    }
    0
}

/// One connection: the server side of the upgrade, the protocol's session, then an orderly end
/// with close_notify (after the client's goodbye, or when the client closed first); one log line.
fn serve_one(config: &ServerConfig, protocol: Protocol, domain: &str, sock: TcpStream) {
    let peer = sock
        .peer_addr()
        .map_or_else(|_| "?".to_owned(), |a| a.to_string());
    let line = match starttls::accept(config, protocol, sock) {
        Ok(mut conn) => {
            let version = match conn.tls_version() {
                Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3",
                Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2",
                _ => "?",
            };
            let client = conn
                .peer_name()
                .map(|n| format!(" client_name={:?}", n.get_untrusted()))
                .unwrap_or_default();
            let session = apps::session(protocol, domain, &mut conn);
            let closed = conn.close();
            // A client that already closed its end cannot take the close_notify: not news.
            let close = match closed {
                Err(e) if e.kind() != starttls::ErrorKind::Closed => {
                    format!(" close_error={:?}", e.to_string())
                }
                _ => String::new(),
            };
            match session {
                Ok(summary) => format!("outcome=ok tls={version}{client} {summary}{close}"),
                Err(e) => format!("outcome=ok tls={version}{client} session_error={e:?}{close}"),
            }
        }
        Err(e) => format!(
            "outcome=refused error={} message={:?}",
            e.kind().name(),
            e.to_string()
        ),
    };
    println!("peer={peer} protocol={protocol} {}", line.trim_end());
}

/// Accepts connections and runs `session` on a thread of its own for each, at most
/// `max_concurrent` at once; with `max_connections`, stops accepting after that many and returns
/// once every session has ended. `what` names the threads and the error when one cannot start.
pub fn accept_loop(
    listener: &TcpListener,
    max_concurrent: usize,
    max_connections: Option<u64>,
    what: &str,
    session: impl Fn(TcpStream) + Send + Sync + 'static,
) {
    let session = Arc::new(session);
    let slots = Slots::new(max_concurrent);
    let mut served = 0u64;
    for stream in listener.incoming() {
        let sock = match stream {
            Ok(s) => s,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionAborted => continue,
            // Out of file descriptors (EMFILE) and the like: retrying at once would spin.
            Err(_) => {
                std::thread::sleep(std::time::Duration::from_millis(100));
                continue;
            }
        };
        // Finished workers are not kept: each thread ends with its session and gives its slot
        // back; at the limit, the next connection waits (in the listen queue) for a free slot.
        let slot = slots.acquire();
        let session = session.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("starttls-{what}"))
            .spawn(move || {
                let _slot = slot;
                session(sock);
            });
        if let Err(e) = spawned {
            eprintln!("starttls: cannot start a {what} thread: {e}");
        }
        served += 1;
        if max_connections.is_some_and(|max| served >= max) {
            break;
        }
    }
    slots.wait_idle();
}

/// A counting semaphore for session threads.
struct Slots {
    state: Arc<(Mutex<usize>, Condvar)>,
    max: usize,
}

/// One session's place; given back when dropped (also when the session panics).
struct Slot(Arc<(Mutex<usize>, Condvar)>);

impl Slots {
    fn new(max: usize) -> Slots {
        Slots {
            state: Arc::new((Mutex::new(0), Condvar::new())),
            max: max.max(1),
        }
    }

    /// Waits for a free place and takes it.
    fn acquire(&self) -> Slot {
        let (lock, freed) = &*self.state;
        let mut active = lock.lock().unwrap_or_else(|p| p.into_inner());
        while *active >= self.max {
            active = freed.wait(active).unwrap_or_else(|p| p.into_inner());
        }
        *active += 1;
        Slot(self.state.clone())
    }

    /// Waits until every session has ended.
    fn wait_idle(&self) {
        let (lock, freed) = &*self.state;
        let mut active = lock.lock().unwrap_or_else(|p| p.into_inner());
        while *active > 0 {
            active = freed.wait(active).unwrap_or_else(|p| p.into_inner());
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let (lock, freed) = &*self.0;
        let mut active = lock.lock().unwrap_or_else(|p| p.into_inner());
        *active = active.saturating_sub(1);
        freed.notify_all();
    }
}
