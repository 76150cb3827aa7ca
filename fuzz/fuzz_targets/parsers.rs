//! Every parser of untrusted bytes, one per run: the target's name comes
//! from IMG_FUZZ_TARGET (scripts/fuzz.sh sets it), the input from libFuzzer.
#![no_main]

use libfuzzer_sys::fuzz_target;

fn target() -> &'static str {
    static T: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    T.get_or_init(|| std::env::var("IMG_FUZZ_TARGET").expect("set IMG_FUZZ_TARGET to one of img::fuzz_entry::TARGETS"))
}

fuzz_target!(|data: &[u8]| {
    img::fuzz_entry::run(target(), data);
});
