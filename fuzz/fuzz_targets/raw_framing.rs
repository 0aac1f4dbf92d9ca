#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| terminus::fuzzing::raw_framing(data));
