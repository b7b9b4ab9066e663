//! One call's commands on their way to a deployment, and the rules that give each its
//! answer, whether the call is sync or async: the connection only sends the pipelines
//! this module plans (one per master, in rounds) and hands back what came; nothing here
//! does I/O.
//!
//! The rules, per command:
//!
//! - It goes to the master that serves its key's slot, in one pipeline per master and
//!   round. A batch that writes ends each master's pipeline with a barrier write and a
//!   `WAIT` (see [`Durability`](super::Durability)): the barrier makes the `WAIT` cover
//!   what the pipeline read as well as what it wrote (a claim another worker made an
//!   instant before is answered from cache only once it is on the replicas too), and its
//!   answers count only when the `WAIT` says they are as durable as asked.
//! - `MOVED` (a failover, a resharding done) sends it again to the master the refreshed
//!   slot map names; `ASK` (a resharding under way) sends it to the node named, after
//!   `ASKING`; `TRYAGAIN`, `CLUSTERDOWN`, `MASTERDOWN`, `LOADING` and `READONLY` send it
//!   again a moment later. A master that refuses or drops the connection (it crashed),
//!   or writes that fell short of their replicas, are waited out too, the slot map read
//!   again between rounds, for as long as a failover may take: the failover window,
//!   counted from when the node first failed. Then the command fails, naming the node
//!   and the slot, or the master and how many replicas acknowledged.
//! - On one server there is nothing to fail over to: a connection found closed is opened
//!   again once (the server may have closed an idle one, or restarted), and a
//!   shortfall of replicas is waited out as on a cluster.
//! - A timeout is never sent again: the command may still be applied.
//!
//! So every command sent through here must be safe to send twice, as every command of
//! this crate and the SDK is.

use std::fmt;
use std::time::{Duration, Instant};

use ::redis::{Cmd, RedisError, RedisResult, Value};

use super::deployment::{Addr, Deployment, Topology};
use super::durability::{Durability, Wait};
use super::fault::{NOT_DURABLE, TIMEOUT, UNREACHABLE};
use super::layout;

/// One call's commands and their answers so far.
pub(super) struct Dispatch {
    cmds: Vec<Cmd>,
    answers: Vec<Option<RedisResult<Value>>>,
    /// What goes in the next round: each command's index, and the node an `ASK` sent it
    /// to.
    todo: Vec<(usize, Option<Addr>)>,
    /// Whether the batch writes: then each master's part waits for its durability.
    writes: bool,
    cluster: bool,
    /// The command timeout, which a node's error names.
    timeout: Duration,
    /// Why the last round left commands to send again.
    trouble: Option<Trouble>,
    /// When this call first had to wait something out, or the node it waits for first
    /// failed: the failover window runs from then.
    since: Option<Instant>,
    /// Rounds that waited.
    waits: u32,
    refresh: bool,
    /// A connection kept from an earlier call was found closed: the next round goes at
    /// once, once.
    reopen: Reopen,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Reopen {
    No,
    Due,
    Done,
}

/// The part of a round that goes to one node, as one pipeline.
pub(super) struct Flight {
    pub(super) addr: Addr,
    /// Each command's index, and whether it goes after `ASKING`.
    cmds: Vec<(usize, bool)>,
    /// The slot of the first command, for errors and the barrier.
    slot: Option<u16>,
    wait: Option<Wait>,
    /// The barrier write before the `WAIT`, and whether it needs `ASKING`.
    barrier: Option<(Cmd, bool)>,
}

/// Why commands wait for another round.
#[derive(Clone, Debug)]
enum Trouble {
    /// A node refused or dropped the connection.
    Gone { addr: Addr, slot: Option<u16>, err: RedisError },
    /// An answer that says later, or elsewhere (`MOVED`, `TRYAGAIN`, …).
    Moving(RedisError),
    /// No master serves the slot.
    Unserved(u16),
    /// Writes fell short of their durability, or their `WAIT` could not be read.
    Short { addr: Addr, why: String },
}

/// What the connection does next.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Next {
    /// Every command has its answer: [`Dispatch::finish`].
    Done,
    /// Another round: after reading the slot map again if `refresh`, and after `pause`.
    Again { refresh: bool, pause: Duration },
}

