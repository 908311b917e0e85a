//! The committed C header must be exactly what cbindgen makes of the code,
//! with version macros matching Cargo.toml. `WIC_TNA_BLESS=1` rewrites it.

use std::path::PathBuf;

fn generate() -> String {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut cfg = cbindgen::Config::from_file(root.join("cbindgen.toml")).expect("cbindgen.toml");
    cfg.after_includes = Some(format!(
        "\n#define WIC_TNA_VERSION_MAJOR {}\n#define WIC_TNA_VERSION_MINOR {}\n#define WIC_TNA_VERSION_PATCH {}\n#define WIC_TNA_VERSION \"{}\"\n",
        env!("CARGO_PKG_VERSION_MAJOR"),
        env!("CARGO_PKG_VERSION_MINOR"),
        env!("CARGO_PKG_VERSION_PATCH"),
        env!("CARGO_PKG_VERSION"),
    ));
    let mut out = Vec::new();
    cbindgen::Builder::new()
        .with_crate(&root)
        .with_config(cfg)
        .generate()
        .expect("cbindgen failed")
        .write(&mut out);
    String::from_utf8(out).expect("utf-8")
}

#[test]
fn header_matches_code() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("include/wic_tna.h");
    let fresh = generate();
    if std::env::var_os("WIC_TNA_BLESS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &fresh).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == fresh,
        "include/wic_tna.h differs from the code: run `WIC_TNA_BLESS=1 cargo test --test header` and commit it"
    );
}

#[test]
fn every_export_is_prefixed_and_in_the_header() {
    let h = generate();
    let mut n = 0;
    for line in h.lines() {
        let t = line.trim_start();
        if t.starts_with('*')
            || t.starts_with("/*")
            || t.starts_with('#')
            || t.starts_with("typedef")
        {
            continue;
        }
        // A declaration: `<type> <name>(`.
        if let Some(paren) = t.find('(') {
            let name = t[..paren].rsplit([' ', '*']).next().unwrap_or("");
            if !name.is_empty() && !t.starts_with("extern") {
                n += 1;
                assert!(
                    name.starts_with("wic_tna_"),
                    "exported symbol without the wic_tna_ prefix: {line}"
                );
            }
        }
    }
    assert!(
        n >= 25,
        "expected the whole API in the header, found {n} functions"
    );
}

/// `wic_tna_status_message` knows every status of the header's enum (the
/// list it searches, `wic_tna_status::ALL`, is written by hand), and only
/// those.
#[test]
fn status_messages_cover_the_header_enum() {
    use std::ffi::CStr;
    use wic_tna::ffi::{wic_tna_status, wic_tna_status_message};
    let header = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("include/wic_tna.h"),
    )
    .unwrap();
    let values: Vec<u32> = header
        .lines()
        .filter_map(|l| l.trim().strip_prefix("WIC_TNA_STATUS_"))
        .filter_map(|l| l.split(" = ").nth(1))
        .map(|v| v.trim_end_matches(',').parse().unwrap())
        .collect();
    assert_eq!(values.len(), wic_tna_status::ALL.len(), "{values:?}");
    let msg = |n: u32| {
        // SAFETY: a static NUL-terminated string.
        unsafe { CStr::from_ptr(wic_tna_status_message(n)) }
            .to_str()
            .unwrap()
    };
    for v in &values {
        assert_ne!(msg(*v), "unknown status", "status {v}");
    }
    let mut all: Vec<u32> = wic_tna_status::ALL.iter().map(|s| *s as u32).collect();
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), values.len(), "ALL has a duplicate");
    assert_eq!(msg(4242), "unknown status");
}
