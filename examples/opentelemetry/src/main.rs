//! The main job's 6,235-item fan-out under an LRU of 1,000 (digest keys created first,
//! the reference's bug), traced through `tracing-opentelemetry` into an in-process
//! exporter; prints the span tree the exporter received.
//!
//! ```text
//! cargo run -p opentelemetry-demo                          # 6,235 items, an LRU of 1,000
//! cargo run -p opentelemetry-demo -- --items 50 --capacity 10
//! ```

use std::process::ExitCode;

use opentelemetry_demo::{fan_out, traced, tree};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("opentelemetry-demo: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (mut items, mut capacity) = (6_235, 1_000);
    for pair in args.chunks(2) {
        match pair {
            [flag, n] if flag == "--items" => items = n.parse().map_err(|e| format!("--items {n:?}: {e}"))?,
            [flag, n] if flag == "--capacity" => capacity = n.parse().map_err(|e| format!("--capacity {n:?}: {e}"))?,
            other => return Err(format!("usage: opentelemetry-demo [--items N] [--capacity N], not {other:?}").into()),
        }
    }
    let (report, spans) = traced(|| fan_out(items, capacity))?;
    let report = report?;
    println!(
        "{} items, {} without options; {} runs, {} cached answers; {} spans exported:\n",
        report.items,
        report.without_options,
        report.runs,
        report.cached,
        spans.len()
    );
    for root in tree(&spans) {
        print!("{root}");
    }
    Ok(())
}