impl Next {
    /// What a call does before its first round: send at once.
    pub(super) const FIRST: Next = Next::Again { refresh: false, pause: Duration::ZERO };
}

/// `ASKING`, sent before a command an `ASK` redirected.
fn asking() -> Cmd {
    ::redis::cmd("ASKING")
}

/// Commands that only read: a batch of nothing else waits for no replica.
const READS: [&str; 12] =
    ["GET", "GETRANGE", "MGET", "EXISTS", "PTTL", "TTL", "STRLEN", "TYPE", "SCAN", "MEMORY", "PING", "INFO"];

fn reads(cmd: &Cmd) -> bool {
    let name = cmd.args_iter().next().and_then(|arg| match arg {
        ::redis::Arg::Simple(name) => std::str::from_utf8(name).ok(),
        _ => None,
    });
    name.is_some_and(|name| READS.iter().any(|read| read.eq_ignore_ascii_case(name)))
}

impl Dispatch {
    pub(super) fn new(cmds: Vec<Cmd>, cluster: bool, timeout: Duration) -> Self {
        let writes = !cmds.iter().all(reads);
        Dispatch {
            answers: (0..cmds.len()).map(|_| None).collect(),
            todo: (0..cmds.len()).map(|at| (at, None)).collect(),
            cmds,
            writes,
            cluster,
            timeout,
            trouble: None,
            since: None,
            waits: 0,
            refresh: false,
            reopen: Reopen::No,
        }
    }

    /// The next round: one flight per node, the commands of each in their order.
    pub(super) fn plan(
        &mut self,
        topology: &Topology,
        durability: Durability,
        timeout: Duration,
        prefix: &str,
    ) -> Vec<Flight> {
        let mut flights: Vec<Flight> = Vec::new();
        for (at, ask) in std::mem::take(&mut self.todo) {
            let slot = self.slot(at);
            let (addr, replicas) = match &ask {
                Some(addr) => (addr.clone(), topology.by_addr(addr).map_or(0, |m| m.replicas)),
                None => match topology.master(slot) {
                    Some(master) => (master.addr.clone(), master.replicas),
                    None => {
                        self.todo.push((at, None));
                        self.trouble = Some(Trouble::Unserved(slot.unwrap_or_default()));
                        self.refresh = true;
                        continue;
                    }
                },
            };
            let asked = (at, ask.is_some());
            match flights.iter_mut().find(|f| f.addr == addr) {
                Some(flight) => flight.cmds.push(asked),
                None => {
                    let wait = if self.writes { durability.wait(replicas, timeout) } else { None };
                    flights.push(Flight { addr, cmds: vec![asked], slot, wait, barrier: None });
                }
            }
        }
        for flight in &mut flights {
            if flight.wait.is_none() {
                continue;
            }
            let asked = flight.cmds.first().is_some_and(|&(_, asked)| asked);
            flight.barrier = barrier(prefix, flight.slot, self.cluster).map(|cmd| (cmd, asked));
        }
        flights
    }

    /// The slot of command `at` (on a cluster).
    fn slot(&self, at: usize) -> Option<u16> {
        #[cfg(feature = "cluster")]
        if self.cluster {
            return self.cmds.get(at).and_then(super::deployment::slot_of);
        }
        let _ = at;
        None
    }

    /// The commands of `flight` as the sync client sends them, and how many answers
    /// they get.
    pub(super) fn packed(&self, flight: &Flight) -> (Vec<u8>, usize) {
        let mut out = Vec::with_capacity(flight.cmds.len() * 128);
        let mut count = 0;
        for cmd in self.flight_cmds(flight) {
            cmd.write_packed_command(&mut out);
            count += 1;
        }
        (out, count)
    }

