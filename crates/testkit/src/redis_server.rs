use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::process::{Scratch, Server, StartFailure, free_port};

/// How often a server whose port was taken meanwhile is tried again on another one.
const PORT_ATTEMPTS: usize = 5;

/// A real `redis-server` for tests, started on a free loopback port (or on a unix
/// socket only, with [`RedisServer::start_unix`]) with persistence off (unless `extra`
/// turns it on) in a directory of its own, and killed when dropped, even by a test
/// that panics. Never a server the machine happens to run.
///
/// A test that needs the binary and cannot find it fails, saying what to install.
#[derive(Debug)]
pub struct RedisServer {
    // Declared first: the process dies before its directory goes.
    process: Option<Server>,
    endpoint: Endpoint,
    extra: Vec<String>,
    dir: Scratch,
}

/// Where a server listens.
#[derive(Debug)]
enum Endpoint {
    Tcp(u16),
    Unix(PathBuf),
}

impl RedisServer {
    /// A server on a free loopback port with persistence off and `extra` settings
    /// (`["--maxmemory", "1mb"]`).
    ///
    /// # Panics
    ///
    /// If `redis-server` cannot be run or does not answer within 10 s (the message
    /// quotes its log).
    pub fn start(extra: &[&str]) -> Self {
        Self::start_at(Endpoint::Tcp(free_port()), extra)
    }

    /// A server that listens on a unix socket only, with persistence off and `extra`
    /// settings: `--port 0 --unixsocket <dir>/redis.sock`. [`url`](Self::url) is then
    /// `redis+unix://<path>`.
    ///
    /// # Panics
    ///
    /// If `redis-server` cannot be run or does not answer within 10 s, or the socket's
    /// path is too long for a unix socket (set `TMPDIR` to a shorter directory).
    pub fn start_unix(extra: &[&str]) -> Self {
        Self::start_at(Endpoint::Unix(PathBuf::new()), extra)
    }

    fn start_at(mut endpoint: Endpoint, extra: &[&str]) -> Self {
        let dir = Scratch::new("redis");
        if let Endpoint::Unix(path) = &mut endpoint {
            *path = dir.path().join("redis.sock");
            // sun_path holds 108 bytes, the terminating NUL included.
            assert!(
                path.as_os_str().len() < 108,
                "unix socket path {} is too long; set TMPDIR shorter",
                path.display()
            );
        }
        let extra = extra.iter().map(|s| (*s).to_owned()).collect();
        let mut server = RedisServer { process: None, endpoint, extra, dir };
        server.spawn(PORT_ATTEMPTS);
        server
    }

    fn args(&self) -> Vec<String> {
        let mut args: Vec<String> =
            ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"].iter().map(|s| (*s).to_owned()).collect();
        match &self.endpoint {
            Endpoint::Tcp(port) => args.extend(["--port".to_owned(), port.to_string()]),
            Endpoint::Unix(path) => {
                args.extend(["--port", "0", "--unixsocket"].map(str::to_owned));
                args.push(path.display().to_string());
            }
        }
        args.extend(["--dir".to_owned(), self.dir.path().display().to_string()]);
        args.extend(self.extra.iter().cloned());
        args
    }

    /// Starts the process and waits until it answers; a TCP server whose port was
    /// taken meanwhile moves to another, `attempts` times at most.
    fn spawn(&mut self, attempts: usize) {
        for attempt in 1.. {
            let mut process = Server::spawn(&self.args(), &self.dir.path().join("redis.log"));
            match process.wait_ready(Duration::from_secs(10), || self.answers()) {
                Ok(()) => {
                    self.process = Some(process);
                    return;
                }
                Err(StartFailure::PortTaken) if attempt < attempts && matches!(self.endpoint, Endpoint::Tcp(_)) => {
                    self.endpoint = Endpoint::Tcp(free_port());
                }
                Err(StartFailure::PortTaken) => panic!("redis-server at {}: address already in use", self.where_()),
                Err(StartFailure::Other(why)) => panic!("redis-server at {} {why}", self.where_()),
            }
        }
    }

