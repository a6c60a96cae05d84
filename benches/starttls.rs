//! Benchmarks of the library, driven by `bench/run.sh` (which runs the OpenSSL references in
//! the same run and prints ratios). Each mode prints one `key=value` line.
//!
//!   cargo bench --bench starttls -- upgrades CERT KEY CA N full|resumed THREADS
//!   cargo bench --bench starttls -- bulk CERT KEY CA MIB WRITE_KIB tls|tcp
//!   cargo bench --bench starttls -- sink PORT CERT KEY
//!   cargo bench --bench starttls -- sink-client PORT CA MIB WRITE_KIB   (Rust API, as c_abi_bulk)
//!   cargo bench --bench starttls -- relay LISTEN_PORT TARGET_PORT DELAY_MS COUNT
//!   cargo bench --bench starttls -- memory PORT CA N
//!   cargo bench --bench starttls -- smtp-data PORT CA MIB   (the library's client, any server)
//!   cargo bench --bench starttls -- client-upgrades PORT CA N   (the library's client alone)

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use starttls::{ClientConfig, Protocol, ServerConfig};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let result = match args.first().map(String::as_str) {
        Some("upgrades") => upgrades(&args[1..]),
        Some("bulk") => bulk(&args[1..]),
        Some("sink") => sink(&args[1..]),
        Some("sink-client") => sink_client(&args[1..]),
        Some("relay") => relay(&args[1..]),
        Some("memory") => memory(&args[1..]),
        Some("smtp-data") => smtp_data(&args[1..]),
        Some("client-upgrades") => client_upgrades(&args[1..]),
        _ => {
            eprintln!("usage: see the top of benches/starttls.rs");
            std::process::exit(2);
        }
    };
    if let Err(e) = result {
        eprintln!("bench: {e}");
        std::process::exit(1);
    }
}

fn arg(args: &[String], i: usize) -> Res<&str> {
    args.get(i)
        .map(String::as_str)
        .ok_or_else(|| format!("argument {i} missing").into())
}

fn server_config(cert: &str, key: &str) -> Res<ServerConfig> {
    Ok(ServerConfig::builder()
        .certificate_files(cert, key)
        .hostname("localhost")
        .build()?)
}

fn client_config(ca: &str, resume: bool) -> Res<ClientConfig> {
    Ok(ClientConfig::builder()
        .trust_ca_file(ca)
        .session_resumption(resume)
        .build()?)
}

fn read_line(conn: &mut impl Read) -> std::io::Result<String> {
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    while conn.read(&mut b)? == 1 {
        if b[0] == b'\n' {
            break;
        }
        line.push(b[0]);
    }
    Ok(String::from_utf8_lossy(&line).into_owned())
}

/// The SMTP session inside TLS the upgrade benchmark ends with: EHLO, QUIT.
fn smtp_after_tls(conn: &mut starttls::Connection) -> std::io::Result<()> {
    loop {
        let line = read_line(conn)?;
        if line.is_empty() {
            return Ok(());
        }
        if line.starts_with("EHLO") {
            conn.write_all(b"250-bench\r\n250 8BITMIME\r\n")?;
        } else if line.starts_with("QUIT") {
            conn.write_all(b"221 bye\r\n")?;
            let _ = conn.close();
            return Ok(());
        } else {
            conn.write_all(b"500 what\r\n")?;
        }
    }
}

