//! Micro-benchmarks of the core's hot operations.
use criterion::{criterion_group, criterion_main, Criterion};
use quiesce_core::{Policy, ReadyQueue, TimerQueue, FRESH_OWNER, PLAIN_LANE};
use std::hint::black_box;

fn ready(c: &mut Criterion) {
    for (name, policy) in [("fifo", Policy::Fifo), ("random", Policy::Random { seed: 7 })] {
        c.bench_function(&format!("ready_push_pop_{name}"), |b| {
            let mut q = ReadyQueue::new(policy.clone());
            b.iter(|| {
                for i in 0..64u64 {
                    q.push(if i % 2 == 0 { PLAIN_LANE } else { i }, FRESH_OWNER, i);
                }
                // As the binding does: each popped entry runs as a step of its own.
                q.begin_step();
                while let Some(v) = q.pop() {
                    black_box(v);
                    q.begin_step();
                }
            });
        });
    }
}

fn timers(c: &mut Criterion) {
    c.bench_function("timer_insert_cancel_half_pop", |b| {
        let mut q = TimerQueue::new();
        b.iter(|| {
            let ids: Vec<_> = (0..64u32).map(|i| q.insert(f64::from((i * 7919) % 64), i)).collect();
            for id in ids.iter().step_by(2) {
                black_box(q.cancel(*id));
            }
            while let Some(v) = q.pop_due(f64::MAX, true) {
                black_box(v);
            }
        });
    });
}

criterion_group!(benches, ready, timers);
criterion_main!(benches);
