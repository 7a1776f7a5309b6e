//! A TCP proxy on a free loopback port, to partition one client from a real Redis.
//!
//! [`Proxy::start`] forwards every connection to the target; [`Proxy::cut`] stops forwarding in
//! both directions (bytes are held, as a network partition holds packets: the client's calls
//! time out, its connection stays open); [`Proxy::heal`] forwards again, held bytes first.
//! Dropping the proxy closes the listener and every connection. Plain threads, so it works
//! under any test runtime.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread;

#[derive(Default)]
struct State {
    /// Forwarding is cut.
    cut: Mutex<bool>,
    changed: Condvar,
    closing: AtomicBool,
    streams: Mutex<Vec<TcpStream>>,
}

impl State {
    /// Blocks while the link is cut; `false` when the proxy is closing.
    fn wait_open(&self) -> bool {
        let mut cut = self.cut.lock().unwrap_or_else(PoisonError::into_inner);
        while *cut && !self.closing.load(Ordering::Acquire) {
            cut = self
                .changed
                .wait(cut)
                .unwrap_or_else(PoisonError::into_inner);
        }
        !self.closing.load(Ordering::Acquire)
    }
}

/// A cuttable TCP link to one server (see the module docs).
pub struct Proxy {
    addr: SocketAddr,
    state: Arc<State>,
    acceptor: Option<thread::JoinHandle<()>>,
}

impl Proxy {
    /// Listens on a free loopback port and forwards to `target`.
    pub fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let addr = listener.local_addr().expect("local address");
        let state = Arc::new(State::default());
        let st = Arc::clone(&state);
        let acceptor = thread::spawn(move || {
            for client in listener.incoming() {
                if st.closing.load(Ordering::Acquire) {
                    return;
                }
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(target) else {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                {
                    let mut streams = st.streams.lock().unwrap_or_else(PoisonError::into_inner);
                    for s in [&client, &server] {
                        if let Ok(s) = s.try_clone() {
                            streams.push(s);
                        }
                    }
                }
                for (from, to) in [(&client, &server), (&server, &client)] {
                    let (Ok(from), Ok(to)) = (from.try_clone(), to.try_clone()) else {
                        continue;
                    };
                    let st = Arc::clone(&st);
                    thread::spawn(move || pipe(from, to, &st));
                }
            }
        });
        Proxy {
            addr,
            state,
            acceptor: Some(acceptor),
        }
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A `redis://` URL through the proxy.
    pub fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    /// Stops forwarding (a partition).
    pub fn cut(&self) {
        *self
            .state
            .cut
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = true;
        self.state.changed.notify_all();
    }

    /// Forwards again.
    pub fn heal(&self) {
        *self
            .state
            .cut
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = false;
        self.state.changed.notify_all();
    }
}

/// Copies `from` to `to` until either closes; each chunk waits while the link is cut.
fn pipe(mut from: TcpStream, mut to: TcpStream, state: &State) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if !state.wait_open() || to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.state.closing.store(true, Ordering::Release);
        self.state.changed.notify_all();
        for s in self
            .state
            .streams
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain(..)
        {
            let _ = s.shutdown(Shutdown::Both);
        }
        // Wake the acceptor so it sees `closing`.
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.acceptor.take() {
            let _ = t.join();
        }
    }
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy").field("addr", &self.addr).finish()
    }
}
