//! The C ABI from C: the header compiles as C99 and C++, the ABI checks pass, the examples in
//! `examples-c/` build against the header and work against loopback servers (also under
//! valgrind, with no errors and no leaks), and `make install` + pkg-config give a working build.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use common::*;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// target/debug (or wherever this test binary lives).
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    exe.parent()
        .and_then(Path::parent)
        .expect("target dir")
        .to_path_buf()
}

fn scratch(name: &str) -> PathBuf {
    let d = target_dir().join("c-tests").join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("scratch dir");
    d
}

/// Builds the cdylib (cargo test builds only the rlib) and returns a folder where it also goes
/// by its SONAME.
fn lib_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let status = Command::new(env!("CARGO"))
            .args(["build", "--lib", "--quiet"])
            .current_dir(root())
            .status()
            .expect("cargo build");
        assert!(status.success(), "cargo build --lib failed");
        let so = target_dir().join("libstarttls.so");
        assert!(so.exists(), "{} missing", so.display());
        let dir = scratch("lib");
        for name in ["libstarttls.so", "libstarttls.so.0"] {
            std::os::unix::fs::symlink(&so, dir.join(name)).expect("symlink");
        }
        dir
    })
}

fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"))
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Compiles one C file against the header and the shared library.
fn build_c(src: &Path, out: &Path) {
    let lib = lib_dir();
    let o = run(Command::new("cc")
        .args(["-std=c99", "-Wall", "-Wextra", "-Werror", "-g"])
        .arg("-I")
        .arg(root().join("include"))
        .arg(src)
        .arg("-o")
        .arg(out)
        .arg("-L")
        .arg(lib)
        .arg(format!("-Wl,-rpath,{}", lib.display()))
        .arg("-lstarttls"));
    assert!(
        o.status.success(),
        "cc {}: {}",
        src.display(),
        text(&o.stderr)
    );
}

fn example(name: &str) -> PathBuf {
    let dir = scratch(&format!("ex-{name}"));
    let exe = dir.join(name);
    build_c(&root().join("examples-c").join(format!("{name}.c")), &exe);
    exe
}

fn ca_file(dir: &str) -> PathBuf {
    let path = scratch(dir).join("ca.pem");
    std::fs::write(&path, &pki().ca_pem).expect("ca file");
    path
}