/// Sequential SMTP STARTTLS upgrades (connect, greeting, EHLO, STARTTLS, handshake, EHLO, QUIT)
/// from the library's client to the library's server, per second; THREADS clients at once.
fn upgrades(args: &[String]) -> Res<()> {
    let (cert, key, ca) = (arg(args, 0)?, arg(args, 1)?, arg(args, 2)?);
    let n: usize = arg(args, 3)?.parse()?;
    let resume = arg(args, 4)? == "resumed";
    let threads: usize = arg(args, 5)?.parse()?;
    let server = server_config(cert, key)?;
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    thread::spawn(move || {
        for sock in listener.incoming().flatten() {
            let server = server.clone();
            thread::spawn(move || {
                if let Ok(mut conn) = starttls::accept(&server, Protocol::Smtp, sock) {
                    let _ = smtp_after_tls(&mut conn);
                }
            });
        }
    });
    let config = client_config(ca, resume)?;
    // Warm up (and, when resuming, fill the session cache).
    one_upgrade(&config, port)?;
    let started = Instant::now();
    let per_thread = n / threads;
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let config = config.clone();
            thread::spawn(move || -> Result<usize, String> {
                let mut resumed = 0;
                for _ in 0..per_thread {
                    if one_upgrade(&config, port).map_err(|e| e.to_string())? {
                        resumed += 1;
                    }
                }
                Ok(resumed)
            })
        })
        .collect();
    let mut resumed = 0;
    for w in workers {
        resumed += w.join().map_err(|_| "worker panicked")??;
    }
    let secs = started.elapsed().as_secs_f64();
    let total = per_thread * threads;
    println!(
        "upgrades mode={} threads={threads} n={total} resumed={resumed} secs={secs:.3} rate={:.1}",
        if resume { "resumed" } else { "full" },
        total as f64 / secs
    );
    Ok(())
}

/// N sequential SMTP STARTTLS upgrades from the library's client to any server at PORT (the
/// server is someone else's: for counting one side's system calls).
fn client_upgrades(args: &[String]) -> Res<()> {
    let port: u16 = arg(args, 0)?.parse()?;
    let config = client_config(arg(args, 1)?, false)?;
    let n: usize = arg(args, 2)?.parse()?;
    for _ in 0..n {
        one_upgrade(&config, port)?;
    }
    println!("client-upgrades n={n}");
    Ok(())
}

fn one_upgrade(config: &ClientConfig, port: u16) -> Res<bool> {
    // By address, verifying the name, as the OpenSSL reference does (no resolver in the loop).
    let mut conn = starttls::connect_named(config, Protocol::Smtp, "127.0.0.1", port, "localhost")?;
    conn.fetch_capabilities()?;
    let resumed = conn.is_resumed();
    conn.quit()?;
    Ok(resumed)
}

/// One SMTP session from the library's client that sends a message of MIB MiB (lines of 998
/// bytes) through DATA to the server at PORT; the time from DATA to the server's 250, as MiB/s.
fn smtp_data(args: &[String]) -> Res<()> {
    use std::io::BufRead;
    let port: u16 = arg(args, 0)?.parse()?;
    let config = client_config(arg(args, 1)?, false)?;
    let mib: usize = arg(args, 2)?.parse()?;
    let mut conn =
        starttls::connect_named(&config, Protocol::Smtp, "127.0.0.1", port, "localhost")?;
    let reply = |conn: &mut starttls::Connection| -> Res<String> {
        loop {
            let mut line = String::new();
            conn.read_line(&mut line)?;
            if line.len() < 4 || line.as_bytes()[3] != b'-' {
                return Ok(line);
            }
        }
    };
    for cmd in [
        "EHLO bench\r\n",
        "MAIL FROM:<a@bench>\r\n",
        "RCPT TO:<b@bench>\r\n",
        "DATA\r\n",
    ] {
        conn.write_all(cmd.as_bytes())?;
        reply(&mut conn)?;
    }
    let chunk: Vec<u8> = (0..64 * 1000)
        .map(|i| match i % 1000 {
            998 => b'\r',
            999 => b'\n',
            _ => b'x',
        })
        .collect();
    let total = mib * 1024 * 1024;
    let mut sent = 0;
    let started = Instant::now();
    while sent < total {
        conn.write_all(&chunk)?;
        sent += chunk.len();
    }
    conn.write_all(b".\r\n")?;
    let done = reply(&mut conn)?;
    let secs = started.elapsed().as_secs_f64();
    if !done.starts_with("250") {
        return Err(format!("DATA refused: {done}").into());
    }
    conn.write_all(b"QUIT\r\n")?;
    reply(&mut conn)?;
    conn.close()?;
    let mib_sent = sent as f64 / 1048576.0;
    println!(
        "smtp-data mib={mib_sent:.0} secs={secs:.3} mib_per_s={:.1}",
        mib_sent / secs
    );
    Ok(())
}

