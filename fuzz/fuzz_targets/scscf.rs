#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let trusted = ["127.0.0.1".parse().unwrap()];
    let _ = wic_tna::tna::parse(data);
    let _ = wic_tna::tna::scscf_check(data, "127.0.0.1", &trusted, &["https://a"], &|_| false);
});