fn have_valgrind() -> bool {
    Command::new("valgrind")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Runs under valgrind when it is installed: any memory error or definite/indirect leak fails.
fn maybe_valgrind(exe: &Path) -> Command {
    if have_valgrind() {
        let mut c = Command::new("valgrind");
        c.args([
            "--quiet",
            "--error-exitcode=99",
            "--leak-check=full",
            "--errors-for-leak-kinds=definite,indirect",
        ])
        .arg(exe);
        c
    } else {
        eprintln!(
            "SKIPPED valgrind: not installed; running {} natively",
            exe.display()
        );
        Command::new(exe)
    }
}

fn smtp_server(ehlo_caps: &'static [u8]) -> (u16, std::thread::JoinHandle<Vec<String>>) {
    serve(move |mut p| {
        let mut seen = Vec::new();
        p.send(b"220 mx.test ESMTP\r\n");
        seen.push(p.line());
        p.send(ehlo_caps);
        if !ehlo_caps.windows(8).any(|w| w == b"STARTTLS") {
            return seen;
        }
        seen.push(p.line());
        p.send(b"220 2.0.0 go ahead\r\n");
        let mut t = p.tls(server_config(&pki().server));
        seen.push(t.line());
        t.send(b"250-mx.test\r\n250-AUTH PLAIN\r\n250 SIZE 1000\r\n");
        seen.push(t.line());
        t.send(b"221 2.0.0 bye\r\n");
        t.saw_close_notify();
        seen
    })
}

#[test]
fn header_compiles_as_c89_c99_and_cxx() {
    let src = root().join("tests/c/header_check.c");
    for (compiler, lang) in [
        ("cc", ["-std=c89", "-xc"]),
        ("cc", ["-std=c99", "-xc"]),
        ("c++", ["-std=c++11", "-xc++"]),
    ] {
        let o = run(Command::new(compiler)
            .args(lang)
            .args(["-Wall", "-Wextra", "-Werror", "-pedantic", "-fsyntax-only"])
            .arg("-I")
            .arg(root().join("include"))
            .arg(&src));
        assert!(o.status.success(), "{compiler}: {}", text(&o.stderr));
    }
}

#[test]
fn abi_checks_pass_from_c() {
    let dir = scratch("abi");
    let exe = dir.join("abi_check");
    build_c(&root().join("tests/c/abi_check.c"), &exe);
    let o = run(&mut maybe_valgrind(&exe));
    let stdout = text(&o.stdout);
    assert!(o.status.success(), "{stdout}{}", text(&o.stderr));
    assert!(stdout.contains(" passed, 0 failed"), "{stdout}");
}

#[test]
fn dane_and_pins_from_c() {
    // The library's SMTP server, with the test CA's certificate for localhost (no config in the
    // C program trusts that CA): four connections, some refused by the client.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let cfg = starttls::ServerConfig::builder()
            .certificate_pem(pki().server.chain_pem.clone(), pki().server.key_pem.clone())
            .hostname("mx.test")
            .timeout(std::time::Duration::from_secs(20))
            .build()
            .unwrap();
        for _ in 0..4 {
            let (sock, _) = listener.accept().unwrap();
            let _ = starttls::accept(&cfg, starttls::Protocol::Smtp, sock);
        }
    });
    let pin = starttls::pin_sha256(&pki().server.chain[0]).unwrap();
    let digest: String = unbase64(&pin).iter().map(|b| format!("{b:02x}")).collect();
    let dir = scratch("dane");
    let exe = dir.join("dane");
    build_c(&root().join("tests/c/dane.c"), &exe);
    let o = run(maybe_valgrind(&exe)
        .arg(port.to_string())
        .arg(format!("3 1 1 {digest}"))
        .arg(&digest)
        .arg(&pin));
    let stdout = text(&o.stdout);
    assert!(o.status.success(), "{stdout}{}", text(&o.stderr));
    assert!(stdout.contains(" passed, 0 failed"), "{stdout}");
    server.join().unwrap();
}

#[test]
fn smtp_client_example_upgrades_and_quits() {
    let exe = example("smtp_client");
    let ca = ca_file("smtp-ca");
    let (port, server) = smtp_server(b"250-mx.test\r\n250 STARTTLS\r\n");
    let o = run(maybe_valgrind(&exe)
        .arg("127.0.0.1")
        .arg(port.to_string())
        .arg(&ca)
        .arg("localhost"));
    let stdout = text(&o.stdout);
    assert!(o.status.success(), "{stdout}{}", text(&o.stderr));
    assert!(stdout.contains("verified: yes"), "{stdout}");
    assert!(stdout.contains("AUTH PLAIN\nSIZE 1000"), "{stdout}");
    assert!(stdout.contains("QUIT: 221 2.0.0 bye"), "{stdout}");
    let seen = server.join().unwrap();
    assert_eq!(
        seen,
        ["EHLO [127.0.0.1]", "STARTTLS", "EHLO [127.0.0.1]", "QUIT"]
    );
}

#[test]
fn smtp_client_example_reports_stripped_starttls() {
    let exe = example("smtp_client");
    let ca = ca_file("stripped-ca");
    let (port, server) = smtp_server(b"250-mx.test\r\n250 AUTH PLAIN\r\n");
    let o = run(Command::new(&exe)
        .arg("127.0.0.1")
        .arg(port.to_string())
        .arg(&ca)
        .arg("localhost"));
    assert_eq!(o.status.code(), Some(1));
    let stderr = text(&o.stderr);
    assert!(stderr.contains("STARTTLS_ERR_NOT_OFFERED"), "{stderr}");
    assert!(stderr.contains("250 AUTH PLAIN"), "{stderr}");
    assert_eq!(server.join().unwrap(), ["EHLO [127.0.0.1]"]);
}