/// Bulk transfer through an upgraded connection (or plain TCP): MIB MiB in WRITE_KIB writes,
/// measured at the sender until the receiver acknowledges having read everything.
fn bulk(args: &[String]) -> Res<()> {
    let (cert, key, ca) = (arg(args, 0)?, arg(args, 1)?, arg(args, 2)?);
    let mib: usize = arg(args, 3)?.parse()?;
    let kib: usize = arg(args, 4)?.parse()?;
    let tls = arg(args, 5)? == "tls";
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    let server = server_config(cert, key)?;
    let total = mib << 20;
    let receiver = thread::spawn(move || -> Result<(), String> {
        let (sock, _) = listener.accept().map_err(|e| e.to_string())?;
        let mut buf = vec![0u8; 256 * 1024];
        if tls {
            let mut conn = starttls::accept_tls(&server, sock, b"").map_err(|e| e.to_string())?;
            let mut got = 0;
            while got < total {
                let n = conn.read(&mut buf).map_err(|e| e.to_string())?;
                if n == 0 {
                    break;
                }
                got += n;
            }
            conn.write_all(b"!").map_err(|e| e.to_string())?;
            conn.flush().map_err(|e| e.to_string())?;
        } else {
            let mut sock = sock;
            let mut got = 0;
            while got < total {
                let n = sock.read(&mut buf).map_err(|e| e.to_string())?;
                if n == 0 {
                    break;
                }
                got += n;
            }
            sock.write_all(b"!").map_err(|e| e.to_string())?;
        }
        Ok(())
    });
    let chunk = vec![0x5au8; kib * 1024];
    let started;
    if tls {
        let config = client_config(ca, true)?;
        let tcp = TcpStream::connect(("127.0.0.1", port))?;
        let mut conn = starttls::handshake_only(&config, tcp, "localhost")?;
        started = Instant::now();
        let mut sent = 0;
        while sent < total {
            conn.write_all(&chunk)?;
            sent += chunk.len();
        }
        conn.flush()?;
        let mut ack = [0u8; 1];
        conn.read_exact(&mut ack)?;
    } else {
        let mut sock = TcpStream::connect(("127.0.0.1", port))?;
        started = Instant::now();
        let mut sent = 0;
        while sent < total {
            sock.write_all(&chunk)?;
            sent += chunk.len();
        }
        let mut ack = [0u8; 1];
        sock.read_exact(&mut ack)?;
    }
    let secs = started.elapsed().as_secs_f64();
    receiver.join().map_err(|_| "receiver panicked")??;
    println!(
        "bulk mode={} write_kib={kib} mib={mib} secs={secs:.3} mib_per_s={:.1}",
        if tls { "rust" } else { "tcp" },
        mib as f64 / secs
    );
    Ok(())
}

/// A TLS sink for the C ABI bulk client: one connection, read to the end, acknowledge.
fn sink(args: &[String]) -> Res<()> {
    let port: u16 = arg(args, 0)?.parse()?;
    let server = server_config(arg(args, 1)?, arg(args, 2)?)?;
    let listener = TcpListener::bind(("127.0.0.1", port))?;
    println!("sink ready");
    std::io::stdout().flush()?;
    let (sock, _) = listener.accept()?;
    let mut conn = starttls::accept_tls(&server, sock, b"")?;
    let mut buf = vec![0u8; 256 * 1024];
    let mut want: Option<u64> = None;
    let mut got = 0u64;
    // The client announces the size in its first 8 bytes.
    let mut size = [0u8; 8];
    conn.read_exact(&mut size)?;
    want.get_or_insert(u64::from_be_bytes(size));
    while Some(got) < want {
        let n = conn.read(&mut buf)?;
        if n == 0 {
            break;
        }
        got += n as u64;
    }
    conn.write_all(b"!")?;
    conn.flush()?;
    let mut rest = [0u8; 16];
    let _ = conn.read(&mut rest);
    Ok(())
}

