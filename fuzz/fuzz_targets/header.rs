#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for bare in [false, true] {
        if let Ok(t) = wic_tna::header::extract_token(data, bare) {
            // An extracted token is always a plain b64token: no LWS, quotes or controls.
            assert!(!t.is_empty());
            assert!(t.bytes().all(|c| c.is_ascii_graphic() && c != b'"' && c != b'\\' && c != b','));
        }
    }
});
