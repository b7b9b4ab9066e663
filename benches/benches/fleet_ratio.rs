//! The fleet fan-out against the raw pipeline, interleaved: every round runs both
//! sides on the same server, one right after the other (which goes first alternates),
//! so that this machine's slow minutes weigh on both alike. Prints each round's ratio
//! and their median, least and greatest.
//!
//! `cargo bench -p benches --features redis --bench fleet_ratio [-- ROUNDS]`: the sync
//! SDK against two raw `SET`s per item. With `--features fleet-all`, `-- async [ROUNDS]`
//! runs the async SDK against a raw async pipeline of the commands it sends,
//! `-- cluster [ROUNDS]` the sync SDK on a 3-master cluster against the same on one
//! server, and `-- durable [ROUNDS]` the sync SDK on a 3+3 cluster (append-only file
//! fsynced always, as the failover tests run it) with durable claims (`auto`: every
//! master's pipeline waits for its replica) against the same with `none`.

use std::time::Duration;

use benches::fleet::Workload;

fn main() {
    let rounds: usize = std::env::args().skip(1).find_map(|arg| arg.parse().ok()).unwrap_or(9);
    let mode = std::env::args().skip(1).find(|arg| arg == "async" || arg == "cluster" || arg == "durable");
    match mode.as_deref() {
        #[cfg(feature = "fleet-all")]
        Some("async") => interleave("fan_out async sdk / raw async pipeline", rounds, &mut OnAsync::new()),
        #[cfg(feature = "fleet-all")]
        Some("cluster") => interleave("fan_out on a 3-master cluster / on one server", rounds, &mut OnCluster::new()),
        #[cfg(feature = "fleet-all")]
        Some("durable") => interleave("fan_out on a 3+3 cluster, durability auto / none", rounds, &mut Durable::new()),
        Some(other) => {
            eprintln!("`{other}` needs --features fleet-all");
            std::process::exit(2);
        }
        None => interleave("fan_out sdk / raw pipeline", rounds, &mut OnOne::new()),
    }
}

/// Two sides of a ratio: each call times one fan-out.
trait Sides {
    fn first(&mut self) -> Duration;
    fn second(&mut self) -> Duration;
}

/// The sync SDK against the raw pipeline, on one server.
struct OnOne {
    _server: testkit::RedisServer,
    workload: Workload,
}

impl OnOne {
    fn new() -> Self {
        let server = testkit::RedisServer::start(&[]);
        let workload = Workload::new(&server.url());
        OnOne { _server: server, workload }
    }
}

impl Sides for OnOne {
    fn first(&mut self) -> Duration {
        self.workload.sdk()
    }
    fn second(&mut self) -> Duration {
        self.workload.raw()
    }
}

/// The async SDK against the raw async pipeline, on one server, from a
/// current-thread runtime.
#[cfg(feature = "fleet-all")]
struct OnAsync {
    _server: testkit::RedisServer,
    runtime: tokio::runtime::Runtime,
    workload: benches::fleet::async_fan_out::AsyncWorkload,
}

#[cfg(feature = "fleet-all")]
impl OnAsync {
    #[allow(clippy::panic)] // a bench may stop at a failure
    fn new() -> Self {
        let server = testkit::RedisServer::start(&[]);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|err| panic!("cannot start a runtime: {err}"));
        let workload = runtime.block_on(benches::fleet::async_fan_out::AsyncWorkload::new(&server.url()));
        OnAsync { _server: server, runtime, workload }
    }
}

#[cfg(feature = "fleet-all")]
impl Sides for OnAsync {
    fn first(&mut self) -> Duration {
        self.runtime.block_on(self.workload.sdk())
    }
    fn second(&mut self) -> Duration {
        self.runtime.block_on(self.workload.raw())
    }
}

/// The sync SDK on a 3-master cluster against the same on one server.
#[cfg(feature = "fleet-all")]
struct OnCluster {
    _cluster: testkit::RedisCluster,
    _server: testkit::RedisServer,
    on_cluster: Workload,
    on_one: Workload,
}

#[cfg(feature = "fleet-all")]
impl OnCluster {
    fn new() -> Self {
        let cluster = testkit::RedisCluster::start(3, 0);
        let server = testkit::RedisServer::start(&[]);
        let on_cluster = Workload::new(&cluster.seed_url()).flushing(&cluster.urls());
        let on_one = Workload::new(&server.url());
        OnCluster { _cluster: cluster, _server: server, on_cluster, on_one }
    }
}

#[cfg(feature = "fleet-all")]
impl Sides for OnCluster {
    fn first(&mut self) -> Duration {
        self.on_cluster.sdk()
    }
    fn second(&mut self) -> Duration {
        self.on_one.sdk()
    }
}

/// The sync SDK on one 3+3 cluster, claims waited for on a replica and not.
#[cfg(feature = "fleet-all")]
struct Durable {
    _cluster: testkit::RedisCluster,
    durable: Workload,
    loose: Workload,
}

#[cfg(feature = "fleet-all")]
impl Durable {
    fn new() -> Self {
        use idempotency_catalog::{RedisBuilder, fleet::Durability};
        let options = testkit::ClusterOptions { append_only: true, ..testkit::ClusterOptions::default() };
        let cluster = testkit::RedisCluster::start_with(3, 1, options);
        let (seed, urls) = (cluster.seed_url(), cluster.urls());
        let on = |durability| Workload::on(RedisBuilder::new(&seed).durability(durability), &seed).flushing(&urls);
        let (durable, loose) = (on(Durability::Auto), on(Durability::None));
        Durable { _cluster: cluster, durable, loose }
    }
}

#[cfg(feature = "fleet-all")]
impl Sides for Durable {
    fn first(&mut self) -> Duration {
        self.durable.sdk()
    }
    fn second(&mut self) -> Duration {
        self.loose.sdk()
    }
}

/// Runs both sides in every round, alternating which goes first, and prints each
/// round's ratio and their median, least and greatest.
fn interleave(what: &str, rounds: usize, sides: &mut dyn Sides) {
    // One of each first, untimed: connections made, pages touched.
    sides.first();
    sides.second();
    let mut ratios = Vec::with_capacity(rounds);
    for round in 0..rounds {
        let (a, b) = if round % 2 == 0 {
            let a = sides.first();
            (a, sides.second())
        } else {
            let b = sides.second();
            (sides.first(), b)
        };
        let ratio = a.as_secs_f64() / b.as_secs_f64();
        println!("round {round}: {:.0} ms against {:.0} ms, {ratio:.2}x", a.as_secs_f64() * 1e3, b.as_secs_f64() * 1e3);
        ratios.push(ratio);
    }
    ratios.sort_by(f64::total_cmp);
    let (least, greatest) = (ratios.first().copied().unwrap_or(0.0), ratios.last().copied().unwrap_or(0.0));
    let median = ratios.get(ratios.len() / 2).copied().unwrap_or(0.0);
    println!("{what} over {rounds} rounds: median {median:.2}x, least {least:.2}x, greatest {greatest:.2}x");
}