fn imap_server(implicit: bool) -> (u16, std::thread::JoinHandle<Vec<String>>) {
    serve(move |mut p| {
        let mut seen = Vec::new();
        let mut t = if implicit {
            let mut t = p.tls(server_config(&pki().server));
            t.send(b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] imaps ready\r\n");
            t
        } else {
            p.send(b"* OK [CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED] ready\r\n");
            seen.push(p.line());
            p.send(b"S1 OK Begin TLS\r\n");
            p.tls(server_config(&pki().server))
        };
        let tag = if implicit { "S1" } else { "S2" };
        if !implicit {
            seen.push(t.line());
            t.send(format!("* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n{tag} OK done\r\n").as_bytes());
        }
        seen.push(t.line());
        t.send(b"* BYE logging out\r\na1 OK LOGOUT done\r\n");
        t.saw_close_notify();
        seen
    })
}

#[test]
fn imap_client_example_starttls_and_implicit() {
    let exe = example("imap_client");
    let ca = ca_file("imap-ca");
    let (port, server) = imap_server(false);
    let o = run(Command::new(&exe)
        .arg("localhost")
        .arg(port.to_string())
        .arg(&ca));
    let stdout = text(&o.stdout);
    assert!(o.status.success(), "{stdout}{}", text(&o.stderr));
    assert!(
        stdout.contains("before TLS (untrusted): IMAP4rev1\nSTARTTLS\nLOGINDISABLED"),
        "{stdout}"
    );
    assert!(
        stdout.contains("after TLS: IMAP4rev1\nAUTH=PLAIN"),
        "{stdout}"
    );
    assert!(stdout.contains("S: a1 OK LOGOUT done"), "{stdout}");
    assert_eq!(
        server.join().unwrap(),
        ["S1 STARTTLS", "S2 CAPABILITY", "a1 LOGOUT"]
    );

    let (port, server) = imap_server(true);
    let o = run(Command::new(&exe)
        .arg("--implicit")
        .arg("localhost")
        .arg(port.to_string())
        .arg(&ca));
    let stdout = text(&o.stdout);
    assert!(o.status.success(), "{stdout}{}", text(&o.stderr));
    assert!(
        stdout.contains("greeting: * OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] imaps ready"),
        "{stdout}"
    );
    assert!(
        stdout.contains("after TLS: IMAP4rev1\nAUTH=PLAIN"),
        "{stdout}"
    );
    assert_eq!(server.join().unwrap(), ["a1 LOGOUT"]);
}

fn pop3_server() -> (u16, std::thread::JoinHandle<String>) {
    serve(|mut p| {
        p.send(b"+OK POP3 ready\r\n");
        let stls = p.line();
        p.send(b"+OK Begin TLS\r\n");
        let mut t = p.tls(server_config(&pki().server));
        assert_eq!(t.line(), "CAPA");
        t.send(b"+OK\r\nUSER\r\nSASL PLAIN\r\n.\r\n");
        assert_eq!(t.line(), "QUIT");
        t.send(b"+OK bye\r\n");
        t.saw_close_notify();
        stls
    })
}

#[test]
fn fd_upgrade_example_borrows_the_fd() {
    let exe = example("fd_upgrade");
    let ca = ca_file("fd-ca");
    let (port, server) = pop3_server();
    let o = run(maybe_valgrind(&exe)
        .args(["pop3", "127.0.0.1"])
        .arg(port.to_string())
        .arg("localhost")
        .arg(&ca));
    let stdout = text(&o.stdout);
    assert!(o.status.success(), "{stdout}{}", text(&o.stderr));
    assert!(
        stdout.contains("capabilities inside TLS: USER\nSASL PLAIN"),
        "{stdout}"
    );
    assert!(stdout.contains("still open after free"), "{stdout}");
    assert_eq!(server.join().unwrap(), "STLS");
}

