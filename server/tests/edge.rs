//! The HTTP edge under hostile clients: thousands of connections trickling request bodies and
//! clients that stop reading responses must not keep devices' update checks from being answered.

#[path = "support/harness.rs"]
mod harness;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use harness::{TestServer, zip_build};

/// How many connections this process can open, leaving room for the in-process server's side of
/// each and the rest of the test: 4,096 where the descriptor limit allows.
fn connections_to_open() -> usize {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let soft = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap_or(1024);
    let n = 4096.min(soft.saturating_sub(1024) / 2);
    eprintln!("descriptor limit {soft}: {n} trickling connections");
    n
}

const BLOB_BYTES: usize = 24 * 1024 * 1024;

fn p99(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[(samples.len() * 99).div_ceil(100) - 1]
}

#[test]
fn trickled_bodies_and_stalled_readers_do_not_delay_update_checks() {
    let s = TestServer::start_with(|settings| {
        settings.body_read_timeout = Duration::from_secs(4);
        settings.write_timeout = Duration::from_secs(2);
    });
    // A 24 MiB blob of noise (more than loopback's socket buffers hold), published to production.
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let noise: Vec<u8> = (0..BLOB_BYTES)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    let blob = manifests::Digest::of(&noise);
    let zip = zip_build(&[
        ("index.html".to_owned(), b"<h1>hi</h1>".to_vec()),
        ("big.bin".to_owned(), noise),
    ]);
    let r = s.publish(
        &s.admin,
        "shop",
        "app",
        "version=1.0.0&channel=production&routes=https://m.example.com/app/",
        &zip,
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let addr = s.base.trim_start_matches("http://").to_owned();
    let index = "/v1/apps/shop/channels/production/index";
    assert_eq!(s.get(index).status, 200);

    // Thousands of clients send the headers of an event batch, then its body a byte at a time.
    let n = connections_to_open();
    let mut trickling: Vec<TcpStream> = (0..n)
        .map(|_| {
            let mut c = TcpStream::connect(&addr).unwrap();
            c.write_all(
                b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
                  Content-Length: 1000\r\n\r\n{",
            )
            .unwrap();
            c.set_nonblocking(true).unwrap();
            c
        })
        .collect();
    // 64 clients ask for the blob and read one byte of it.
    let mut stalled: Vec<TcpStream> = (0..64)
        .map(|_| {
            let mut c = TcpStream::connect(&addr).unwrap();
            write!(c, "GET /v1/blobs/{blob} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
            let mut byte = [0u8; 1];
            c.read_exact(&mut byte).unwrap();
            c
        })
        .collect();

    // Meanwhile devices check for updates.
    let started = Instant::now();
    let mut latencies = Vec::new();
    let mut next_trickle = Instant::now();
    while started.elapsed() < Duration::from_millis(2500) {
        if Instant::now() >= next_trickle {
            for c in &mut trickling {
                let _ = c.write(b" ");
            }
            next_trickle = Instant::now() + Duration::from_millis(250);
        }
        let t = Instant::now();
        let r = s.get(index);
        latencies.push(t.elapsed());
        assert_eq!(
            r.status,
            200,
            "an update check during the attack: {}",
            r.text()
        );
    }
    let p99 = p99(latencies.clone());
    assert!(
        p99 < Duration::from_millis(50),
        "index p99 {p99:?} over {} checks",
        latencies.len()
    );

    // The trickling clients are cut off with 408 once their deadline passes.
    std::thread::sleep(Duration::from_secs(3));
    let mut timed_out = 0;
    for c in trickling.iter_mut().take(32) {
        c.set_nonblocking(false).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut answer = Vec::new();
        let _ = c.read_to_end(&mut answer);
        if answer.starts_with(b"HTTP/1.1 408") {
            timed_out += 1;
        }
    }
    assert_eq!(timed_out, 32, "every trickling client got 408");
    // The stalled readers were disconnected before the whole blob was sent.
    for c in stalled.iter_mut().take(8) {
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut rest = Vec::new();
        let _ = c.read_to_end(&mut rest);
        assert!(rest.len() < BLOB_BYTES, "{} bytes", rest.len());
    }
}