    /// The commands of `flight`, in the order they go: each after its `ASKING` if it
    /// needs one, then the barrier write and the `WAIT`.
    pub(super) fn flight_cmds<'a>(
        &'a self,
        flight: &'a Flight,
    ) -> impl Iterator<Item = std::borrow::Cow<'a, Cmd>> + 'a {
        use std::borrow::Cow;
        let cmds = flight.cmds.iter().flat_map(move |&(at, asked)| {
            let ask = asked.then(|| Cow::Owned(asking()));
            ask.into_iter().chain(self.cmds.get(at).map(Cow::Borrowed))
        });
        let barrier = flight.barrier.iter().flat_map(|(cmd, asked)| {
            asked.then(|| Cow::Owned(asking())).into_iter().chain(std::iter::once(Cow::Borrowed(cmd)))
        });
        cmds.chain(barrier).chain(flight.wait.iter().map(|wait| Cow::Owned(wait.cmd())))
    }

    /// Takes what came back for `flight`: its answers, or the error that lost them;
    /// `kept` when the connection was opened by an earlier call.
    pub(super) fn land(&mut self, flight: Flight, came: RedisResult<Vec<Value>>, kept: bool, deployment: &Deployment) {
        let now = Instant::now();
        let values = match came {
            Ok(values) => values,
            Err(err) if gone(&err) => {
                if kept && self.reopen == Reopen::No {
                    self.reopen = Reopen::Due;
                }
                if self.cluster {
                    let since = deployment.down_since(&flight.addr, now);
                    self.since = Some(self.since.map_or(since, |at| at.min(since)));
                    self.refresh = true;
                }
                self.todo.extend(flight.cmds.iter().map(|&(at, _)| (at, None)));
                self.trouble = Some(Trouble::Gone { addr: flight.addr, slot: flight.slot, err });
                return;
            }
            // A timeout, or an error the connection cannot say more of: the commands
            // may have been applied, and are not sent again. On a cluster the error
            // names the node.
            Err(err) => {
                let err = match (self.cluster, err.is_timeout()) {
                    (true, true) => {
                        node_error(TIMEOUT, &flight.addr, flight.slot, format!("no answer within {:?}", self.timeout))
                    }
                    (true, false) => node_error(UNREACHABLE, &flight.addr, flight.slot, err.to_string()),
                    (false, _) => err,
                };
                for &(at, _) in &flight.cmds {
                    self.answer(at, Err(err.clone()));
                }
                return;
            }
        };
        deployment.answered(&flight.addr);
        let mut values = values.into_iter();
        let mut landed = Vec::with_capacity(flight.cmds.len());
        for &(at, asked) in &flight.cmds {
            if asked {
                values.next();
            }
            let value = values.next().map_or_else(|| Err(missing()), Value::extract_error);
            match value {
                Err(err) => match redirect(&err) {
                    // At once the first time; counted against the window like the
                    // others, so that a node that keeps answering `ASK` cannot loop.
                    Some(Redirect::Ask(addr)) => {
                        self.todo.push((at, Some(addr)));
                        self.trouble = Some(Trouble::Moving(err));
                    }
                    Some(Redirect::Moved { refresh }) => {
                        self.refresh |= refresh;
                        self.todo.push((at, None));
                        self.trouble = Some(Trouble::Moving(err));
                    }
                    None => landed.push((at, Err(err))),
                },
                Ok(value) => landed.push((at, Ok(value))),
            }
        }
        if let Some(wait) = flight.wait {
            let barrier = flight.barrier.as_ref().map(|(_, asked)| {
                if *asked {
                    values.next();
                }
                values.next()
            });
            let verdict = match (barrier, values.next()) {
                (Some(Some(Value::Okay | Value::SimpleString(_))) | None, Some(answer)) => {
                    wait.judge(&answer).map_err(|short| short.to_string())
                }
                (Some(barrier), _) => Err(format!("the barrier write before WAIT was answered {barrier:?}")),
                (None, None) => Err("no answer to WAIT".to_owned()),
            };
            if let Err(why) = verdict {
                // Sent again: a claim this call made answers as made, and one it found
                // answers the same; neither is reported before it is durable.
                self.todo.extend(landed.into_iter().map(|(at, _)| (at, None)));
                self.trouble = Some(Trouble::Short { addr: flight.addr, why });
                self.refresh = true;
                return;
            }
        }
        for (at, answer) in landed {
            self.answer(at, answer);
        }
    }

    fn answer(&mut self, at: usize, answer: RedisResult<Value>) {
        if let Some(slot) = self.answers.get_mut(at) {
            *slot = Some(answer);
        }
    }

    /// What to do after a round, `window` being how long a failover may take.
    pub(super) fn next(&mut self, window: Duration) -> Next {
        if self.todo.is_empty() {
            return Next::Done;
        }
        let refresh = std::mem::take(&mut self.refresh);
        if self.reopen == Reopen::Due {
            self.reopen = Reopen::Done;
            return Next::Again { refresh, pause: Duration::ZERO };
        }
        let Some(trouble) = &self.trouble else {
            return Next::Again { refresh, pause: Duration::ZERO };
        };
        let now = Instant::now();
        let since = *self.since.get_or_insert(now);
        // One server has nothing to fail over to; a shortfall of replicas may pass.
        let waits_out = self.cluster || matches!(trouble, Trouble::Short { .. });
        if waits_out && now.saturating_duration_since(since) < window {
            let pause = PAUSES.get(self.waits as usize).copied().unwrap_or(MAX_PAUSE);
            self.waits += 1;
            return Next::Again { refresh, pause };
        }
        let err = trouble.error(self.cluster, now.saturating_duration_since(since));
        for (at, _) in std::mem::take(&mut self.todo) {
            self.answer(at, Err(err.clone()));
        }
        Next::Done
    }

    /// Each command's answer, an error the server answered being that command's `Err`;
    /// the batch's error when every command was lost with its connection.
    pub(super) fn finish(self) -> Result<Vec<RedisResult<Value>>, RedisError> {
        let answers: Vec<RedisResult<Value>> =
            self.answers.into_iter().map(|answer| answer.unwrap_or_else(|| Err(missing()))).collect();
        if let Some(Err(first)) = answers.first()
            && first.code().is_none()
            && answers.iter().all(|answer| answer.as_ref().is_err_and(|err| err.code().is_none()))
        {
            return Err(first.clone());
        }
        Ok(answers)
    }
}