#[test]
fn make_install_then_pkg_config_build() {
    lib_dir();
    let prefix = scratch("install");
    let o = run(Command::new("make")
        .current_dir(root())
        .arg("install")
        .arg(format!("PREFIX={}", prefix.display()))
        .arg("PROFILE=debug")
        .arg(format!(
            "TARGET_DIR={}",
            target_dir().parent().expect("target").display()
        )));
    assert!(
        o.status.success(),
        "make install: {}{}",
        text(&o.stdout),
        text(&o.stderr)
    );
    for f in [
        "lib/libstarttls.so.0",
        "lib/libstarttls.so",
        "lib/libstarttls.a",
        "include/starttls.h",
        "lib/pkgconfig/starttls.pc",
        "share/man/man3/starttls.3",
        "bin/starttls",
        "share/man/man1/starttls.1",
        "share/man/man1/starttls-check.1",
        "share/man/man1/starttls-mx.1",
        "share/man/man1/starttls-serve.1",
        "share/man/man1/starttls-tunnel.1",
        "share/bash-completion/completions/starttls",
        "share/zsh/site-functions/_starttls",
        "share/fish/vendor_completions.d/starttls.fish",
    ] {
        assert!(prefix.join(f).exists(), "{f} not installed");
    }
    // The manual page is well-formed roff that man(1) can render, when man is installed.
    let page = prefix.join("share/man/man3/starttls.3");
    if let Ok(o) = Command::new("man")
        .arg("-l")
        .arg(&page)
        .env("MANWIDTH", "80")
        .output()
    {
        if o.status.success() {
            assert!(
                text(&o.stdout).contains("STARTTLS_WANT_READ"),
                "{}",
                text(&o.stdout)
            );
        }
    }
    // The installed command runs, and its page documents the exit codes.
    let o = run(Command::new(prefix.join("bin/starttls")).arg("--version"));
    assert!(
        text(&o.stdout).starts_with("starttls "),
        "{}",
        text(&o.stdout)
    );
    let check_page = std::fs::read_to_string(prefix.join("share/man/man1/starttls-check.1"))
        .expect("starttls-check.1");
    assert!(check_page.contains(".SH \"EXIT STATUS\""), "{check_page}");
    assert!(check_page.contains("warn\\-days"), "{check_page}");
    let pc_path = prefix.join("lib/pkgconfig");
    let flags = run(Command::new("pkg-config")
        .env("PKG_CONFIG_PATH", &pc_path)
        .args(["--cflags", "--libs", "starttls"]));
    assert!(
        flags.status.success(),
        "pkg-config: {}",
        text(&flags.stderr)
    );
    let flags = text(&flags.stdout);
    let exe = prefix.join("smtp_client");
    let o = run(Command::new("cc")
        .args(["-std=c99", "-Wall", "-Wextra", "-Werror"])
        .arg(root().join("examples-c/smtp_client.c"))
        .arg("-o")
        .arg(&exe)
        .args(flags.split_whitespace()));
    assert!(
        o.status.success(),
        "cc with pkg-config flags {flags}: {}",
        text(&o.stderr)
    );
    let needed = run(Command::new("readelf").arg("-d").arg(&exe));
    assert!(
        text(&needed.stdout).contains("[libstarttls.so.0]"),
        "{}",
        text(&needed.stdout)
    );

    let ca = ca_file("install-ca");
    let (port, server) = smtp_server(b"250-mx.test\r\n250 STARTTLS\r\n");
    let o = run(Command::new(&exe)
        .env("LD_LIBRARY_PATH", prefix.join("lib"))
        .arg("127.0.0.1")
        .arg(port.to_string())
        .arg(&ca)
        .arg("localhost"));
    assert!(o.status.success(), "{}{}", text(&o.stdout), text(&o.stderr));
    server.join().unwrap();
}

