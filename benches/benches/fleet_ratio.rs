//! The fleet fan-out against the raw pipeline, interleaved: every round runs both
//! sides on the same server, one right after the other (which goes first alternates),
//! so that this machine's slow minutes weigh on both alike. Prints each round's ratio
//! and their median, least and greatest.
//!
//! `cargo bench -p benches --features redis --bench fleet_ratio [-- ROUNDS]`

use benches::fleet::Workload;

fn main() {
    let rounds: usize = std::env::args().skip(1).find_map(|arg| arg.parse().ok()).unwrap_or(9);
    let server = testkit::RedisServer::start(&[]);
    let mut workload = Workload::new(&server.url());
    // One of each first, untimed: connections made, pages touched.
    workload.sdk();
    workload.raw();
    let mut ratios = Vec::with_capacity(rounds);
    for round in 0..rounds {
        let (sdk, raw) = if round % 2 == 0 {
            let sdk = workload.sdk();
            (sdk, workload.raw())
        } else {
            let raw = workload.raw();
            (workload.sdk(), raw)
        };
        let ratio = sdk.as_secs_f64() / raw.as_secs_f64();
        println!(
            "round {round}: sdk {:.0} ms, raw {:.0} ms, {ratio:.2}x",
            sdk.as_secs_f64() * 1e3,
            raw.as_secs_f64() * 1e3
        );
        ratios.push(ratio);
    }
    ratios.sort_by(f64::total_cmp);
    let (least, greatest) = (ratios.first().copied().unwrap_or(0.0), ratios.last().copied().unwrap_or(0.0));
    let median = ratios.get(ratios.len() / 2).copied().unwrap_or(0.0);
    println!(
        "fan_out sdk / raw pipeline over {rounds} rounds: median {median:.2}x, least {least:.2}x, greatest {greatest:.2}x"
    );
}
