//! Worker processes: a test binary run again, one test of it (`worker_*`), which does
//! its work only when the environment variable its suite names is set, and prints its
//! results after a marker.

use std::process::{Child, Command, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

/// Starts the test `name` of this binary in a new process, with `args` in the variable
/// `var`.
pub(crate) fn worker(var: &str, name: &str, args: &str) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(var, args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

/// The lines a worker printed after `marker`, once it exited successfully.
pub(crate) fn results(child: Child, marker: &str) -> Vec<String> {
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "worker failed: {}", String::from_utf8_lossy(&out.stdout));
    let text = String::from_utf8(out.stdout).unwrap();
    // The first line follows libtest's `test worker_… ... ` on the same line.
    text.lines().filter_map(|l| l.split_once(marker)).map(|(_, rest)| rest.to_owned()).collect()
}

/// Milliseconds since the Unix epoch: when workers in other processes start together.
pub(crate) fn now_ms() -> u64 {
    u64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis()).unwrap()
}
