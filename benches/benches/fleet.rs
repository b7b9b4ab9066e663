//! Fleet mode: a 100,000-item fan-out on the Redis dedup store and catalog, against a
//! raw `redis` pipeline, in the same run, on a `redis-server` the bench starts on a
//! loopback port (persistence off). The two sides are in `benches::fleet`; criterion
//! runs them minutes apart, so `fleet_ratio` also runs them interleaved.
//!
//! `cargo bench -p benches --features redis --bench fleet`

use std::time::Duration;

use benches::fleet::{ITEMS, Workload};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn fan_out(c: &mut Criterion) {
    let server = testkit::RedisServer::start(&[]);
    let mut workload = Workload::new(&server.url());
    let mut group = c.benchmark_group("fan_out");
    group.warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(8)).sample_size(10);
    group.throughput(Throughput::Elements(ITEMS as u64));
    group.bench_function("sdk", |b| b.iter_custom(|iters| (0..iters).map(|_| workload.sdk()).sum()));
    group.bench_function("raw_pipeline", |b| b.iter_custom(|iters| (0..iters).map(|_| workload.raw()).sum()));
    group.finish();
}

criterion_group!(benches, fan_out);
criterion_main!(benches);
