//! The committed C header is exactly what cbindgen generates from the sources.

use std::path::Path;

#[test]
fn committed_header_matches_cbindgen() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(root.join("cbindgen.toml")).expect("cbindgen.toml");
    let mut generated = Vec::new();
    cbindgen::Builder::new()
        .with_crate(root)
        .with_config(config)
        .generate()
        .expect("cbindgen")
        .write(&mut generated);
    let path = root.join("include/starttls.h");
    if std::env::var_os("STARTTLS_BLESS").is_some() {
        std::fs::write(&path, &generated).expect("write header");
    }
    let committed = std::fs::read(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "include/starttls.h differs from what cbindgen generates; \
         run `STARTTLS_BLESS=1 cargo test --test header` and commit the result"
    );
}
