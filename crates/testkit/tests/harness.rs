//! The harness itself, against real servers: `redis-server`, `redis-cli` and `openssl`
//! must be on `PATH`, so these are ignored by `cargo test --workspace` (which must pass
//! with only Rust installed) and run by `.ci/run` with `-- --ignored`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may; library code may not

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use testkit::{RedisCluster, RedisServer, TlsServer};

/// Whether a process with this id is gone (killed and reaped).
fn gone(pid: u32) -> bool {
    !Path::new(&format!("/proc/{pid}")).exists()
}

fn output(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null()).output().unwrap()
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

#[test]
#[ignore = "needs redis-server, redis-cli and openssl: cargo test -p testkit -- --ignored"]
fn a_unix_socket_server_answers_through_its_client() {
    let start = Instant::now();
    let server = RedisServer::start_unix(&[]);
    let started = start.elapsed();
    let socket = server.socket_path().unwrap().to_owned();
    assert_eq!(server.url(), format!("redis+unix://{}", socket.display()));
    assert!(socket.exists());

    let mut conn = server.client();
    let pong: String = redis::cmd("PING").query(&mut conn).unwrap();
    assert_eq!(pong, "PONG");
    let () = redis::cmd("SET").arg("k").arg("v").query(&mut conn).unwrap();
    assert_eq!(server.keys("*"), ["k"]);
    // No TCP port: the server was told `--port 0`.
    let port: Vec<String> = redis::cmd("CONFIG").arg("GET").arg("port").query(&mut conn).unwrap();
    assert_eq!(port, ["port", "0"]);

    let (pid, dir) = (server.pid(), socket.parent().unwrap().to_owned());
    drop(server);
    assert!(gone(pid), "redis-server {pid} outlived its guard");
    assert!(!dir.exists());
    eprintln!("unix socket server: started in {started:?}, test took {:?}", start.elapsed());
}

#[test]
#[ignore = "needs redis-server, redis-cli and openssl: cargo test -p testkit -- --ignored"]
fn a_tls_server_answers_over_tls_only() {
    let start = Instant::now();
    let server = TlsServer::start(&[]);
    let started = start.elapsed();
    assert_eq!(server.url(), format!("rediss://127.0.0.1:{}/", server.port()));
    assert_eq!(server.cli(&["PING"]), "PONG\n");
    assert_eq!(server.cli(&["SET", "k", "v"]), "OK\n");
    assert_eq!(server.cli(&["DBSIZE"]), "1\n");
    assert_eq!(server.cli(&["CONFIG", "GET", "tls-auth-clients"]), "tls-auth-clients\nno\n");

    // Plain TCP on the TLS port: no PONG, the server drops the connection.
    let mut plain = TcpStream::connect(("127.0.0.1", server.port())).unwrap();
    plain.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    plain.write_all(b"PING\r\n").unwrap();
    let mut reply = Vec::new();
    let _ = plain.read_to_end(&mut reply);
    assert!(!reply.starts_with(b"+PONG"), "a plain PING got {reply:?}");
    let out = output(Command::new("redis-cli").args(["-p", &server.port().to_string(), "PING"]));
    assert!(!out.status.success() && !text(&out).contains("PONG"), "plain redis-cli: {}", text(&out));

    // A client that trusts another CA refuses the server's certificate; no client
    // certificate is needed.
    let port = server.port().to_string();
    let wrong_ca = output(
        Command::new("redis-cli").args(["--tls", "-p", &port, "--cacert"]).arg(server.other_ca_cert_path()).arg("PING"),
    );
    assert!(!wrong_ca.status.success(), "a client trusting the wrong CA got: {}", text(&wrong_ca));
    assert!(text(&wrong_ca).contains("certificate verify failed"), "{}", text(&wrong_ca));
    let no_cert = output(
        Command::new("redis-cli").args(["--tls", "-p", &port, "--cacert"]).arg(server.ca_cert_path()).arg("PING"),
    );
    assert_eq!(text(&no_cert), "PONG\n");

    let (pid, dir) = (server.pid(), server.ca_cert_path().parent().unwrap().to_owned());
    drop(server);
    assert!(gone(pid), "redis-server {pid} outlived its guard");
    assert!(!dir.exists());
    eprintln!("TLS server: started in {started:?}, test took {:?}", start.elapsed());
}

