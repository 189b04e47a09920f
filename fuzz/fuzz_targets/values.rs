//! Fuzzes the scalar value parsers: memory sizes, durations, command lines
//! and CPU counts never panic.
#![no_main]

use dispenser::config::values::{parse_cpus, parse_duration, parse_memory, split_command};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = parse_memory(&text);
    let _ = parse_duration(&text);
    let _ = split_command(&text);
    let mut bits = [0u8; 8];
    let take = data.len().min(8);
    bits[..take].copy_from_slice(&data[..take]);
    let _ = parse_cpus(f64::from_bits(u64::from_le_bytes(bits)));
});