#[test]
fn static_library_links() {
    lib_dir();
    let dir = scratch("static");
    let exe = dir.join("abi_check_static");
    let o = run(Command::new("cc")
        .args(["-std=c99", "-Wall", "-Wextra", "-Werror"])
        .arg("-I")
        .arg(root().join("include"))
        .arg(root().join("tests/c/abi_check.c"))
        .arg(target_dir().join("libstarttls.a"))
        .args(["-lpthread", "-ldl", "-lm"])
        .arg("-o")
        .arg(&exe));
    assert!(o.status.success(), "static link: {}", text(&o.stderr));
    let o = run(&mut Command::new(&exe));
    assert!(o.status.success(), "{}{}", text(&o.stdout), text(&o.stderr));
}

fn cert_files(dir: &str) -> (PathBuf, PathBuf) {
    let d = scratch(dir);
    let (cert, key) = (d.join("cert.pem"), d.join("key.pem"));
    std::fs::write(&cert, &pki().server.chain_pem).unwrap();
    std::fs::write(&key, &pki().server.key_pem).unwrap();
    (cert, key)
}

/// Starts `smtp_sink` for `connections` connections; returns the child and its port.
fn start_sink(
    exe: &Path,
    connections: u32,
    under_valgrind: bool,
) -> (
    std::process::Child,
    std::io::BufReader<std::process::ChildStdout>,
    u16,
) {
    use std::io::BufRead;
    let (cert, key) = cert_files(&format!("sink-{connections}-{under_valgrind}"));
    let mut cmd = if under_valgrind {
        maybe_valgrind(exe)
    } else {
        Command::new(exe)
    };
    let mut child = cmd
        .arg("0")
        .arg(&cert)
        .arg(&key)
        .arg(connections.to_string())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("smtp_sink");
    let mut out = std::io::BufReader::new(child.stdout.take().expect("stdout"));
    let mut first = String::new();
    out.read_line(&mut first).unwrap();
    let port = first
        .trim()
        .strip_prefix("listening on ")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("smtp_sink said {first:?}"));
    (child, out, port)
}

#[test]
fn smtp_sink_example_serves_starttls_to_the_library_and_refuses_pipelining() {
    use std::io::{Read, Write};
    let exe = example("smtp_sink");
    let (mut child, mut out, port) = start_sink(&exe, 2, true);

    // 1. A well-behaved client sends a message.
    let mut conn = starttls::connect(
        &client_config(),
        starttls::Protocol::Smtp,
        "localhost",
        port,
    )
    .unwrap();
    let mut say = |line: &str| -> String {
        conn.write_all(format!("{line}\r\n").as_bytes()).unwrap();
        let mut reply = read_line(&mut conn);
        while reply.as_bytes().get(3) == Some(&b'-') {
            reply = read_line(&mut conn);
        }
        reply
    };
    assert_eq!(say("EHLO client.test"), "250 SIZE 10485760");
    assert_eq!(say("STARTTLS"), "503 5.5.1 TLS already active");
    assert_eq!(say("MAIL FROM:<a@test>"), "250 2.0.0 OK");
    assert_eq!(say("RCPT TO:<b@test>"), "250 2.0.0 OK");
    assert_eq!(say("DATA"), "354 End data with <CR><LF>.<CR><LF>");
    assert_eq!(
        say("Subject: hi\r\n\r\n..dot line\r\n."),
        "250 2.0.0 Message accepted"
    );
    assert_eq!(say("QUIT"), "221 2.0.0 Bye");

    // 2. An attacker pipelines a command after STARTTLS: no go-ahead, nothing executed.
    let mut raw = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    raw.set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    raw.write_all(b"EHLO evil\r\nSTARTTLS\r\nMAIL FROM:<evil@x>\r\n")
        .unwrap();
    let mut seen = Vec::new();
    let _ = raw.read_to_end(&mut seen);
    assert!(!String::from_utf8_lossy(&seen).contains("220 2.0.0"));

    let status = child.wait().unwrap();
    let mut log = String::new();
    out.read_to_string(&mut log).unwrap();
    assert!(
        status.success(),
        "smtp_sink (valgrind: {}) failed:\n{log}",
        have_valgrind()
    );
    assert!(
        log.contains("TLS 0x0304 with client \"[127.0.0.1]\""),
        "{log}"
    );
    assert!(
        log.contains("Subject: hi\n\n.dot line\n--- end ---"),
        "{log}"
    );
    assert!(
        log.contains("refused connection: STARTTLS_ERR_INJECTION"),
        "{log}"
    );
}

