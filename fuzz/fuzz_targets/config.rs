#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../config");
        let _ = wic_tna::Config::parse(text, "fuzz.toml", &dir, &dir.join("fuzz.toml"));
    }
});
