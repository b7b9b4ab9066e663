//! What every harness shares: a scratch directory, free ports, a server process that
//! dies with its guard, commands run with a deadline, and polling until a deadline.

use std::fs::OpenOptions;
use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// How long to sleep between two looks at something that is not ready yet.
pub(crate) const POLL: Duration = Duration::from_millis(20);

/// What `redis-server` prints when a port it was told to use is taken.
const PORT_TAKEN: &str = "Address already in use";

/// A directory of its own under the system's temp dir, emptied when created and removed
/// when dropped.
#[derive(Debug)]
pub(crate) struct Scratch(PathBuf);

impl Scratch {
    /// `<temp>/idempotency-testkit-<pid>-<n>-<kind>`, fresh.
    pub(crate) fn new(kind: &str) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("idempotency-testkit-{}-{n}-{kind}", std::process::id()));
        // A directory a crashed run with the same pid left behind.
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap_or_else(|err| panic!("cannot create {} ({err})", dir.display()));
        Scratch(dir)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A loopback port nothing listened on a moment ago.
pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `n` distinct loopback ports below 55535 whose port + 10000 (a cluster node's bus
/// port) was free too: both are bound while the ports are chosen.
pub(crate) fn free_cluster_ports(n: usize) -> Vec<u16> {
    let mut held = Vec::with_capacity(n);
    for _ in 0..10_000 {
        if held.len() == n {
            break;
        }
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        if port >= 55535 {
            continue;
        }
        if let Ok(bus) = TcpListener::bind(("127.0.0.1", port + 10000)) {
            held.push((port, listener, bus));
        }
    }
    assert!(held.len() == n, "found {} of {n} free ports below 55535 with port + 10000 free too", held.len());
    held.into_iter().map(|(port, _, _)| port).collect()
}

/// A `redis-server` process, killed (`SIGCONT` first if it was paused, then `SIGKILL`)
/// when dropped. Its output goes to a log file, quoted when it fails to start.
#[derive(Debug)]
pub(crate) struct Server {
    child: Option<Child>,
    paused: AtomicBool,
    log: PathBuf,
}

/// Why a server did not come up.
pub(crate) enum StartFailure {
    /// Its port (or its cluster bus port) was taken by the time it bound it.
    PortTaken,
    /// It exited, or did not answer within the deadline: the message says which.
    Other(String),
}

/// The variable naming the server binary every harness starts: a path or a name on
/// `PATH`, `redis-server` when unset. `.ci/run` sets it to Valkey's `valkey-server` for
/// a second run of the fleet tests.
pub const SERVER_BINARY_VAR: &str = "TESTKIT_REDIS_SERVER";

/// The server binary the harnesses start: [`SERVER_BINARY_VAR`], else `redis-server`.
pub fn server_binary() -> String {
    std::env::var(SERVER_BINARY_VAR).ok().filter(|s| !s.is_empty()).unwrap_or_else(|| "redis-server".to_owned())
}

impl Server {
    /// Starts `<server binary> args`, appending its output to `log`.
    pub(crate) fn spawn(args: &[String], log: &Path) -> Self {
        let out = OpenOptions::new().create(true).append(true).open(log).unwrap();
        let binary = server_binary();
        let child = Command::new(&binary)
            .args(args)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap_or_else(|err| {
                panic!(
                    "cannot start {binary} ({err}): the tests need it; `apt-get install redis-server` (.ci/run does), \
                     or name another binary in {SERVER_BINARY_VAR}"
                )
            });
        Server { child: Some(child), paused: AtomicBool::new(false), log: log.to_owned() }
    }

    /// Waits until `ready` says yes, or the process exits, or `within` passes. On a
    /// failure the process is killed.
    pub(crate) fn wait_ready(&mut self, within: Duration, mut ready: impl FnMut() -> bool) -> Result<(), StartFailure> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                self.child = None;
                let log = log_tail(&self.log);
                if log.contains(PORT_TAKEN) {
                    return Err(StartFailure::PortTaken);
                }
                return Err(StartFailure::Other(format!("exited ({status}); its log ends:\n{log}")));
            }
            if ready() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                self.kill();
                return Err(StartFailure::Other(format!(
                    "did not answer within {within:?}; its log ends:\n{}",
                    log_tail(&self.log)
                )));
            }
            std::thread::sleep(POLL);
        }
    }

    /// The process id, 0 once killed.
    pub(crate) fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Whether the process was started and not killed (it may have exited on its own).
    pub(crate) fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Whether it is stopped by [`Server::pause`].
    pub(crate) fn is_paused(&self) -> bool {
        self.paused.load(Ordering::SeqCst)
    }

    /// `SIGKILL`, then reaps it.
    pub(crate) fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            if self.paused.swap(false, Ordering::SeqCst) {
                let _ = Command::new("kill").args(["-CONT", &child.id().to_string()]).status();
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// `SIGSTOP`: connections stay open and nothing answers.
    pub(crate) fn pause(&self) {
        self.signal("-STOP");
        self.paused.store(true, Ordering::SeqCst);
    }

    /// `SIGCONT`.
    pub(crate) fn resume(&self) {
        self.signal("-CONT");
        self.paused.store(false, Ordering::SeqCst);
    }

    fn signal(&self, signal: &str) {
        let pid = self.pid();
        assert!(pid != 0, "cannot send {signal} to a redis-server that was killed");
        let status = Command::new("kill").args([signal, &pid.to_string()]).status().unwrap();
        assert!(status.success(), "kill {signal} {pid} failed");
    }

    /// The last lines of its log.
    pub(crate) fn log_tail(&self) -> String {
        log_tail(&self.log)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The last 20 lines of a log file.
fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// Runs `cmd` to its end with its output captured, killing it and panicking after
/// `within`. `install` says what to install when the binary is missing.
pub(crate) fn run(mut cmd: Command, within: Duration, install: &str) -> Output {
    let what = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|err| panic!("cannot run {what} ({err}): the tests need it; {install}"));
    let stdout = reader(child.stdout.take());
    let stderr = reader(child.stderr.take());
    let deadline = Instant::now() + within;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not finish within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    Output { status, stdout: stdout.join().unwrap(), stderr: stderr.join().unwrap() }
}

fn reader(pipe: Option<impl Read + Send + 'static>) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut bytes);
        }
        bytes
    })
}

/// What to install for `redis-cli`.
pub(crate) const REDIS_CLI: &str =
    "`apt-get install redis-tools` (redis-server's package brings it; .ci/run installs that)";

/// Runs `redis-cli args` (10 s at most) and returns its stdout, panicking with its
/// stderr when it fails.
pub(crate) fn redis_cli(args: &[&str]) -> String {
    let mut cmd = Command::new("redis-cli");
    cmd.args(args);
    let out = run(cmd, Duration::from_secs(10), REDIS_CLI);
    assert!(
        out.status.success(),
        "redis-cli {} failed ({}): {}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Polls `check` every [`POLL`] until it returns `Ok`; the last `Err` once `within`
/// has passed.
pub(crate) fn wait_until<T>(within: Duration, mut check: impl FnMut() -> Result<T, String>) -> Result<T, String> {
    let deadline = Instant::now() + within;
    loop {
        match check() {
            Ok(value) => return Ok(value),
            Err(last) if Instant::now() >= deadline => return Err(last),
            Err(_) => std::thread::sleep(POLL),
        }
    }
}