/// How long a round waits after the previous one, by how many have waited: a redirect
/// is followed at once, a failover is polled every quarter second.
const PAUSES: [Duration; 6] = [
    Duration::ZERO,
    Duration::from_millis(10),
    Duration::from_millis(25),
    Duration::from_millis(50),
    Duration::from_millis(100),
    Duration::from_millis(200),
];
const MAX_PAUSE: Duration = Duration::from_millis(250);

/// The write a flight ends with before its `WAIT`, in the slot of its first command so
/// that the node that took the commands takes it (a short-lived key of its own).
fn barrier(prefix: &str, slot: Option<u16>, cluster: bool) -> Option<Cmd> {
    let key = match slot {
        #[cfg(feature = "cluster")]
        Some(slot) => layout::barrier_key(prefix, Some(super::deployment::barrier_tag(slot))),
        #[cfg(not(feature = "cluster"))]
        Some(_) => return None,
        // A keyless command on a cluster: no key is known to land on its node.
        None if cluster => return None,
        None => layout::barrier_key(prefix, None),
    };
    let mut cmd = ::redis::cmd("SET");
    cmd.arg(key).arg(1).arg("PX").arg(BARRIER_TTL_MS);
    Some(cmd)
}

/// How long a barrier key lives: it only has to outlive its `WAIT`.
const BARRIER_TTL_MS: u64 = 60_000;

