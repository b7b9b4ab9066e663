use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::process::{REDIS_CLI, Scratch, Server, StartFailure, free_port, run};

/// How often a server whose port was taken meanwhile is tried again on another one.
const PORT_ATTEMPTS: usize = 5;

/// What to install for `openssl`.
const OPENSSL: &str = "`apt-get install openssl`";

/// Days the generated certificates are valid for.
const DAYS: &str = "2";

/// A real `redis-server` that speaks TLS only, for tests: certificates made with the
/// `openssl` command in a directory of its own, a free loopback port, persistence off
/// (unless `extra` turns it on), killed when dropped, even by a test that panics.
///
/// The directory holds, all EC P-256 and valid for two days:
/// - a CA ([`ca_cert_path`](Self::ca_cert_path)), self-signed, which the server trusts
///   for client certificates;
/// - the server's certificate, signed by that CA, for `127.0.0.1` and `localhost`
///   (`subjectAltName = IP:127.0.0.1, DNS:localhost`, extended key usage
///   `serverAuth`);
/// - a client certificate and key ([`client_cert_path`](Self::client_cert_path),
///   [`client_key_path`](Self::client_key_path)) signed by the same CA (extended key
///   usage `clientAuth`);
/// - on demand, an unrelated CA ([`other_ca_cert_path`](Self::other_ca_cert_path)), for
///   tests that verify the server against the wrong one.
///
/// [`start`](Self::start) does not ask clients for a certificate
/// (`--tls-auth-clients no`); [`start_mutual`](Self::start_mutual) requires one
/// (`--tls-auth-clients yes`). The plain TCP port is off (`--port 0`).
///
/// The harness has no TLS client of its own: it checks the server, and
/// [`cli`](Self::cli) talks to it, with `redis-cli --tls`.
#[derive(Debug)]
pub struct TlsServer {
    // Declared first: the process dies before its directory goes.
    process: Option<Server>,
    port: u16,
    args: Vec<String>,
    ca_cert: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
    other_ca: OnceLock<PathBuf>,
    dir: Scratch,
}

impl TlsServer {
    /// A TLS server that does not ask clients for a certificate, with `extra` settings.
    ///
    /// # Panics
    ///
    /// If `openssl` or `redis-server` cannot be run, or the server does not answer
    /// `redis-cli --tls … PING` within 10 s (the message quotes its log).
    pub fn start(extra: &[&str]) -> Self {
        Self::start_with(false, extra)
    }

    /// A TLS server that refuses clients without a certificate signed by its CA
    /// (`--tls-auth-clients yes`), with `extra` settings.
    ///
    /// # Panics
    ///
    /// As [`start`](Self::start).
    pub fn start_mutual(extra: &[&str]) -> Self {
        Self::start_with(true, extra)
    }

