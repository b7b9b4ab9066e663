//! The fleet fan-out against the raw pipeline, interleaved: every round runs both
//! sides on the same server, one right after the other (which goes first alternates),
//! so that this machine's slow minutes weigh on both alike. Prints each round's ratio
//! and their median, least and greatest.
//!
//! `cargo bench -p benches --features redis --bench fleet_ratio [-- ROUNDS]`: the sync
//! SDK against two raw `SET`s per item. With `--features fleet-all`, `-- async [ROUNDS]`
//! runs the async SDK against a raw async pipeline of the commands it sends, and
//! `-- cluster [ROUNDS]` the sync SDK on a 3-master cluster against the same on one
//! server.

use std::time::Duration;

use benches::fleet::Workload;

fn main() {
    let rounds: usize = std::env::args().skip(1).find_map(|arg| arg.parse().ok()).unwrap_or(9);
    let mode = std::env::args().skip(1).find(|arg| arg == "async" || arg == "cluster");
    match mode.as_deref() {
        #[cfg(feature = "fleet-all")]
        Some("async") => interleave("fan_out async sdk / raw async pipeline", rounds, async_rounds()),
        #[cfg(feature = "fleet-all")]
        Some("cluster") => interleave("fan_out on a 3-master cluster / on one server", rounds, cluster_rounds()),
        Some(other) => panic!("`{other}` needs --features fleet-all"),
        None => interleave("fan_out sdk / raw pipeline", rounds, sync_rounds()),
    }
}

/// One side of a ratio, then the other: each call times one fan-out.
type Side<'a> = Box<dyn FnMut() -> Duration + 'a>;

fn sync_rounds() -> (Side<'static>, Side<'static>) {
    let server = Box::leak(Box::new(testkit::RedisServer::start(&[])));
    let workload = std::rc::Rc::new(std::cell::RefCell::new(Workload::new(&server.url())));
    let other = std::rc::Rc::clone(&workload);
    (Box::new(move || workload.borrow_mut().sdk()), Box::new(move || other.borrow_mut().raw()))
}

#[cfg(feature = "fleet-all")]
fn async_rounds() -> (Side<'static>, Side<'static>) {
    let server = Box::leak(Box::new(testkit::RedisServer::start(&[])));
    let runtime = std::rc::Rc::new(tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap());
    let workload = runtime.block_on(benches::fleet::async_fan_out::AsyncWorkload::new(&server.url()));
    let workload = std::rc::Rc::new(std::cell::RefCell::new(workload));
    let (other, rt) = (std::rc::Rc::clone(&workload), std::rc::Rc::clone(&runtime));
    (
        Box::new(move || runtime.block_on(async { workload.borrow_mut().sdk().await })),
        Box::new(move || rt.block_on(async { other.borrow_mut().raw().await })),
    )
}

#[cfg(feature = "fleet-all")]
fn cluster_rounds() -> (Side<'static>, Side<'static>) {
    let cluster = Box::leak(Box::new(testkit::RedisCluster::start(3, 0)));
    let server = Box::leak(Box::new(testkit::RedisServer::start(&[])));
    let mut on_cluster = Workload::new(&cluster.seed_url()).flushing(&cluster.urls());
    let mut on_one = Workload::new(&server.url());
    (Box::new(move || on_cluster.sdk()), Box::new(move || on_one.sdk()))
}

/// Runs both sides in every round, alternating which goes first, and prints each
/// round's ratio and their median, least and greatest.
fn interleave(what: &str, rounds: usize, (mut first, mut second): (Side<'_>, Side<'_>)) {
    // One of each first, untimed: connections made, pages touched.
    first();
    second();
    let mut ratios = Vec::with_capacity(rounds);
    for round in 0..rounds {
        let (a, b) = if round % 2 == 0 {
            let a = first();
            (a, second())
        } else {
            let b = second();
            (first(), b)
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
