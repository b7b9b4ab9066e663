use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// A TCP proxy in front of a server on loopback that can lose an answer: once armed,
/// the next bytes the server sends back are dropped and the client's connection is
/// closed, after the server has run what the client sent. What a connection killed
/// between a request and its answer looks like to the client.
#[derive(Debug)]
pub struct LosingProxy {
    port: u16,
    lose: Arc<AtomicBool>,
    lost: Arc<AtomicUsize>,
}

impl LosingProxy {
    /// A proxy to the server on `127.0.0.1:upstream`.
    pub fn start(upstream: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let (lose, lost) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicUsize::new(0)));
        let (lose_in, lost_in) = (Arc::clone(&lose), Arc::clone(&lost));
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else { continue };
                let (lose, lost) = (Arc::clone(&lose_in), Arc::clone(&lost_in));
                let (client_in, server_out) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                std::thread::spawn(move || copy(client_in, server_out));
                std::thread::spawn(move || answers(server, client, &lose, &lost));
            }
        });
        LosingProxy { port, lose, lost }
    }

    /// `redis://127.0.0.1:<port>/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Loses the next answer.
    pub fn lose_next_answer(&self) {
        self.lose.store(true, Ordering::SeqCst);
    }

    /// How many answers were lost.
    pub fn lost(&self) -> usize {
        self.lost.load(Ordering::SeqCst)
    }
}

fn copy(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = [0; 64 * 1024];
    while let Ok(n) = from.read(&mut buf) {
        if n == 0 || to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Both);
    let _ = from.shutdown(Shutdown::Both);
}

fn answers(mut server: TcpStream, mut client: TcpStream, lose: &AtomicBool, lost: &AtomicUsize) {
    let mut buf = [0; 64 * 1024];
    while let Ok(n) = server.read(&mut buf) {
        if n == 0 {
            break;
        }
        if lose.swap(false, Ordering::SeqCst) {
            lost.fetch_add(1, Ordering::SeqCst);
            break;
        }
        if client.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = client.shutdown(Shutdown::Both);
    let _ = server.shutdown(Shutdown::Both);
}