    fn where_(&self) -> String {
        match &self.endpoint {
            Endpoint::Tcp(port) => format!("127.0.0.1:{port}"),
            Endpoint::Unix(path) => path.display().to_string(),
        }
    }

    /// Whether the server answers `PING` (and is done loading its data).
    fn answers(&self) -> bool {
        match &self.endpoint {
            Endpoint::Tcp(port) => TcpStream::connect(("127.0.0.1", *port)).is_ok_and(|mut s| {
                let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
                pongs(&mut s)
            }),
            Endpoint::Unix(path) => UnixStream::connect(path).is_ok_and(|mut s| {
                let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
                pongs(&mut s)
            }),
        }
    }

    /// `redis://127.0.0.1:<port>/`, or `redis+unix://<path>` for a server on a unix
    /// socket.
    pub fn url(&self) -> String {
        match &self.endpoint {
            Endpoint::Tcp(port) => format!("redis://127.0.0.1:{port}/"),
            Endpoint::Unix(path) => format!("redis+unix://{}", path.display()),
        }
    }

    /// The port it listens on.
    ///
    /// # Panics
    ///
    /// For a server on a unix socket, which has none: see
    /// [`socket_path`](Self::socket_path).
    pub fn port(&self) -> u16 {
        match &self.endpoint {
            Endpoint::Tcp(port) => *port,
            Endpoint::Unix(path) => panic!("the server on {} listens on a unix socket, not a port", path.display()),
        }
    }

    /// The unix socket it listens on, for a server started with
    /// [`start_unix`](Self::start_unix).
    pub fn socket_path(&self) -> Option<&Path> {
        match &self.endpoint {
            Endpoint::Tcp(_) => None,
            Endpoint::Unix(path) => Some(path),
        }
    }

    /// The server's process id (0 once killed).
    pub fn pid(&self) -> u32 {
        self.process.as_ref().map_or(0, Server::pid)
    }

    /// Kills the server at once (`SIGKILL`): nothing is saved beyond what the
    /// persistence settings already wrote.
    pub fn kill(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.kill();
        }
    }

    /// Starts the server again on the same port (or socket) and directory.
    ///
    /// # Panics
    ///
    /// If it does not answer within 10 s, or its port was taken meanwhile.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn(1);
    }

    /// Stops the process (`SIGSTOP`): connections stay open and nothing answers.
    ///
    /// # Panics
    ///
    /// If the server was killed.
    pub fn pause(&self) {
        self.running().pause();
    }

    /// Lets a paused process go on (`SIGCONT`).
    ///
    /// # Panics
    ///
    /// If the server was killed.
    pub fn resume(&self) {
        self.running().resume();
    }

    fn running(&self) -> &Server {
        self.process.as_ref().unwrap_or_else(|| panic!("the redis-server at {} was killed", self.where_()))
    }

    /// A plain client connection, for checking what the server holds (over the unix
    /// socket for a server started with [`start_unix`](Self::start_unix)).
    pub fn client(&self) -> redis::Connection {
        redis::Client::open(self.url()).unwrap().get_connection().unwrap()
    }

    /// How many keys match `pattern` (a `KEYS` pattern).
    pub fn count(&self, pattern: &str) -> usize {
        self.keys(pattern).len()
    }

    /// The keys matching `pattern`.
    pub fn keys(&self, pattern: &str) -> Vec<String> {
        let mut conn = self.client();
        redis::cmd("KEYS").arg(pattern).query(&mut conn).unwrap()
    }
}

/// Sends an inline `PING` and reads `+PONG`.
fn pongs(stream: &mut (impl Read + Write)) -> bool {
    let mut reply = [0; 5];
    stream.write_all(b"PING\r\n").is_ok() && stream.read_exact(&mut reply).is_ok() && &reply == b"+PONG"
}