    fn start_with(mutual: bool, extra: &[&str]) -> Self {
        let dir = Scratch::new("tls");
        let d = dir.path();
        ca(d, "ca", "testkit CA");
        leaf(d, "server", "localhost", "serverAuth", Some("IP:127.0.0.1,DNS:localhost"));
        leaf(d, "client", "testkit client", "clientAuth", None);
        let path = |name: &str| d.join(name).display().to_string();
        let mut args: Vec<String> = ["--bind", "127.0.0.1", "--port", "0", "--save", "", "--appendonly", "no"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        args.extend(["--dir".to_owned(), path("")]);
        args.extend([
            "--tls-cert-file".to_owned(),
            path("server.crt"),
            "--tls-key-file".to_owned(),
            path("server.key"),
        ]);
        args.extend(["--tls-ca-cert-file".to_owned(), path("ca.crt")]);
        args.extend(["--tls-auth-clients".to_owned(), if mutual { "yes" } else { "no" }.to_owned()]);
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        let mut server = TlsServer {
            process: None,
            port: 0,
            args,
            ca_cert: d.join("ca.crt"),
            client_cert: d.join("client.crt"),
            client_key: d.join("client.key"),
            other_ca: OnceLock::new(),
            dir,
        };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        for attempt in 1.. {
            self.port = free_port();
            let mut args = self.args.clone();
            args.extend(["--tls-port".to_owned(), self.port.to_string()]);
            let mut process = Server::spawn(&args, &self.dir.path().join("redis.log"));
            match process.wait_ready(Duration::from_secs(10), || self.answers()) {
                Ok(()) => {
                    self.process = Some(process);
                    return;
                }
                Err(StartFailure::PortTaken) if attempt < PORT_ATTEMPTS => {}
                Err(StartFailure::PortTaken) => {
                    panic!("TLS redis-server on port {}: address already in use", self.port)
                }
                Err(StartFailure::Other(why)) => {
                    panic!("TLS redis-server on port {} {why}; last redis-cli --tls PING: {}", self.port, self.ping())
                }
            }
        }
    }

    /// Whether the port accepts connections and `redis-cli --tls … PING` answers `PONG`.
    fn answers(&self) -> bool {
        TcpStream::connect(("127.0.0.1", self.port)).is_ok() && self.ping().trim() == "PONG"
    }

    /// What `redis-cli --tls … PING` printed, stdout then stderr.
    fn ping(&self) -> String {
        let out = run(self.cli_command(&["PING"]), Duration::from_secs(5), REDIS_CLI);
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)).trim().to_owned()
    }

    fn cli_command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("redis-cli");
        cmd.args(["--tls", "--cacert"]).arg(self.ca_cert_path());
        cmd.arg("--cert").arg(self.client_cert_path()).arg("--key").arg(self.client_key_path());
        cmd.args(["-h", "127.0.0.1", "-p", &self.port.to_string()]).args(args);
        cmd
    }

    /// Runs `redis-cli` against the server with the TLS flags it needs (the CA, and the
    /// client certificate and key, which a server started with
    /// [`start_mutual`](Self::start_mutual) requires), and returns what it printed on
    /// stdout: `cli(&["DBSIZE"])` is `"0\n"`. A server error is printed, not a
    /// failure (`"ERR …\n"`).
    ///
    /// # Panics
    ///
    /// If `redis-cli` fails (it cannot connect, say) or takes more than 10 s.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = run(self.cli_command(args), Duration::from_secs(10), REDIS_CLI);
        assert!(
            out.status.success(),
            "redis-cli --tls -p {} {} failed ({}): {}",
            self.port,
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// `rediss://127.0.0.1:<port>/`.
    pub fn url(&self) -> String {
        format!("rediss://127.0.0.1:{}/", self.port)
    }

    /// The TLS port it listens on (the only one).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.process.as_ref().map_or(0, Server::pid)
    }

    /// The CA certificate (PEM) that signed the server's and the client's certificates.
    pub fn ca_cert_path(&self) -> &Path {
        &self.ca_cert
    }

    /// The client certificate (PEM), signed by the server's CA.
    pub fn client_cert_path(&self) -> &Path {
        &self.client_cert
    }

    /// The client certificate's private key (PEM, PKCS#8).
    pub fn client_key_path(&self) -> &Path {
        &self.client_key
    }

    /// The certificate (PEM) of a CA unrelated to the server's, made on the first
    /// call: a client that trusts only this one must refuse the server.
    ///
    /// # Panics
    ///
    /// If `openssl` fails.
    pub fn other_ca_cert_path(&self) -> &Path {
        self.other_ca.get_or_init(|| {
            ca(self.dir.path(), "other-ca", "testkit other CA");
            self.dir.path().join("other-ca.crt")
        })
    }
}

/// `openssl req` with a new EC P-256 key, in `dir`.
fn openssl_req(dir: &Path, name: &str, subject: &str, more: &[&str]) {
    let mut cmd = Command::new("openssl");
    cmd.current_dir(dir).args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]);
    cmd.args(["-keyout", &format!("{name}.key"), "-out", &format!("{name}.crt"), "-days", DAYS]);
    cmd.args(["-subj", &format!("/CN={subject}")]).args(more);
    let start = Instant::now();
    let out = run(cmd, Duration::from_secs(10), OPENSSL);
    assert!(
        out.status.success(),
        "openssl req for {name}.crt failed ({}) after {:?}: {}",
        out.status,
        start.elapsed(),
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

/// A self-signed CA: `<name>.key`, `<name>.crt`.
fn ca(dir: &Path, name: &str, subject: &str) {
    openssl_req(
        dir,
        name,
        subject,
        &["-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
    );
}

/// A certificate signed by `ca`: `<name>.key`, `<name>.crt`.
fn leaf(dir: &Path, name: &str, subject: &str, usage: &str, san: Option<&str>) {
    let usage = format!("extendedKeyUsage={usage}");
    let mut more = vec!["-CA", "ca.crt", "-CAkey", "ca.key", "-addext", "basicConstraints=critical,CA:FALSE"];
    more.extend(["-addext", "keyUsage=critical,digitalSignature", "-addext", &usage]);
    let san = san.map(|san| format!("subjectAltName={san}"));
    if let Some(san) = &san {
        more.extend(["-addext", san]);
    }
    openssl_req(dir, name, subject, &more);
}
