#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| claude_monitor::fuzz::target("proc")(data));
