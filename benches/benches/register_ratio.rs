//! Registering into an evicting `LruCatalog` against the raw `lru` crate in a
//! `parking_lot::Mutex`, the two measured in the same process.
//!
//! Criterion runs one side minutes after the other, and on a busy machine its ratios
//! moved between 0.9x and 1.8x from run to run. Here every round runs both sides (in
//! alternating order) over the same 200,000 distinct digests into a full map of 1,000,
//! and the report is the ratio of the medians, with the spread of the per-round ratios.
//!
//! `cargo bench -p benches --bench register_ratio` (wall time, 15 rounds), or
//! `cargo bench -p benches --bench register_ratio -- callgrind`: instructions per
//! register for each side under `valgrind --tool=callgrind`, which counts the same on a
//! busy machine (the difference between runs of 100,000 and 200,000 registrations, so
//! that building the workload cancels out).

use std::hint::black_box;
use std::num::NonZeroUsize;
use std::process::Command;
use std::time::Instant;

use idempotency_catalog::{BatchScaledCatalog, Catalog, Digest, KeyOptions, LruCatalog, Scope};
use lru::LruCache;
use parking_lot::Mutex;

const CAPACITY: usize = 1_000;
const KEYS: usize = 200_000;
const ROUNDS: usize = 15;

/// Random digests and ~12-character keys, the same every run.
fn workload() -> Vec<(Digest, KeyOptions)> {
    let mut rng = fastrand::Rng::with_seed(20);
    (0..KEYS)
        .map(|i| {
            let mut bytes = [0u8; 32];
            rng.fill(&mut bytes);
            (Digest::from_bytes(bytes), KeyOptions::new(&format!("item-{i:07}"), Scope::Global))
        })
        .collect()
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Raw,
    Catalog,
    /// A batch-scaled catalog whose ceiling is its base: the default kind's general
    /// path, for comparison (not part of the ratio).
    Scaled,
}

impl Side {
    fn name(self) -> &'static str {
        match self {
            Side::Raw => "raw",
            Side::Catalog => "catalog",
            Side::Scaled => "scaled",
        }
    }
}

/// Registers the first `n` of `work` into a fresh, filled map of `CAPACITY`; the time
/// taken by the registrations alone.
fn run(side: Side, work: &[(Digest, KeyOptions)], n: usize) -> f64 {
    let capacity = NonZeroUsize::new(CAPACITY).unwrap_or(NonZeroUsize::MIN);
    let (fill, timed) = work[..n.min(work.len())].split_at(CAPACITY.min(n));
    match side {
        Side::Raw => {
            let map = Mutex::new(LruCache::new(capacity));
            for (digest, options) in fill {
                drop(map.lock().push(*digest, options.clone()));
            }
            let started = Instant::now();
            for (digest, options) in timed {
                drop(black_box(map.lock().push(*digest, options.clone())));
            }
            let elapsed = started.elapsed().as_secs_f64();
            black_box(&map);
            elapsed
        }
        Side::Catalog | Side::Scaled => {
            let catalog: Box<dyn Catalog> = match side {
                Side::Scaled => Box::new(BatchScaledCatalog::new(CAPACITY, CAPACITY).unwrap_or_default()),
                _ => Box::new(LruCatalog::with_capacity(CAPACITY).unwrap_or_default()),
            };
            for (digest, options) in fill {
                catalog.register(*digest, options.clone());
            }
            let started = Instant::now();
            for (digest, options) in timed {
                catalog.register(*digest, options.clone());
            }
            let elapsed = started.elapsed().as_secs_f64();
            black_box(&catalog);
            elapsed
        }
    }
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn wall_time() {
    let work = workload();
    let (mut raw, mut catalog, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let order = if round % 2 == 0 { [Side::Raw, Side::Catalog] } else { [Side::Catalog, Side::Raw] };
        let mut times = [0.0; 2];
        for side in order {
            times[side as usize] = run(side, &work, KEYS);
        }
        raw.push(times[Side::Raw as usize]);
        catalog.push(times[Side::Catalog as usize]);
        ratios.push(times[Side::Catalog as usize] / times[Side::Raw as usize]);
    }
    let per = |seconds: f64| seconds * 1e9 / (KEYS - CAPACITY) as f64;
    let (raw, catalog) = (median(&mut raw), median(&mut catalog));
    let ratio = median(&mut ratios);
    println!(
        "register, evicting (capacity {CAPACITY}, {KEYS} digests, {ROUNDS} rounds): raw lru {:.1} ns, LruCatalog {:.1} ns; \
         ratio of medians {:.2}x, per-round median {ratio:.2}x (min {:.2}x, max {:.2}x)",
        per(raw),
        per(catalog),
        catalog / raw,
        ratios[0],
        ratios[ratios.len() - 1],
    );
}

/// Instructions `valgrind --tool=callgrind` counts for this binary registering `n`.
fn instructions(side: Side, n: usize) -> Result<u64, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this binary: {e}"))?;
    let output = Command::new("valgrind")
        .args(["--tool=callgrind", "--callgrind-out-file=/dev/null"])
        .arg(exe)
        .args(["one", side.name(), &n.to_string()])
        .output()
        .map_err(|e| format!("cannot run valgrind (install it to count instructions): {e}"))?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    stderr
        .lines()
        .find_map(|line| line.split_once("Collected :").map(|(_, n)| n.trim().parse().ok()))
        .flatten()
        .ok_or_else(|| format!("no instruction count in valgrind's output:\n{stderr}"))
}

fn callgrind() -> Result<(), String> {
    let (small, large) = (KEYS / 2, KEYS);
    let mut per = [0.0; 2];
    for side in [Side::Raw, Side::Catalog] {
        let (a, b) = (instructions(side, small)?, instructions(side, large)?);
        per[side as usize] = b.saturating_sub(a) as f64 / (large - small) as f64;
    }
    println!(
        "register, evicting, instructions (callgrind): raw lru {:.0}, LruCatalog {:.0}: {:.2}x",
        per[Side::Raw as usize],
        per[Side::Catalog as usize],
        per[Side::Catalog as usize] / per[Side::Raw as usize],
    );
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["one", side, n] => {
            let side = match *side {
                "raw" => Side::Raw,
                "scaled" => Side::Scaled,
                _ => Side::Catalog,
            };
            let n = n.parse().unwrap_or(KEYS);
            black_box(run(side, &workload(), n));
        }
        ["callgrind", ..] => {
            if let Err(e) = callgrind() {
                eprintln!("{e}");
                std::process::exit(1);
            }
        }
        _ => wall_time(),
    }
}
