//! A TCP proxy in front of Postgres that can lose a COMMIT's answer: once armed, it forwards
//! the next simple-query `COMMIT` to the server, waits for the server to commit, and closes
//! both connections without relaying the reply. The client sees its connection die during
//! COMMIT although the transaction committed: the one case where a retry must not repeat.
//! Armed with [`Proxy::arm_and_cut`], it then also refuses every new connection until
//! [`Proxy::restore`], so the retries after the lost reply fail in another way.

use std::net::{SocketAddr, ToSocketAddrs};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The frontend message `Query("COMMIT")`: tag, length 4 + 7, text, NUL.
const COMMIT: &[u8] = b"Q\0\0\0\x0bCOMMIT\0";

pub struct Proxy {
    pub addr: SocketAddr,
    armed: Arc<AtomicBool>,
    fired: Arc<AtomicU32>,
    /// Cut the link once the armed COMMIT's reply is lost.
    cut_after: Arc<AtomicBool>,
    /// The link is cut: new connections are closed at once.
    cut: Arc<AtomicBool>,
}

#[derive(Clone)]
struct Flags {
    armed: Arc<AtomicBool>,
    fired: Arc<AtomicU32>,
    cut_after: Arc<AtomicBool>,
    cut: Arc<AtomicBool>,
}

impl Proxy {
    /// Listens on 127.0.0.1 and forwards every connection to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().unwrap();
        let flags = Flags {
            armed: Arc::new(AtomicBool::new(false)),
            fired: Arc::new(AtomicU32::new(0)),
            cut_after: Arc::new(AtomicBool::new(false)),
            cut: Arc::new(AtomicBool::new(false)),
        };
        let shared = flags.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if shared.cut.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let Ok(server) = TcpStream::connect(upstream).await else {
                    continue;
                };
                tokio::spawn(serve(client, server, shared.clone()));
            }
        });
        let Flags {
            armed,
            fired,
            cut_after,
            cut,
        } = flags;
        Proxy {
            addr,
            armed,
            fired,
            cut_after,
            cut,
        }
    }

    /// Loses the reply to the next COMMIT, then refuses connections until [`Proxy::restore`].
    pub fn arm_and_cut(&self) {
        self.cut_after.store(true, Ordering::SeqCst);
        self.arm();
    }

    /// Accepts connections again.
    pub fn restore(&self) {
        self.cut_after.store(false, Ordering::SeqCst);
        self.cut.store(false, Ordering::SeqCst);
    }

    /// Loses the reply to the next COMMIT that passes through.
    pub fn arm(&self) {
        self.armed.store(true, Ordering::SeqCst);
    }

    /// How many COMMIT replies were lost so far.
    pub fn fired(&self) -> u32 {
        self.fired.load(Ordering::SeqCst)
    }
}

async fn serve(mut client: TcpStream, mut server: TcpStream, flags: Flags) {
    let (mut client_read, mut client_write) = client.split();
    let (mut server_read, mut server_write) = server.split();
    let mut up = vec![0u8; 64 * 1024];
    let mut down = vec![0u8; 64 * 1024];
    loop {
        tokio::select! {
            n = client_read.read(&mut up) => {
                let Ok(n @ 1..) = n else { return };
                let chunk = &up[..n];
                let commit = chunk.windows(COMMIT.len()).any(|w| w == COMMIT);
                if server_write.write_all(chunk).await.is_err() {
                    return;
                }
                if commit && flags.armed.swap(false, Ordering::SeqCst) {
                    if flags.cut_after.load(Ordering::SeqCst) {
                        flags.cut.store(true, Ordering::SeqCst);
                    }
                    // The server commits; its reply is never relayed.
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    flags.fired.fetch_add(1, Ordering::SeqCst);
                    return;
                }
            }
            n = server_read.read(&mut down) => {
                let Ok(n @ 1..) = n else { return };
                if client_write.write_all(&down[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// The first address of the test database, for the proxy to forward to.
pub fn upstream(url: &str) -> std::net::SocketAddr {
    let config = tokio_postgres::Config::from_str(url).unwrap();
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
        _ => "127.0.0.1".to_owned(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    (host.as_str(), port)
        .to_socket_addrs()
        .unwrap()
        .next()
        .unwrap()
}

/// `url` with its host and port replaced by the proxy's.
pub fn through(url: &str, proxy: &Proxy) -> String {
    let config = tokio_postgres::Config::from_str(url).unwrap();
    let user = config.get_user().unwrap_or("postgres");
    let dbname = config.get_dbname().unwrap_or(user);
    let password = config
        .get_password()
        .map(|p| format!(":{}", String::from_utf8_lossy(p)))
        .unwrap_or_default();
    format!(
        "postgres://{user}{password}@{}:{}/{dbname}",
        proxy.addr.ip(),
        proxy.addr.port()
    )
}