/// A TLS server for `n` connections: each gets "hello", must answer "bye".
fn hello_server(n: usize) -> (u16, std::thread::JoinHandle<usize>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = std::thread::spawn(move || {
        let mut workers = Vec::new();
        for _ in 0..n {
            let (sock, _) = listener.accept().unwrap();
            sock.set_read_timeout(Some(std::time::Duration::from_secs(20)))
                .unwrap();
            workers.push(std::thread::spawn(move || {
                let mut t = Peer { sock }.tls(server_config(&pki().server));
                t.send(b"hello\n");
                t.line() == "bye"
            }));
        }
        workers
            .into_iter()
            .map(|w| w.join().unwrap())
            .filter(|ok| *ok)
            .count()
    });
    (port, handle)
}

#[test]
fn one_config_shared_by_many_threads_and_freed_while_connections_live() {
    let dir = scratch("threads");
    let exe = dir.join("threads");
    let lib = lib_dir();
    let o = run(Command::new("cc")
        .args(["-std=c99", "-Wall", "-Wextra", "-Werror", "-g", "-pthread"])
        .arg("-I")
        .arg(root().join("include"))
        .arg(root().join("tests/c/threads.c"))
        .arg("-o")
        .arg(&exe)
        .arg("-L")
        .arg(lib)
        .arg(format!("-Wl,-rpath,{}", lib.display()))
        .arg("-lstarttls"));
    assert!(o.status.success(), "cc: {}", text(&o.stderr));
    let ca = ca_file("threads-ca");
    let threads = 8;
    let (port, server) = hello_server(threads);
    let o = run(maybe_valgrind(&exe)
        .arg(port.to_string())
        .arg(&ca)
        .arg(threads.to_string()));
    let stdout = text(&o.stdout);
    assert!(o.status.success(), "{stdout}{}", text(&o.stderr));
    assert!(stdout.contains("8 passed, 0 failed"), "{stdout}");
    assert_eq!(server.join().unwrap(), threads);
}

