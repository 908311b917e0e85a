#![no_main]
//! Full verification with the example configuration: never a panic, and an
//! accept only with header-safe identities.
use libfuzzer_sys::fuzz_target;
use once_cell::sync::Lazy;
use wic_tna::Context;

static CTX: Lazy<Context> = Lazy::new(|| {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/wic-tna.toml");
    Context::new(&p, None).expect("config/wic-tna.toml")
});

fuzz_target!(|data: &[u8]| {
    let split = data.iter().position(|&b| b == 0xff).unwrap_or(data.len());
    let (auth, to) = data.split_at(split);
    let to = if to.len() > 1 { Some(&to[1..]) } else { None };
    let o = CTX.verify(auth, to, Some(600), 1_700_000_000);
    if let Some(t) = &o.tna_header {
        assert!(!t.bytes().any(|c| c == b'\r' || c == b'\n' || c == 0));
    }
});
