//! A TCP proxy on loopback that a test can switch off and on again, for "the mail server is
//! unreachable, then back" cases.
//!
//! While up, each accepted connection is joined to a new connection to the target. Switched
//! down, the port has no listener (connections are refused) and open connections are cut; up
//! again, it listens on the same port.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::task::JoinHandle;

/// A switchable TCP proxy listening on `127.0.0.1:port()`.
#[derive(Debug)]
pub struct TcpProxy {
    target: SocketAddr,
    addr: SocketAddr,
    state: Arc<Mutex<ProxyState>>,
}

#[derive(Debug, Default)]
struct ProxyState {
    /// The accept loop; `None` while down.
    acceptor: Option<JoinHandle<()>>,
    /// One task per proxied connection.
    connections: Vec<JoinHandle<()>>,
}

fn lock(state: &Mutex<ProxyState>) -> MutexGuard<'_, ProxyState> {
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl TcpProxy {
    /// Starts a proxy to `target` on `127.0.0.1:0`, up. Call it inside a tokio runtime.
    ///
    /// # Panics
    /// When no loopback port can be bound.
    pub fn start(target: SocketAddr) -> TcpProxy {
        let listener = listen(SocketAddr::from(([127, 0, 0, 1], 0)))
            .unwrap_or_else(|e| panic!("TcpProxy: listen on 127.0.0.1:0: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("TcpProxy: local address: {e}"));
        let proxy = TcpProxy {
            target,
            addr,
            state: Arc::new(Mutex::new(ProxyState::default())),
        };
        proxy.spawn_acceptor(listener);
        proxy
    }

    /// The port the proxy listens on (the same while down and after [`TcpProxy::set_up`]).
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `127.0.0.1:port()`.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The address connections are forwarded to.
    pub fn target(&self) -> SocketAddr {
        self.target
    }

    /// Stops listening (new connections are refused) and cuts the open connections. Done when it
    /// returns. Idempotent.
    pub async fn set_down(&self) {
        let acceptor = lock(&self.state).acceptor.take();
        if let Some(acceptor) = acceptor {
            acceptor.abort();
            // Resolves once the task, and with it the listener, has been dropped.
            let _ = acceptor.await;
        }
        let connections = std::mem::take(&mut lock(&self.state).connections);
        for connection in &connections {
            connection.abort();
        }
        for connection in connections {
            let _ = connection.await;
        }
    }

    /// Listens again on the same port. Idempotent.
    ///
    /// # Panics
    /// When the port cannot be bound again (another process took it meanwhile).
    pub async fn set_up(&self) {
        if lock(&self.state).acceptor.is_some() {
            return;
        }
        let listener = listen(self.addr)
            .unwrap_or_else(|e| panic!("TcpProxy: listen again on {}: {e}", self.addr));
        self.spawn_acceptor(listener);
    }

    /// Whether the proxy is listening.
    pub fn is_up(&self) -> bool {
        lock(&self.state).acceptor.is_some()
    }

    fn spawn_acceptor(&self, listener: TcpListener) {
        let state = Arc::clone(&self.state);
        let target = self.target;
        let acceptor = tokio::spawn(async move {
            loop {
                let inbound = match listener.accept().await {
                    Ok((inbound, _)) => inbound,
                    Err(_) => {
                        // E.g. out of file descriptors: don't spin.
                        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                        continue;
                    }
                };
                let connection = tokio::spawn(pipe(inbound, target));
                let mut state = lock(&state);
                state.connections.retain(|c| !c.is_finished());
                state.connections.push(connection);
            }
        });
        lock(&self.state).acceptor = Some(acceptor);
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        let mut state = lock(&self.state);
        if let Some(acceptor) = state.acceptor.take() {
            acceptor.abort();
        }
        for connection in state.connections.drain(..) {
            connection.abort();
        }
    }
}

/// A listener with SO_REUSEADDR, so that the port can be bound again while connections the
/// proxy cut are in TIME_WAIT.
fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(128)
}

async fn pipe(mut inbound: TcpStream, target: SocketAddr) {
    let Ok(mut outbound) = TcpStream::connect(target).await else {
        return; // Dropping `inbound` closes it: the client sees the server go away.
    };
    let _ = inbound.set_nodelay(true);
    let _ = outbound.set_nodelay(true);
    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    /// An echo server on loopback.
    async fn echo_server() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the echo server");
        let addr = listener.local_addr().expect("its address");
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (mut reader, mut writer) = stream.split();
                    let _ = tokio::io::copy(&mut reader, &mut writer).await;
                });
            }
        });
        addr
    }

    async fn echo_through(port: u16) -> TcpStream {
        let mut stream = TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect to the proxy");
        stream.write_all(b"ping").await.expect("write");
        let mut answer = [0u8; 4];
        stream.read_exact(&mut answer).await.expect("read the echo");
        assert_eq!(&answer, b"ping");
        stream
    }

    #[tokio::test]
    async fn down_refuses_and_cuts_connections_and_up_listens_on_the_same_port() {
        let target = echo_server().await;
        let proxy = TcpProxy::start(target);
        assert_eq!(proxy.target(), target);
        let port = proxy.port();
        let mut open = echo_through(port).await;

        proxy.set_down().await;
        assert!(!proxy.is_up());
        let error = TcpStream::connect(("127.0.0.1", port))
            .await
            .expect_err("the port is closed");
        assert_eq!(error.kind(), std::io::ErrorKind::ConnectionRefused);
        let mut buf = [0u8; 1];
        match open.read(&mut buf).await {
            Ok(0) | Err(_) => {}
            Ok(n) => panic!("read {n} byte(s) from a cut connection"),
        }
        proxy.set_down().await;

        proxy.set_up().await;
        assert!(proxy.is_up());
        assert_eq!(proxy.port(), port);
        echo_through(port).await;
        proxy.set_up().await;
        echo_through(port).await;
    }

    #[tokio::test]
    async fn a_connection_is_closed_when_the_target_is_unreachable() {
        // A port with no listener: bind, note it, close.
        let closed = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind")
            .local_addr()
            .expect("addr");
        let proxy = TcpProxy::start(closed);
        let mut stream = TcpStream::connect(("127.0.0.1", proxy.port()))
            .await
            .expect("the proxy accepts");
        let mut buf = [0u8; 1];
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => {}
            Ok(n) => panic!("read {n} byte(s) from nowhere"),
        }
    }
}