#[test]
fn c_programs_run_clean_under_address_sanitizer() {
    let probe = scratch("asan-probe");
    let ok = Command::new("cc")
        .args(["-fsanitize=address", "-x", "c", "-", "-o"])
        .arg(probe.join("probe"))
        .stdin(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin
                .take()
                .unwrap()
                .write_all(b"int main(void){return 0;}")?;
            c.wait()
        })
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("SKIPPED AddressSanitizer: the compiler cannot build with -fsanitize=address");
        return;
    }
    let lib = lib_dir();
    let build = |src: &str, name: &str| -> PathBuf {
        let exe = scratch(&format!("asan-{name}")).join(name);
        let o = run(Command::new("cc")
            .args(["-std=c99", "-Wall", "-Wextra", "-Werror", "-g", "-pthread"])
            .args(["-fsanitize=address,undefined", "-fno-omit-frame-pointer"])
            .arg("-I")
            .arg(root().join("include"))
            .arg(root().join(src))
            .arg("-o")
            .arg(&exe)
            .arg("-L")
            .arg(lib)
            .arg(format!("-Wl,-rpath,{}", lib.display()))
            .arg("-lstarttls"));
        assert!(o.status.success(), "cc {src}: {}", text(&o.stderr));
        exe
    };
    // The Rust side keeps some allocations for the process's lifetime (thread-locals):
    // report leaks only from the C side's own mistakes.
    let asan_env = (
        "ASAN_OPTIONS",
        "detect_leaks=1:abort_on_error=0:exitcode=97",
    );
    let abi = build("tests/c/abi_check.c", "abi_check");
    let o = run(Command::new(&abi).env(asan_env.0, asan_env.1));
    assert!(
        o.status.success(),
        "abi_check under ASan: {}{}",
        text(&o.stdout),
        text(&o.stderr)
    );

    let threads = build("tests/c/threads.c", "threads");
    let ca = ca_file("asan-ca");
    let (port, server) = hello_server(4);
    let o = run(Command::new(&threads)
        .env(asan_env.0, asan_env.1)
        .arg(port.to_string())
        .arg(&ca)
        .arg("4"));
    assert!(
        o.status.success(),
        "threads under ASan: {}{}",
        text(&o.stdout),
        text(&o.stderr)
    );
    assert_eq!(server.join().unwrap(), 4);

    let smtp = build("examples-c/smtp_client.c", "smtp_client");
    let (port, server) = smtp_server(b"250-mx.test\r\n250 STARTTLS\r\n");
    let o = run(Command::new(&smtp)
        .env(asan_env.0, asan_env.1)
        .arg("127.0.0.1")
        .arg(port.to_string())
        .arg(&ca)
        .arg("localhost"));
    assert!(
        o.status.success(),
        "smtp_client under ASan: {}{}",
        text(&o.stdout),
        text(&o.stderr)
    );
    server.join().unwrap();
}

#[test]
fn writes_to_a_closed_peer_are_error_codes_never_sigpipe() {
    let dir = scratch("sigpipe");
    let exe = dir.join("sigpipe");
    build_c(&root().join("tests/c/sigpipe.c"), &exe);
    let (port, server) = serve(|p| {
        // Handshake, then go away at once.
        drop(p.tls(server_config(&pki().server)));
    });
    let o = run(Command::new(&exe)
        .arg(port.to_string())
        .arg(ca_file("sigpipe-ca")));
    server.join().unwrap();
    let stdout = text(&o.stdout);
    // Killed by SIGPIPE would be no exit code at all (signal 13).
    assert!(
        o.status.success(),
        "{:?}: {stdout}{}",
        o.status,
        text(&o.stderr)
    );
    assert!(stdout.contains("alive after writing"), "{stdout}");
    assert!(
        stdout.contains("STARTTLS_ERR_CLOSED") || stdout.contains("STARTTLS_ERR_IO"),
        "{stdout}"
    );
}

#[test]
fn a_poll_loop_over_a_non_blocking_connection_reads_writes_and_closes() {
    let dir = scratch("event-loop");
    let exe = dir.join("event_loop");
    build_c(&root().join("tests/c/event_loop.c"), &exe);
    let (port, server) = smtp_server(b"250-mx.test\r\n250 STARTTLS\r\n");
    let o = run(maybe_valgrind(&exe)
        .arg(port.to_string())
        .arg(ca_file("event-loop-ca")));
    let stdout = text(&o.stdout);
    assert!(o.status.success(), "{stdout}{}", text(&o.stderr));
    assert!(stdout.contains(" passed, 0 failed"), "{stdout}");
    let seen = server.join().unwrap();
    assert_eq!(seen.last().map(String::as_str), Some("QUIT"), "{seen:?}");
}