#[test]
#[ignore = "needs redis-server, redis-cli and openssl: cargo test -p testkit -- --ignored"]
fn a_mutual_tls_server_refuses_a_client_without_a_certificate() {
    let start = Instant::now();
    let server = TlsServer::start_mutual(&[]);
    let started = start.elapsed();
    assert_eq!(server.cli(&["PING"]), "PONG\n");
    assert_eq!(server.cli(&["CONFIG", "GET", "tls-auth-clients"]), "tls-auth-clients\nyes\n");
    let port = server.port().to_string();

    let no_cert = output(
        Command::new("redis-cli").args(["--tls", "-p", &port, "--cacert"]).arg(server.ca_cert_path()).arg("PING"),
    );
    assert!(
        !no_cert.status.success() && !text(&no_cert).contains("PONG"),
        "redis-cli without a certificate: {}",
        text(&no_cert)
    );

    // openssl s_client verifies the server, then the server ends the handshake with a
    // `certificate required` alert.
    let s_client = |with_cert: bool| {
        let mut cmd = Command::new("openssl");
        cmd.args(["s_client", "-connect", &format!("127.0.0.1:{port}"), "-verify_return_error", "-quiet", "-CAfile"]);
        cmd.arg(server.ca_cert_path());
        if with_cert {
            cmd.arg("-cert").arg(server.client_cert_path()).arg("-key").arg(server.client_key_path());
        }
        cmd
    };
    let refused = output(&mut s_client(false));
    assert!(!refused.status.success(), "s_client without a certificate: {}", text(&refused));
    assert!(text(&refused).contains("certificate required"), "s_client without a certificate: {}", text(&refused));

    // With the client certificate, s_client gets an answer (it waits for more, so it
    // is stopped once the answer is in).
    let mut child = s_client(true).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
    child.stdin.as_mut().unwrap().write_all(b"PING\r\n").unwrap();
    let mut reply = [0; 5];
    let read = child.stdout.as_mut().unwrap().read_exact(&mut reply);
    let _ = child.kill();
    let _ = child.wait();
    read.unwrap();
    assert_eq!(&reply, b"+PONG");

    let pid = server.pid();
    drop(server);
    assert!(gone(pid), "redis-server {pid} outlived its guard");
    eprintln!("mutual TLS server: started in {started:?}, test took {:?}", start.elapsed());
}

#[test]
#[ignore = "needs redis-server, redis-cli and openssl: cargo test -p testkit -- --ignored"]
fn a_cluster_of_three_masters_is_ok_and_counts_keys_on_every_node() {
    let start = Instant::now();
    let cluster = RedisCluster::start(3, 0);
    let started = start.elapsed();
    let masters = cluster.masters();
    assert_eq!(masters.len(), 3);
    assert!(cluster.replicas().is_empty());
    let mut ports = cluster.ports();
    ports.sort_unstable();
    assert_eq!(ports, masters);
    assert!(ports.iter().all(|p| *p < 55535));
    assert_eq!(cluster.seed_url(), format!("redis://127.0.0.1:{}/", masters[0]));
    assert_eq!(cluster.urls(), masters.iter().map(|p| format!("redis://127.0.0.1:{p}/")).collect::<Vec<_>>());
    for port in &masters {
        let info = cluster.cli(*port, &["CLUSTER", "INFO"]);
        assert!(info.contains("cluster_state:ok") && info.contains("cluster_slots_ok:16384"), "{port}: {info}");
    }

    // `-c` follows the MOVED answers to the node that holds each key's slot.
    for i in 0..12 {
        assert_eq!(cluster.cli(masters[0], &["-c", "SET", &format!("testkit:{i}"), "v"]), "OK\n");
    }
    let sizes: Vec<usize> = masters.iter().map(|p| cluster.cli(*p, &["DBSIZE"]).trim().parse().unwrap()).collect();
    assert!(sizes.iter().all(|n| *n > 0), "the keys did not land on every master: {sizes:?}");
    assert_eq!(cluster.count("testkit:*"), 12);
    assert_eq!(cluster.count("testkit:1*"), 3);
    assert_eq!(cluster.count("other:*"), 0);

    let pids: Vec<u32> = ports.iter().map(|p| cluster.pid(*p)).collect();
    drop(cluster);
    assert!(pids.iter().all(|pid| gone(*pid)), "a node outlived its guard");
    eprintln!("3-master cluster: started in {started:?}, test took {:?}", start.elapsed());
}

