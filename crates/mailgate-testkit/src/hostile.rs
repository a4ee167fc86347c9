//! Servers that misbehave on purpose: they hang, answer garbage, or send a line without end.
//! Tests point accounts at them to check that mailgate times out, names the problem, loses
//! nothing and does not crash.

use std::net::SocketAddr;

use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// How the server misbehaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Misbehaviour {
    /// Accepts and never says a word.
    Hang,
    /// Answers like a web server.
    Garbage,
    /// Sends one endless line (no line break), 1 MiB and counting.
    EndlessLine,
}

/// A misbehaving TCP server on 127.0.0.1; stops when dropped.
pub struct HostileServer {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl HostileServer {
    /// Starts the server (inside a tokio runtime).
    pub async fn start(misbehaviour: Misbehaviour) -> std::io::Result<HostileServer> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                tokio::spawn(async move {
                    match misbehaviour {
                        Misbehaviour::Hang => {
                            // Hold the connection open until the client gives up.
                            let mut buf = [0u8; 1024];
                            while let Ok(n) = tokio::io::AsyncReadExt::read(&mut socket, &mut buf).await {
                                if n == 0 {
                                    break;
                                }
                            }
                        }
                        Misbehaviour::Garbage => {
                            let _ = socket
                                .write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/html\r\n\r\n<html>nope</html>\r\n")
                                .await;
                            let mut buf = [0u8; 1024];
                            while let Ok(n) = tokio::io::AsyncReadExt::read(&mut socket, &mut buf).await {
                                if n == 0 {
                                    break;
                                }
                            }
                        }
                        Misbehaviour::EndlessLine => {
                            let chunk = vec![b'A'; 64 * 1024];
                            for _ in 0..16 {
                                if socket.write_all(&chunk).await.is_err() {
                                    break;
                                }
                            }
                        }
                    }
                });
            }
        });
        Ok(HostileServer { addr, task })
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }
}

impl Drop for HostileServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