#[test]
fn imap_idle_example_waits_in_one_poll_loop_and_ends_on_done() {
    use std::io::{BufRead, BufReader, Write};
    let exe = example("imap_idle");
    let (port, server) = serve(|mut p| {
        let mut seen = Vec::new();
        p.send(b"* OK [CAPABILITY IMAP4rev1 STARTTLS] ready\r\n");
        seen.push(p.line());
        p.send(b"S1 OK begin TLS\r\n");
        let mut t = p.tls(server_config(&pki().server));
        for reply in [
            &b"* CAPABILITY IMAP4rev1 AUTH=PLAIN SASL-IR IDLE\r\nS2 OK\r\n"[..],
            b"S3 OK logged in\r\n",
            b"* 0 EXISTS\r\na1 OK [READ-WRITE] SELECT done\r\n",
            b"+ idling\r\n",
        ] {
            seen.push(t.line());
            t.send(reply);
        }
        std::thread::sleep(std::time::Duration::from_millis(300));
        // Two lines in one record: the second waits inside the library, not in the socket.
        t.send(b"* 1 EXISTS\r\n* 1 RECENT\r\n");
        seen.push(t.line()); // DONE
        t.send(b"a2 OK IDLE terminated\r\n");
        seen.push(t.line()); // a3 LOGOUT
        t.send(b"* BYE logging out\r\na3 OK LOGOUT done\r\n");
        seen.push(format!("close_notify={}", t.saw_close_notify()));
        seen
    });
    let mut child = maybe_valgrind(&exe)
        .args(["127.0.0.1", &port.to_string(), "alice"])
        .arg(ca_file("imap-idle-ca"))
        .arg("localhost")
        .env("IMAP_PASSWORD", "s3cr3t")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut shown = String::new();
    let mut line = String::new();
    while out.read_line(&mut line).unwrap_or(0) > 0 {
        shown.push_str(&line);
        if line.contains("* 1 RECENT") {
            stdin.write_all(b"done\n").unwrap();
        }
        line.clear();
    }
    let status = child.wait().unwrap();
    let mut err = String::new();
    let _ = std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err);
    assert!(status.success(), "{status:?}\n{shown}{err}");
    for expected in [
        "S: + idling",
        "S: * 1 EXISTS",
        "S: * 1 RECENT",
        "S: a2 OK",
        "S: a3 OK",
    ] {
        assert!(shown.contains(expected), "{expected:?} missing:\n{shown}");
    }
    let seen = server.join().unwrap();
    assert_eq!(seen[0], "S1 STARTTLS");
    assert!(seen[2].starts_with("S3 AUTHENTICATE PLAIN "), "{seen:?}");
    assert!(!shown.contains("s3cr3t"));
    assert_eq!(
        &seen[3..],
        [
            "a1 SELECT INBOX",
            "a2 IDLE",
            "DONE",
            "a3 LOGOUT",
            "close_notify=true"
        ]
    );
}

/// The DNS lookups an MTA makes before `starttls_connect_dane`, from C under valgrind: TLSA
/// records only under validated answers, a failed lookup closed, a domain without MTA-STS.
#[test]
fn lookups_from_c() {
    use hickory_proto::rr::rdata::tlsa::{CertUsage, Matching, Selector};
    use hickory_proto::rr::rdata::{A, TLSA};
    use hickory_proto::rr::{RData, RecordType};
    let mut table = std::collections::HashMap::new();
    table.insert(
        ("mx.test.".to_owned(), RecordType::A),
        vec![RData::A(A(std::net::Ipv4Addr::LOCALHOST))],
    );
    table.insert(
        ("_25._tcp.mx.test.".to_owned(), RecordType::TLSA),
        vec![RData::TLSA(TLSA::new(
            CertUsage::from(3),
            Selector::from(1),
            Matching::from(1),
            vec![9; 32],
        ))],
    );
    let insecure = scripted_resolver(table.clone(), false);
    let secure = scripted_resolver(table, true);
    let dir = scratch("lookup");
    let exe = dir.join("lookup");
    build_c(&root().join("tests/c/lookup.c"), &exe);
    let o = run(maybe_valgrind(&exe)
        .arg(format!("127.0.0.1:{insecure}"))
        .arg(format!("127.0.0.1:{secure}")));
    let stdout = text(&o.stdout);
    assert!(o.status.success(), "{stdout}{}", text(&o.stderr));
    assert!(stdout.contains(" passed, 0 failed"), "{stdout}");
}