/// The Rust API's half of bench/c_abi_bulk.c, call for call: the same sink process, the same
/// size announcement, one `write_all` + `flush` per write as `starttls_write` does, so the two
/// differ only by the C ABI.
fn sink_client(args: &[String]) -> Res<()> {
    let port: u16 = arg(args, 0)?.parse()?;
    let config = client_config(arg(args, 1)?, false)?;
    let mib: u64 = arg(args, 2)?.parse()?;
    let kib: usize = arg(args, 3)?.parse()?;
    let mut conn = starttls::connect(&config, Protocol::Tls, "localhost", port)?;
    let total = mib << 20;
    let chunk = vec![0x5au8; kib * 1024];
    let started = Instant::now();
    conn.write_all(&total.to_be_bytes())?;
    conn.flush()?;
    let mut sent = 0u64;
    while sent < total {
        conn.write_all(&chunk)?;
        conn.flush()?;
        sent += chunk.len() as u64;
    }
    let mut ack = [0u8; 1];
    conn.read_exact(&mut ack)?;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "bulk mode=rust-sink write_kib={kib} mib={mib} secs={secs:.3} mib_per_s={:.1}",
        mib as f64 / secs
    );
    Ok(())
}

/// A relay that delays every chunk by DELAY_MS in each direction, and reports for each
/// connection how many times the client waited on the server ("turns": server flights that
/// answer client data, the greeting included) before the client's first TLS record after its
/// ClientHello (its Finished: the secure channel is up), and the time that took.
fn relay(args: &[String]) -> Res<()> {
    let listen: u16 = arg(args, 0)?.parse()?;
    let target: u16 = arg(args, 1)?.parse()?;
    let delay = Duration::from_millis(arg(args, 2)?.parse()?);
    let count: usize = arg(args, 3)?.parse()?;
    let listener = TcpListener::bind(("127.0.0.1", listen))?;
    println!("relay ready");
    std::io::stdout().flush()?;
    for _ in 0..count {
        let (client, _) = listener.accept()?;
        let accepted = Instant::now();
        let server = TcpStream::connect(("127.0.0.1", target))?;
        client.set_nodelay(true)?;
        server.set_nodelay(true)?;
        let flow = Arc::new(Flow::default());
        let (tx, rx) = mpsc::channel::<(Instant, usize)>();
        let up = pump(
            client.try_clone()?,
            server.try_clone()?,
            delay,
            Some(tx),
            flow.clone(),
            true,
        );
        let down = pump(server, client, delay, None, flow, false);
        let secure = rx.recv_timeout(Duration::from_secs(30)).ok();
        let _ = up.join();
        let _ = down.join();
        match secure {
            Some((at, turns)) => {
                let ms = (at - accepted).as_secs_f64() * 1000.0;
                let rtts = ms / (2.0 * delay.as_secs_f64() * 1000.0);
                println!("relay to_secure_ms={ms:.1} rtts={rtts:.2} turns={turns}");
            }
            None => println!("relay to_secure_ms=none turns=none"),
        }
    }
    Ok(())
}

/// Which way data last flowed, and how many server flights answered the client.
#[derive(Default)]
struct Flow {
    last_up: AtomicBool,
    seen_any: AtomicBool,
    flights: AtomicUsize,
}

