#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| coolmesh_fuzz::config_parse(data));