enum Redirect {
    /// Another round, to the master the slot map names (read again first if `refresh`).
    Moved { refresh: bool },
    /// Another round, to this node, after `ASKING`.
    Ask(Addr),
}

/// What an error answer asks for, if it says elsewhere or later.
fn redirect(err: &RedisError) -> Option<Redirect> {
    match err.code()? {
        // `ASK <slot> <host:port>`
        "ASK" => err.detail()?.split_whitespace().nth(1).map(|addr| Redirect::Ask(addr.into())),
        "MOVED" | "READONLY" => Some(Redirect::Moved { refresh: true }),
        "TRYAGAIN" | "CLUSTERDOWN" | "MASTERDOWN" | "LOADING" => Some(Redirect::Moved { refresh: false }),
        _ => None,
    }
}

/// Whether `err` lost the connection before any answer could say more: refused, reset,
/// closed. Not a timeout: a command that timed out may still be applied.
pub(super) fn gone(err: &RedisError) -> bool {
    err.is_connection_dropped() && !err.is_timeout()
}

/// A command the server sent no answer for (a bug of the server or of this crate).
fn missing() -> RedisError {
    ::redis::make_extension_error("PROTOCOL".to_owned(), Some("an answer is missing".to_owned()))
}

impl Trouble {
    /// The error a command gets when its trouble outlasts the failover window.
    fn error(&self, cluster: bool, waited: Duration) -> RedisError {
        let waited = Waited(waited);
        match self {
            // On one server, as the connection said it.
            Trouble::Gone { err, .. } if !cluster => err.clone(),
            Trouble::Gone { addr, slot, err } => node_error(UNREACHABLE, addr, *slot, format!("{err}{waited}")),
            Trouble::Moving(err) => err.clone(),
            Trouble::Unserved(slot) => ::redis::make_extension_error(
                "CLUSTERDOWN".to_owned(),
                Some(format!("no master serves slot {slot}{waited}")),
            ),
            Trouble::Short { addr, why } => {
                ::redis::make_extension_error(NOT_DURABLE.to_owned(), Some(format!("master {addr}: {why}{waited}")))
            }
        }
    }
}

/// The error of a command of a cluster node's that failed: `<code> node <addr> (slot
/// <slot>): <why>`.
fn node_error(code: &str, addr: &str, slot: Option<u16>, why: String) -> RedisError {
    let slot = slot.map(|slot| format!(" (slot {slot})")).unwrap_or_default();
    ::redis::make_extension_error(code.to_owned(), Some(format!("node {addr}{slot}: {why}")))
}

/// How long a command waited, as errors say it.
struct Waited(Duration);

