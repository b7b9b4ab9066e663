use std::collections::BTreeMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// How long a client must have sent nothing for what it sent to count as one pipeline.
/// A pipelined client writes a whole pipeline and then waits for its answers, which
/// the proxy holds until then: a pipeline never looks larger than it is, and looks
/// smaller only if the client stalls this long in the middle of writing one.
const QUIET: Duration = Duration::from_millis(250);

/// A TCP proxy in front of a server on loopback that counts the commands of each
/// pipeline a client sends: it forwards requests at once, and holds the answers until
/// the client has sent nothing for 250 ms, so that everything the client wrote before
/// waiting for an answer counts as one pipeline. Each answer round trip costs those
/// 250 ms: for tests of how a client splits its work, not of its speed.
#[derive(Debug)]
pub struct PipelineProxy {
    port: u16,
    pipelines: Arc<Counted>,
}

/// The pipelines that ended, and how many commands were read and not counted yet.
#[derive(Debug, Default)]
struct Counted {
    ended: Mutex<Vec<Pipeline>>,
    uncounted: AtomicUsize,
}

/// The commands of one pipeline, by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pipeline(BTreeMap<String, usize>);

impl Pipeline {
    /// How many of its commands are `name` (`SET`, `GETRANGE`; upper case).
    pub fn count(&self, name: &str) -> usize {
        self.0.get(name).copied().unwrap_or(0)
    }

    /// How many commands it holds.
    pub fn len(&self) -> usize {
        self.0.values().sum()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl PipelineProxy {
    /// A proxy to the server on `127.0.0.1:upstream`.
    pub fn start(upstream: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let pipelines = Arc::new(Counted::default());
        let counted = Arc::clone(&pipelines);
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else { continue };
                let gate = Arc::new(Gate::default());
                let (client_out, server_in) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                let (counted, held) = (Arc::clone(&counted), Arc::clone(&gate));
                std::thread::spawn(move || requests(client, server, &gate, &counted));
                std::thread::spawn(move || answers(server_in, client_out, &held));
            }
        });
        PipelineProxy { port, pipelines }
    }

    /// `redis://127.0.0.1:<port>/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// The pipelines sent since the proxy started or the last call, on any connection,
    /// in the order they ended; a single command counts as a pipeline of one. Waits
    /// (10 s at most) for a pipeline the server has seen to end.
    pub fn take(&self) -> Vec<Pipeline> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.pipelines.uncounted.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        std::mem::take(&mut *self.pipelines.ended.lock().unwrap())
    }

    /// Of the pipelines [`take`](Self::take) returns, how many `name` commands each
    /// that holds any sent.
    pub fn take_counts(&self, name: &str) -> Vec<usize> {
        self.take().iter().map(|p| p.count(name)).filter(|&n| n > 0).collect()
    }
}

impl Counted {
    fn end(&self, pipeline: Pipeline) {
        if !pipeline.is_empty() {
            let n = pipeline.len();
            self.ended.lock().unwrap().push(pipeline);
            self.uncounted.fetch_sub(n, Ordering::SeqCst);
        }
    }
}

/// Whether the answers may go to the client: shut while the client is sending.
#[derive(Default)]
struct Gate {
    open: Mutex<bool>,
    changed: Condvar,
}

impl Gate {
    fn set(&self, open: bool) {
        *self.open.lock().unwrap() = open;
        self.changed.notify_all();
    }

    fn wait_open(&self) {
        let open = self.open.lock().unwrap();
        drop(self.changed.wait_while(open, |open| !*open).unwrap());
    }
}

/// Forwards what the client sends, counting its commands; when it has sent nothing
/// for [`QUIET`], what it sent since the last pause is one pipeline, and its answers go.
fn requests(mut client: TcpStream, mut server: TcpStream, gate: &Gate, counted: &Counted) {
    client.set_read_timeout(Some(QUIET)).unwrap();
    let (mut buf, mut parser, mut pending) = (vec![0; 64 * 1024], Commands::default(), Pipeline::default());
    loop {
        match client.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                gate.set(false);
                let before = pending.len();
                parser.feed(&buf[..n], &mut pending);
                counted.uncounted.fetch_add(pending.len() - before, Ordering::SeqCst);
                if server.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            Err(err) if matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                counted.end(std::mem::take(&mut pending));
                gate.set(true);
            }
            Err(_) => break,
        }
    }
    counted.end(pending);
    gate.set(true);
    let _ = server.shutdown(Shutdown::Both);
    let _ = client.shutdown(Shutdown::Both);
}

/// Forwards the server's answers while the gate is open.
fn answers(mut server: TcpStream, mut client: TcpStream, gate: &Gate) {
    let mut buf = [0; 64 * 1024];
    while let Ok(n) = server.read(&mut buf) {
        if n == 0 {
            break;
        }
        gate.wait_open();
        if client.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = client.shutdown(Shutdown::Both);
    let _ = server.shutdown(Shutdown::Both);
}

/// Counts the complete commands in a stream of RESP requests (arrays of bulk strings,
/// as every client library sends them).
#[derive(Default)]
struct Commands {
    buf: Vec<u8>,
}

impl Commands {
    /// Takes `bytes`, counting the commands they complete in `into`.
    fn feed(&mut self, bytes: &[u8], into: &mut Pipeline) {
        self.buf.extend_from_slice(bytes);
        let mut at = 0;
        while let Some((len, name)) = command(&self.buf[at..]) {
            *into.0.entry(name).or_default() += 1;
            at += len;
        }
        self.buf.drain(..at);
    }
}

/// The length and name (upper case) of the command at the start of `bytes`, if it is
/// all there.
fn command(bytes: &[u8]) -> Option<(usize, String)> {
    let (args, mut at) = header(bytes, b'*')?;
    let mut name = String::new();
    for arg in 0..args {
        let (len, after) = header(&bytes[at..], b'$')?;
        let start = at + after;
        at = start + len + 2;
        if at > bytes.len() {
            return None;
        }
        if arg == 0 {
            name = String::from_utf8_lossy(&bytes[start..start + len]).to_uppercase();
        }
    }
    Some((at, name))
}

/// `<tag><number>\r\n` at the start of `bytes`: the number and the line's length.
fn header(bytes: &[u8], tag: u8) -> Option<(usize, usize)> {
    let first = *bytes.first()?;
    assert_eq!(first, tag, "not a RESP request: {:?}", String::from_utf8_lossy(&bytes[..bytes.len().min(64)]));
    let end = bytes.windows(2).position(|w| w == b"\r\n")?;
    let number = std::str::from_utf8(&bytes[1..end]).unwrap().parse().unwrap();
    Some((number, end + 2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_counted_whole_whatever_the_chunks() {
        let one = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$3\r\nv\r\n\r\n".to_vec();
        let stream: Vec<u8> = one.iter().copied().cycle().take(one.len() * 5).collect();
        for chunk in [1, 3, 7, one.len(), 1000] {
            let (mut parser, mut pipeline) = (Commands::default(), Pipeline::default());
            stream.chunks(chunk).for_each(|c| parser.feed(c, &mut pipeline));
            assert_eq!((pipeline.count("SET"), pipeline.len()), (5, 5), "chunks of {chunk}");
        }
    }
}
