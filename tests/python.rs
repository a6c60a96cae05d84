//! Runs the Python wrapper's test suite (`python/tests`, unittest) against the freshly built
//! shared library.

use std::path::Path;
use std::process::Command;

#[test]
fn python_wrapper_suite_passes() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let Ok(version) = Command::new("python3").arg("--version").output() else {
        eprintln!("SKIPPED python_wrapper_suite_passes: python3 is not installed");
        return;
    };
    assert!(version.status.success());
    let status = Command::new(env!("CARGO"))
        .args(["build", "--lib", "--quiet"])
        .current_dir(root)
        .status()
        .expect("cargo build");
    assert!(status.success(), "cargo build --lib failed");
    let exe = std::env::current_exe().expect("current exe");
    let lib = exe
        .parent()
        .and_then(Path::parent)
        .expect("target dir")
        .join("libstarttls.so");
    let out = Command::new("python3")
        .args([
            "-m",
            "unittest",
            "discover",
            "-s",
            "python/tests",
            "-t",
            "python",
            "-v",
        ])
        .current_dir(root)
        .env("STARTTLS_LIBRARY", &lib)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .expect("python3");
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stderr}");
    assert!(out.status.success(), "python tests failed");
    // unittest prints "Ran N tests"; zero would mean discovery found nothing.
    let ran = stderr
        .lines()
        .find_map(|l| {
            l.strip_prefix("Ran ")?
                .split_whitespace()
                .next()?
                .parse::<u32>()
                .ok()
        })
        .unwrap_or(0);
    assert!(ran > 0, "no Python tests ran");
}