/// Forwards `from` to `to`, each chunk `delay` later than it arrived, counting server flights.
/// With `secure`, watches the stream for a TLS ClientHello and signals at the first record after
/// it, with the number of flights so far.
fn pump(
    mut from: TcpStream,
    to: TcpStream,
    delay: Duration,
    secure: Option<mpsc::Sender<(Instant, usize)>>,
    flow: Arc<Flow>,
    upstream: bool,
) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let (tx, rx) = mpsc::channel::<(Instant, Vec<u8>)>();
        let mut to_w = to;
        let writer = thread::spawn(move || {
            for (due, data) in rx {
                let now = Instant::now();
                if due > now {
                    thread::sleep(due - now);
                }
                if to_w.write_all(&data).is_err() {
                    break;
                }
            }
            let _ = to_w.shutdown(std::net::Shutdown::Write);
        });
        let mut watch = secure.map(|s| (s, RecordWatch::default()));
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let now = Instant::now();
            if upstream {
                flow.last_up.store(true, Ordering::SeqCst);
            } else if flow.last_up.swap(false, Ordering::SeqCst)
                || !flow.seen_any.load(Ordering::SeqCst)
            {
                flow.flights.fetch_add(1, Ordering::SeqCst);
            }
            flow.seen_any.store(true, Ordering::SeqCst);
            if let Some((sender, w)) = &mut watch {
                if w.feed(&buf[..n]) {
                    let _ = sender.send((now, flow.flights.load(Ordering::SeqCst)));
                    watch = None;
                }
            }
            if tx.send((now + delay, buf[..n].to_vec())).is_err() {
                break;
            }
        }
        drop(tx);
        let _ = writer.join();
    })
}

/// Finds the client's TLS records in a STARTTLS stream: plaintext lines first, then a
/// ClientHello (0x16 0x03), then records; fires at the first record after the ClientHello.
#[derive(Default)]
struct RecordWatch {
    in_tls: bool,
    pending: Vec<u8>,
    records: usize,
}

impl RecordWatch {
    fn feed(&mut self, data: &[u8]) -> bool {
        self.pending.extend_from_slice(data);
        if !self.in_tls {
            // A ClientHello record: type 0x16, version 3.x, handshake type 1 at byte 5.
            let start = (0..self.pending.len().saturating_sub(5)).find(|&i| {
                self.pending[i] == 0x16
                    && self.pending[i + 1] == 0x03
                    && self.pending[i + 5] == 0x01
            });
            match start {
                Some(i) => {
                    self.pending.drain(..i);
                    self.in_tls = true;
                }
                None => return false,
            }
        }
        // The secure channel is up at the client's first record after its ClientHello that is
        // neither a ChangeCipherSpec (TLS 1.3 middlebox compatibility) nor a second ClientHello
        // (the answer to a HelloRetryRequest, which costs the client a turn).
        while self.pending.len() >= 6 {
            let len = usize::from(u16::from_be_bytes([self.pending[3], self.pending[4]]));
            let retry_or_ccs =
                self.pending[0] == 0x14 || (self.pending[0] == 0x16 && self.pending[5] == 0x01);
            if self.records >= 1 && !retry_or_ccs {
                return true;
            }
            if self.pending.len() < 5 + len {
                return false;
            }
            self.pending.drain(..5 + len);
            self.records += 1;
        }
        false
    }
}

fn rss_kib() -> Res<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .ok_or("no VmRSS")?;
    Ok(line.split_whitespace().nth(1).ok_or("bad VmRSS")?.parse()?)
}

/// Memory per idle upgraded connection: N connections to a TLS server, 64 KiB written on each,
/// then RSS delta / N.
fn memory(args: &[String]) -> Res<()> {
    let port: u16 = arg(args, 0)?.parse()?;
    let config = client_config(arg(args, 1)?, true)?;
    let n: usize = arg(args, 2)?.parse()?;
    let payload = vec![0x42u8; 64 * 1024];
    // Warm up: the first connection loads what every later one shares.
    let mut warm = starttls::connect(&config, Protocol::Tls, "localhost", port)?;
    warm.write_all(&payload)?;
    let before = rss_kib()?;
    let mut conns = Vec::with_capacity(n);
    for _ in 0..n {
        let mut c = starttls::connect(&config, Protocol::Tls, "localhost", port)?;
        c.write_all(&payload)?;
        c.flush()?;
        conns.push(c);
    }
    thread::sleep(Duration::from_millis(200));
    let after = rss_kib()?;
    println!(
        "memory n={n} rss_delta_kib={} per_connection_kib={:.1}",
        after.saturating_sub(before),
        after.saturating_sub(before) as f64 / n as f64
    );
    drop(conns);
    drop(warm);
    Ok(())
}
