// SONAME for packaged builds. With WIC_TNA_SONAME=1 (set by `make install`
// and `make deb`), the shared library gets the SONAME libwic_tna.so.<abi>,
// where <abi> is the major version (0.x: "0.<minor>", as 0.x minors break
// the ABI), so binaries keep loading across compatible upgrades. Plain
// `cargo build` leaves it out, so that programs linked against
// target/release/libwic_tna.so find it there without a versioned link.
fn main() {
    println!("cargo:rerun-if-env-changed=WIC_TNA_SONAME");
    println!("cargo:rerun-if-changed=build.rs");
    let major: u32 = env!("CARGO_PKG_VERSION_MAJOR").parse().unwrap_or(0);
    let minor: u32 = env!("CARGO_PKG_VERSION_MINOR").parse().unwrap_or(0);
    let abi = if major == 0 {
        format!("0.{minor}")
    } else {
        major.to_string()
    };
    let linux = std::env::var("CARGO_CFG_TARGET_OS")
        .map(|o| o == "linux")
        .unwrap_or(false);
    if linux
        && std::env::var("WIC_TNA_SONAME")
            .map(|v| v == "1")
            .unwrap_or(false)
    {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libwic_tna.so.{abi}");
    }
}