#[test]
#[ignore = "needs redis-server, redis-cli and openssl: cargo test -p testkit -- --ignored"]
fn a_cluster_fails_a_master_over_to_its_replica() {
    let start = Instant::now();
    let mut cluster = RedisCluster::start(3, 1);
    let started = start.elapsed();
    let masters = cluster.masters();
    assert_eq!((masters.len(), cluster.replicas().len()), (3, 3));
    // The master that holds the key, and its replica.
    assert_eq!(cluster.cli(masters[0], &["-c", "SET", "testkit:0", "v"]), "OK\n");
    let [old] =
        masters.iter().copied().filter(|p| cluster.cli(*p, &["EXISTS", "testkit:0"]) == "1\n").collect::<Vec<_>>()[..]
    else {
        panic!("not one master holds the key")
    };
    let [new] = cluster.replicas_of(old)[..] else { panic!("{old} has not one replica") };

    let failover = Instant::now();
    cluster.failover(new);
    let failed_over = failover.elapsed();
    let masters = cluster.masters();
    assert!(masters.contains(&new) && !masters.contains(&old), "masters after the failover: {masters:?}");
    assert_eq!(cluster.cli(new, &["GET", "testkit:0"]), "v\n");
    assert_eq!(cluster.cli(old, &["-c", "GET", "testkit:0"]), "v\n");
    assert!(cluster.replicas_of(new).contains(&old), "replicas of {new}: {:?}", cluster.replicas_of(new));

    // The old master, now a replica, may stop answering: the harness leaves paused
    // nodes out, and the cluster stays ok without it.
    cluster.pause(old);
    cluster.wait_ok(Duration::from_secs(10));
    assert_eq!(cluster.count("testkit:*"), 1);
    // Another master's replica may go.
    let other = masters.iter().copied().find(|m| *m != new).unwrap();
    let [gone_replica] = cluster.replicas_of(other)[..] else { panic!("{other} has not one replica") };
    cluster.kill(gone_replica);
    assert_eq!(cluster.pid(gone_replica), 0);
    cluster.wait_ok(Duration::from_secs(10));

    // Drop kills the paused node too.
    let pids: Vec<u32> = cluster.ports().iter().map(|p| cluster.pid(*p)).filter(|pid| *pid != 0).collect();
    assert_eq!(pids.len(), 5);
    drop(cluster);
    assert!(pids.iter().all(|pid| gone(*pid)), "a node outlived its guard");
    eprintln!("3+3 cluster: started in {started:?}, failed over in {failed_over:?}, test took {:?}", start.elapsed());
}

#[test]
#[ignore = "needs redis-server, redis-cli and openssl: cargo test -p testkit -- --ignored"]
fn a_paused_server_dies_with_its_guard() {
    let server = RedisServer::start(&[]);
    server.pause();
    let pid = server.pid();
    drop(server);
    assert!(gone(pid), "a paused redis-server {pid} outlived its guard");
}

#[test]
#[ignore = "needs redis-server, redis-cli and openssl: cargo test -p testkit -- --ignored"]
fn a_guard_kills_its_server_when_the_test_panics() {
    let pid = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let seen = std::sync::Arc::clone(&pid);
    let outcome = std::thread::spawn(move || {
        let server = RedisServer::start(&[]);
        server.pause();
        seen.store(server.pid(), std::sync::atomic::Ordering::SeqCst);
        panic!("a test fails");
    })
    .join();
    assert!(outcome.is_err());
    let pid = pid.load(std::sync::atomic::Ordering::SeqCst);
    assert!(pid != 0 && gone(pid), "redis-server {pid} outlived a panicking test");
}
