//! Cost of finding a request head's end ([`HeadScan::feed`]) for three heads: `wrk`'s minimal
//! `GET`, a browser's (a dozen fields, a long cookie), and the browser's head read in 7-byte
//! pieces (a slow client). The scanner runs on every byte a client sends before its head ends.
//!
//! `cargo bench -p switchyard-proxy --bench head_scan -- --warm-up-time 1 --measurement-time 2`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use switchyard_proxy::listener::head_scan::HeadScan;

const WRK: &[u8] = b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n";

const BROWSER: &[u8] = b"GET /catalog/items?page=2&sort=price HTTP/1.1\r\n\
Host: shop.example.test\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0\r\n\
Accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8\r\n\
Accept-Language: en-GB,en;q=0.9\r\n\
Accept-Encoding: gzip, deflate, br\r\n\
Referer: https://shop.example.test/catalog/items?page=1&sort=price\r\n\
Cookie: session=3f9a1c2b7d4e5f60718293a4b5c6d7e8; cart=eyJpdGVtcyI6WzEsMiwzLDQsNV19; theme=dark; consent=1\r\n\
Connection: keep-alive\r\n\
Upgrade-Insecure-Requests: 1\r\n\
Sec-Fetch-Dest: document\r\n\
Sec-Fetch-Mode: navigate\r\n\
\r\n";

fn scan_whole(head: &[u8]) -> Option<usize> {
    let mut scan = HeadScan::default();
    scan.feed(black_box(head))
}

fn scan_in_pieces(head: &[u8], piece: usize) -> Option<usize> {
    let mut scan = HeadScan::default();
    head.chunks(piece).find_map(|c| scan.feed(black_box(c)))
}

fn head_scan(c: &mut Criterion) {
    let mut group = c.benchmark_group("head_scan");
    group.bench_function("wrk_get", |b| b.iter(|| scan_whole(WRK)));
    group.bench_function("browser_get", |b| b.iter(|| scan_whole(BROWSER)));
    group.bench_function("browser_get_7_byte_reads", |b| {
        b.iter(|| scan_in_pieces(BROWSER, 7))
    });
    group.finish();
}

criterion_group!(benches, head_scan);
criterion_main!(benches);
