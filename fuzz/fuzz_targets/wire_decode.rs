#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| coolmesh_fuzz::wire_decode(data));
