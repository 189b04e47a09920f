//! The cost of the status page's traffic ring on the proxy's request path: each
//! forwarded request calls `TrafficRing::record` once. Std only, so it builds alone:
//! `rustc -O --edition 2021 bench/traffic_ring.rs -o target/traffic_ring && target/traffic_ring`.

#![allow(dead_code)]


#[path = "../actors/src/metrics/traffic.rs"]
mod traffic;
use std::sync::Arc;
use std::time::Instant;
fn main() {
    let ring = Arc::new(traffic::TrafficRing::default());
    let n = 20_000_000u64;
    let t = Instant::now();
    for i in 0..n { ring.record(if i % 10 == 0 { 503 } else { 200 }); }
    println!("record (clock + ring), 1 thread: {:.1} ns/op", t.elapsed().as_nanos() as f64 / n as f64);
    let t = Instant::now();
    for i in 0..n { std::hint::black_box(traffic::current_minute() + i); }
    println!("clock read alone: {:.1} ns/op", t.elapsed().as_nanos() as f64 / n as f64);
    let t = Instant::now();
    let hs: Vec<_> = (0..2).map(|_| { let r = ring.clone(); std::thread::spawn(move || for _ in 0..n/2 { r.record(200); }) }).collect();
    for h in hs { h.join().unwrap(); }
    println!("record, 2 threads on one route: {:.1} ns/op (wall per op)", t.elapsed().as_nanos() as f64 / n as f64);
}
