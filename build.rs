//! Gives the shared library its SONAME, so programs link against `libstarttls.so.0`.
fn main() {
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if os == "linux" || os.ends_with("bsd") {
        let major = env!("CARGO_PKG_VERSION_MAJOR");
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libstarttls.so.{major}");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
