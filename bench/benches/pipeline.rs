//! The software pipeline per packet — parse + classify + enqueue + dequeue, 1M-slot flow
//! table — on (a) the realistic mix and (b) a spoofed flood of non-conforming SYNs, each
//! beside the queue-only reference (same frames, same rings, no parse, no classify) in the
//! same run. Criterion reports elements (packets) per second; the ratio to the reference
//! is the cost of deciding.
//!
//! Each iteration replays the same frames with the same timestamps: after the first, the
//! mix's flows are already established (its SYNs and handshakes then meet known flows),
//! and the flood stays what it is (spoofed SYNs create no state).

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use weir_bench::{Pipeline, QueueOnly};

const FRAMES: usize = 1 << 16;

fn bench(c: &mut Criterion) {
    for (name, frames) in [
        ("mix", weir_fixtures::bench_mix(FRAMES)),
        ("flood", weir_fixtures::bench_flood(FRAMES)),
    ] {
        let mut g = c.benchmark_group(name);
        g.throughput(Throughput::Elements(frames.len() as u64));
        g.bench_function("pipeline", |b| {
            let mut p = Pipeline::new(1 << 20);
            b.iter(|| {
                for (ts, f) in &frames {
                    black_box(p.push(f, *ts));
                }
            });
        });
        g.bench_function("queue-only-reference", |b| {
            let mut q = QueueOnly::new();
            b.iter(|| {
                for (_, f) in &frames {
                    q.push(black_box(f));
                }
            });
        });
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
