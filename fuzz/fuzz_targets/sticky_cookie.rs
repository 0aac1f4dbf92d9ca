#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| terminus::fuzzing::sticky_cookie(data));