impl fmt::Display for Waited {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 >= Duration::from_millis(100) { write!(f, " (waited {:.1}s)", self.0.as_secs_f64()) } else { Ok(()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::deployment::Deployment;
    use crate::fleet::link::Single;

    const T: Duration = Duration::from_millis(100);

    fn node() -> Single {
        Single::plain("redis://127.0.0.1:7000/".parse::<::redis::ConnectionInfo>().unwrap())
    }

    /// One server with `replicas` replicas, as a deployment.
    fn one_server(replicas: usize) -> Deployment {
        Deployment::new(vec![node()], None, false, T, Topology::single("s".into(), node(), replicas))
    }

    fn set(key: &str) -> Cmd {
        let mut cmd = ::redis::cmd("SET");
        cmd.arg(key).arg("v").arg("NX").arg("GET");
        cmd
    }

    fn get(key: &str) -> Cmd {
        let mut cmd = ::redis::cmd("GET");
        cmd.arg(key);
        cmd
    }

    fn names(dispatch: &Dispatch, flight: &Flight) -> Vec<String> {
        dispatch
            .flight_cmds(flight)
            .map(|cmd| match cmd.args_iter().next() {
                Some(::redis::Arg::Simple(name)) => String::from_utf8_lossy(name).into_owned(),
                _ => String::new(),
            })
            .collect()
    }

    fn plan(dispatch: &mut Dispatch, deployment: &Deployment, durability: Durability) -> Vec<Flight> {
        dispatch.plan(&deployment.topology(), durability, T, "p:")
    }

    #[test]
    fn writes_wait_for_a_replica_where_there_is_one_and_reads_never() {
        let deployment = one_server(1);
        let mut writes = Dispatch::new(vec![set("a"), get("b")], false, T);
        let flights = plan(&mut writes, &deployment, Durability::Auto);
        assert_eq!(names(&writes, &flights[0]), ["SET", "GET", "SET", "WAIT"], "a barrier write, then WAIT");
        let only = |cmds: Vec<Cmd>, deployment: &Deployment, durability| {
            let mut dispatch = Dispatch::new(cmds, false, T);
            let flight = plan(&mut dispatch, deployment, durability).remove(0);
            names(&dispatch, &flight)
        };
        assert_eq!(only(vec![get("a"), get("b")], &deployment, Durability::Auto), ["GET", "GET"]);
        assert_eq!(only(vec![set("a")], &one_server(0), Durability::Auto), ["SET"], "no replica");
        assert_eq!(only(vec![set("a")], &deployment, Durability::None), ["SET"]);
        assert_eq!(only(vec![set("a")], &one_server(0), Durability::Replicas(1)), ["SET", "SET", "WAIT"], "always");
        let mut scripts = Dispatch::new(vec![::redis::cmd("EVAL")], false, T);
        assert!(plan(&mut scripts, &deployment, Durability::Auto)[0].wait.is_some(), "a script writes");
    }

    #[test]
    fn answers_count_once_the_replicas_have_them_and_a_shortfall_fails_after_the_window() {
        let deployment = one_server(1);
        let mut dispatch = Dispatch::new(vec![set("a"), set("b")], false, T);
        let flight = plan(&mut dispatch, &deployment, Durability::Auto).remove(0);
        let answers = vec![Value::Nil, Value::BulkString(b"held".to_vec()), Value::Okay, Value::Int(1)];
        dispatch.land(flight, Ok(answers), false, &deployment);
        assert_eq!(dispatch.next(T), Next::Done);
        let answers = dispatch.finish().unwrap();
        assert_eq!(answers[0].as_ref().ok(), Some(&Value::Nil));
        assert_eq!(answers[1].as_ref().ok(), Some(&Value::BulkString(b"held".to_vec())));

        // No replica acknowledged: the commands go again, then fail naming the master.
        let mut dispatch = Dispatch::new(vec![set("a"), set("b")], false, T);
        let mut rounds = 0;
        loop {
            let flight = plan(&mut dispatch, &deployment, Durability::Auto).remove(0);
            assert_eq!(names(&dispatch, &flight), ["SET", "SET", "SET", "WAIT"], "everything again");
            dispatch.land(flight, Ok(vec![Value::Nil, Value::Nil, Value::Okay, Value::Int(0)]), false, &deployment);
            rounds += 1;
            match dispatch.next(T) {
                Next::Done => break,
                Next::Again { refresh, pause } => {
                    assert!(refresh, "the replicas are read again");
                    std::thread::sleep(pause);
                }
            }
        }
        assert!(rounds > 1, "a shortfall is waited out for the window");
        let answers = dispatch.finish().unwrap();
        let err = answers[0].as_ref().unwrap_err();
        assert_eq!(err.code(), Some(NOT_DURABLE));
        assert!(err.to_string().contains("master s: 0 of 1 replicas acknowledged within 100ms"), "{err}");
        assert_eq!(crate::fleet::fault::server_error_of(err).0, crate::FaultKind::NotDurable);
    }

    #[test]
    fn on_one_server_a_closed_kept_connection_is_sent_again_once_and_a_timeout_never() {
        let deployment = one_server(0);
        let closed = || Err(std::io::Error::from(std::io::ErrorKind::ConnectionReset).into());
        let mut dispatch = Dispatch::new(vec![set("a")], false, T);
        let flight = plan(&mut dispatch, &deployment, Durability::Auto).remove(0);
        dispatch.land(flight, closed(), true, &deployment);
        assert_eq!(dispatch.next(T), Next::Again { refresh: false, pause: Duration::ZERO });
        let flight = plan(&mut dispatch, &deployment, Durability::Auto).remove(0);
        dispatch.land(flight, closed(), false, &deployment);
        assert_eq!(dispatch.next(T), Next::Done, "once");
        assert!(dispatch.finish().unwrap_err().is_connection_dropped(), "the batch's error, as the connection said");

        let mut fresh = Dispatch::new(vec![set("a")], false, T);
        let flight = plan(&mut fresh, &deployment, Durability::Auto).remove(0);
        fresh.land(flight, closed(), false, &deployment);
        assert_eq!(fresh.next(T), Next::Done, "a connection just opened is not sent again");

        let mut timed_out = Dispatch::new(vec![set("a")], false, T);
        let flight = plan(&mut timed_out, &deployment, Durability::Auto).remove(0);
        timed_out.land(flight, Err(std::io::Error::from(std::io::ErrorKind::TimedOut).into()), true, &deployment);
        assert_eq!(timed_out.next(T), Next::Done);
        assert!(timed_out.finish().unwrap_err().is_timeout());
    }

    #[cfg(feature = "cluster")]
    mod cluster {
        use super::*;

        fn error(code: &str, detail: &str) -> Value {
            match ::redis::make_extension_error(code.to_owned(), Some(detail.to_owned())).into_server_errors() {
                Some(errors) => Value::ServerError(errors.first().map(|(_, e)| e.clone()).unwrap()),
                None => panic!("not a server error"),
            }
        }

        /// Two masters: 7000 serves slots 0-8191, 7001 the rest.
        fn cluster() -> Deployment {
            let nodes = "\
a 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-8191
b 127.0.0.1:7001@17001 master - 0 0 2 connected 8192-16383
c 127.0.0.1:7002@17002 slave b 0 0 2 connected
";
            let topology = Topology::from_cluster_nodes(nodes, &node(), &node(), None).unwrap();
            Deployment::new(vec![node()], None, true, T, topology)
        }

        /// A key in the slots of `port`.
        fn key_of(port: u16) -> String {
            let slot = |k: &String| crate::fleet::deployment::slot_for_key(k.as_bytes());
            (0..).map(|n| format!("k{n}")).find(|k| (slot(k) < 8192) == (port == 7000)).unwrap()
        }

        #[test]
        fn each_command_goes_to_the_master_of_its_slot_and_only_masters_with_replicas_wait() {
            let deployment = cluster();
            let (a, b) = (key_of(7000), key_of(7001));
            let mut dispatch = Dispatch::new(vec![set(&a), set(&b), set(&a)], true, T);
            let flights = plan(&mut dispatch, &deployment, Durability::Auto);
            let by_node: Vec<(&str, Vec<usize>)> =
                flights.iter().map(|f| (&*f.addr, f.cmds.iter().map(|&(at, _)| at).collect())).collect();
            assert_eq!(by_node, [("127.0.0.1:7000", vec![0, 2]), ("127.0.0.1:7001", vec![1])]);
            assert_eq!(names(&dispatch, &flights[0]), ["SET", "SET"], "7000 has no replica");
            assert_eq!(names(&dispatch, &flights[1]), ["SET", "SET", "WAIT"]);
            let barrier = flights[1].barrier.as_ref().map(|(cmd, _)| cmd.clone()).unwrap();
            let key = match barrier.args_iter().nth(1) {
                Some(::redis::Arg::Simple(key)) => key.to_vec(),
                _ => Vec::new(),
            };
            assert_eq!(
                crate::fleet::deployment::slot_for_key(&key),
                crate::fleet::deployment::slot_for_key(b.as_bytes()),
                "the barrier lands where the writes did"
            );
        }

        #[test]
        fn moved_and_ask_are_followed_command_by_command() {
            let deployment = cluster();
            let a = key_of(7000);
            let mut dispatch = Dispatch::new(vec![set(&a), set(&a), get(&a)], true, T);
            let flight = plan(&mut dispatch, &deployment, Durability::Auto).remove(0);
            let answers = vec![Value::Nil, error("ASK", "3999 127.0.0.1:7009"), error("MOVED", "3999 127.0.0.1:7001")];
            dispatch.land(flight, Ok(answers), false, &deployment);
            assert_eq!(dispatch.next(T), Next::Again { refresh: true, pause: Duration::ZERO });
            let flights = plan(&mut dispatch, &deployment, Durability::Auto);
            let asked = flights.iter().find(|f| &*f.addr == "127.0.0.1:7009").unwrap();
            assert_eq!(names(&dispatch, asked), ["ASKING", "SET"], "the ASK, to the node it names");
            assert_eq!(asked.cmds, [(1, true)]);
            let moved: Vec<usize> = flights
                .iter()
                .filter(|f| &*f.addr != "127.0.0.1:7009")
                .flat_map(|f| f.cmds.iter().map(|&(at, _)| at))
                .collect();
            assert_eq!(moved, [2], "the MOVED one, by the layout");
        }

        #[test]
        fn a_timeout_on_a_cluster_is_never_sent_again_and_names_the_node() {
            let deployment = cluster();
            let mut dispatch = Dispatch::new(vec![set(&key_of(7001))], true, T);
            let flight = plan(&mut dispatch, &deployment, Durability::Auto).remove(0);
            let timed_out = Err(std::io::Error::from(std::io::ErrorKind::TimedOut).into());
            dispatch.land(flight, timed_out, true, &deployment);
            assert_eq!(dispatch.next(T), Next::Done, "not sent again, kept connection or not");
            let answers = dispatch.finish().unwrap();
            let err = answers[0].as_ref().unwrap_err();
            assert_eq!(err.code(), Some(TIMEOUT));
            assert!(
                err.to_string().contains("node 127.0.0.1:7001 (slot ")
                    && err.to_string().contains("no answer within 100ms"),
                "{err}"
            );
            assert_eq!(crate::fleet::fault::server_error_of(err).0, crate::FaultKind::Timeout);
        }

        #[test]
        fn a_master_that_drops_the_connection_is_waited_for_then_named_with_its_slot() {
            let deployment = cluster();
            let a = key_of(7000);
            let mut dispatch = Dispatch::new(vec![set(&a)], true, T);
            let mut rounds = 0;
            loop {
                let flight = plan(&mut dispatch, &deployment, Durability::Auto).remove(0);
                let refused = Err(std::io::Error::from(std::io::ErrorKind::ConnectionRefused).into());
                dispatch.land(flight, refused, false, &deployment);
                rounds += 1;
                match dispatch.next(T) {
                    Next::Done => break,
                    Next::Again { pause, .. } => std::thread::sleep(pause),
                }
            }
            assert!(rounds > 1);
            let answers = dispatch.finish().unwrap();
            let err = answers[0].as_ref().unwrap_err().to_string();
            assert!(err.contains("UNREACHABLE") && err.contains("node 127.0.0.1:7000 (slot "), "{err}");
            // A later call meets the same master gone: the window has passed, no wait.
            let mut later = Dispatch::new(vec![set(&a)], true, T);
            let flight = plan(&mut later, &deployment, Durability::Auto).remove(0);
            later.land(
                flight,
                Err(std::io::Error::from(std::io::ErrorKind::ConnectionRefused).into()),
                false,
                &deployment,
            );
            assert_eq!(later.next(T), Next::Done);
        }
    }
}
