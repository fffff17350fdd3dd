//! `weir-app`: an application server for weir's `nats` adapter.
//!
//! It subscribes to a subject in a queue group (NATS gives each request to one member, so
//! several instances share the load), decodes each request ([`weir_model::appmsg`], the
//! contract), and replies with a fixed body (`--mode static`), the request itself
//! (`--mode echo`), or `N` bytes for the target `/bytes/N`; `--delay-ms` holds every
//! answer back (the tests' slow application). Every reply carries `X-Weir-App: NAME`, so a
//! client can tell which instance answered.
//!
//! `--http ADDR` serves the same answers over plain HTTP/1.1 instead (keep-alive,
//! pipelining, `Content-Length` bodies): the same application behind nginx as a reverse
//! proxy is the reference `scripts/bench-app.sh` measures weir against.
//!
//! It prints `ready` on stdout once subscribed (or listening), and on SIGINT/SIGTERM
//! `served N` (requests answered) before it exits: the tests read both.
//!
//! Rejected: hyper for `--http` (a second HTTP stack to compare, when the point is the
//! same answer logic behind two transports; httparse is what the terminator uses too).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use clap::{Parser, ValueEnum};
use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use weir_model::appmsg::{AppReply, AppRequest, Blob, VERSION};

/// Largest body `/bytes/N` answers with (NATS's default `max_payload` is 1 MiB).
const MAX_BYTES: usize = 512 * 1024;

/// HTTP mode: largest request head and body.
const MAX_HEAD: usize = 16 * 1024;
const MAX_BODY: usize = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// The `--body` text for every request.
    Static,
    /// POST/PUT/PATCH get their body back; other methods their request line and headers.
    Echo,
}

/// An application server for weir's `nats` adapter.
#[derive(Debug, Parser)]
#[command(name = "weir-app", version)]
struct Args {
    /// NATS server.
    #[arg(long, default_value = "nats://127.0.0.1:4222")]
    nats: String,
    /// Subject to serve (as `[terminator.adapter] subject`).
    #[arg(long, default_value = "weir.http")]
    subject: String,
    /// Queue group: instances in the same group share the requests.
    #[arg(long, default_value = "weir-app")]
    queue: String,
    /// This instance's name (`X-Weir-App` header, logs).
    #[arg(long, default_value = "weir-app")]
    name: String,
    /// What to answer.
    #[arg(long, value_enum, default_value = "static")]
    mode: Mode,
    /// Body of `--mode static`.
    #[arg(long, default_value = "hello from weir-app\n")]
    body: String,
    /// Hold every answer back this long (ms).
    #[arg(long, default_value_t = 0)]
    delay_ms: u64,
    /// Serve plain HTTP on this address instead of NATS.
    #[arg(long)]
    http: Option<std::net::SocketAddr>,
    /// Runtime threads (1: a current-thread runtime).
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

/// What a request asks, from either transport.
struct Ask<'a> {
    method: &'a str,
    target: &'a str,
    minor: u8,
    headers: Vec<(&'a str, &'a [u8])>,
    body: &'a [u8],
}

/// The answer: status, content type, body.
struct Said {
    status: u16,
    body: Bytes,
}

/// The shared answer logic.
#[derive(Debug)]
struct App {
    name: String,
    mode: Mode,
    body: Bytes,
    delay: Duration,
    served: AtomicU64,
}

impl App {
    fn answer(&self, ask: &Ask<'_>) -> Said {
        let path = ask.target.split('?').next().unwrap_or("");
        if let Some(n) = path.strip_prefix("/bytes/") {
            return match n.parse::<usize>() {
                Ok(n) if n <= MAX_BYTES => Said {
                    status: 200,
                    body: Bytes::from(vec![b'x'; n]),
                },
                _ => Said {
                    status: 400,
                    body: Bytes::from_static(b"/bytes/N: N from 0 to 524288\n"),
                },
            };
        }
        match self.mode {
            Mode::Static => Said {
                status: 200,
                body: self.body.clone(),
            },
            Mode::Echo if matches!(ask.method, "POST" | "PUT" | "PATCH") => Said {
                status: 200,
                body: Bytes::copy_from_slice(ask.body),
            },
            Mode::Echo => {
                let mut t = Vec::new();
                t.extend_from_slice(ask.method.as_bytes());
                t.push(b' ');
                t.extend_from_slice(ask.target.as_bytes());
                t.extend_from_slice(if ask.minor == 0 {
                    b" HTTP/1.0\r\n"
                } else {
                    b" HTTP/1.1\r\n"
                });
                for (n, v) in &ask.headers {
                    t.extend_from_slice(n.as_bytes());
                    t.extend_from_slice(b": ");
                    t.extend_from_slice(v);
                    t.extend_from_slice(b"\r\n");
                }
                Said {
                    status: 200,
                    body: Bytes::from(t),
                }
            }
        }
    }

    async fn hold(&self) {
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
    }
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    if args.threads == 0 {
        bail!("--threads must be at least 1");
    }
    let app = Arc::new(App {
        name: args.name.clone(),
        mode: args.mode,
        body: Bytes::from(args.body.clone().into_bytes()),
        delay: Duration::from_millis(args.delay_ms),
        served: AtomicU64::new(0),
    });
    let runtime = if args.threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.threads)
            .enable_all()
            .build()
    }
    .context("cannot start the tokio runtime")?;
    let served = runtime.block_on(async {
        let work = async {
            match args.http {
                Some(addr) => serve_http(Arc::clone(&app), addr).await,
                None => serve_nats(Arc::clone(&app), &args).await,
            }
        };
        tokio::select! {
            r = work => r.map(|()| app.served.load(Ordering::Relaxed)),
            r = stop_signal() => r.map(|()| app.served.load(Ordering::Relaxed)),
        }
    })?;
    println!("served {served}");
    Ok(())
}

async fn stop_signal() -> Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("SIGINT handler")?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}

async fn serve_nats(app: Arc<App>, args: &Args) -> Result<()> {
    let client = async_nats::ConnectOptions::new()
        .name(format!("weir-app {}", args.name))
        .retry_on_initial_connect()
        .max_reconnects(None)
        .reconnect_delay_callback(|n| Duration::from_millis((100 * n as u64).clamp(100, 1000)))
        .connect(args.nats.as_str())
        .await
        .with_context(|| format!("cannot connect to NATS at {}", args.nats))?;
    let mut sub = client
        .queue_subscribe(args.subject.clone(), args.queue.clone())
        .await
        .with_context(|| format!("cannot subscribe to {}", args.subject))?;
    // The subscription is on the server once a flush round-trips.
    while client.flush().await.is_err() {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tracing::info!(name = %app.name, subject = %args.subject, queue = %args.queue, "serving over NATS");
    println!("ready");
    while let Some(msg) = sub.next().await {
        let Some(reply_to) = msg.reply.clone() else {
            tracing::debug!("a message without a reply subject: ignored");
            continue;
        };
        let delayed = !app.delay.is_zero();
        let (app, client) = (Arc::clone(&app), client.clone());
        let work = async move {
            app.hold().await;
            let payload = match AppRequest::decode(&msg.payload) {
                Ok(req) => {
                    let ask = Ask {
                        method: req.method,
                        target: req.target,
                        minor: req.http_minor,
                        headers: req.headers.iter().map(|(n, v)| (*n, v.0)).collect(),
                        body: req.body.0,
                    };
                    encode(&app, &app.answer(&ask))
                }
                Err(e) => {
                    // Another version is not guessed at: no answer, the terminator's
                    // timeout (504) tells the client.
                    tracing::warn!(error = %e, "request refused, not answered");
                    return;
                }
            };
            if let Err(e) = client.publish(reply_to, payload).await {
                tracing::warn!(error = %e, "reply not sent");
                return;
            }
            app.served.fetch_add(1, Ordering::Relaxed);
        };
        if delayed {
            tokio::spawn(work);
        } else {
            work.await;
        }
    }
    bail!("the NATS subscription ended")
}

fn encode(app: &App, said: &Said) -> Bytes {
    let reply = AppReply {
        version: VERSION,
        status: said.status,
        headers: vec![
            ("Content-Type", "text/plain; charset=utf-8"),
            ("X-Weir-App", app.name.as_str()),
        ],
        body: Blob(&said.body),
    };
    let mut out = Vec::with_capacity(said.body.len() + 64 + app.name.len());
    reply.encode(&mut out);
    Bytes::from(out)
}

async fn serve_http(app: Arc<App>, addr: std::net::SocketAddr) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    tracing::info!(name = %app.name, %addr, "serving over HTTP");
    println!("ready");
    loop {
        let (sock, _) = listener.accept().await.context("accept")?;
        let _ = sock.set_nodelay(true);
        let app = Arc::clone(&app);
        tokio::spawn(async move {
            if let Err(e) = http_conn(&app, sock).await {
                tracing::debug!(error = %e, "HTTP connection ended");
            }
        });
    }
}

/// One HTTP/1.1 connection: requests in order, answers in order.
async fn http_conn(app: &App, mut sock: tokio::net::TcpStream) -> std::io::Result<()> {
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut out = Vec::with_capacity(4096);
    loop {
        // Answer every complete request in the buffer.
        let mut used = 0;
        let mut close = false;
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut req = httparse::Request::new(&mut headers);
            let Some(rest) = buf.get(used..) else { break };
            let head = match req.parse(rest) {
                Ok(httparse::Status::Complete(n)) => n,
                Ok(httparse::Status::Partial) if rest.len() <= MAX_HEAD => break,
                _ => {
                    out.extend_from_slice(
                        b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    );
                    close = true;
                    break;
                }
            };
            let len = req
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                .and_then(|h| {
                    std::str::from_utf8(h.value)
                        .ok()?
                        .trim()
                        .parse::<usize>()
                        .ok()
                })
                .unwrap_or(0);
            if len > MAX_BODY {
                out.extend_from_slice(
                    b"HTTP/1.1 413 Content Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
                close = true;
                break;
            }
            if rest.len() < head + len {
                break;
            }
            let minor = req.version.unwrap_or(1);
            let wants_close = req.headers.iter().any(|h| {
                h.name.eq_ignore_ascii_case("connection") && h.value.eq_ignore_ascii_case(b"close")
            }) || minor == 0;
            let ask = Ask {
                method: req.method.unwrap_or("GET"),
                target: req.path.unwrap_or("/"),
                minor,
                headers: req.headers.iter().map(|h| (h.name, h.value)).collect(),
                body: &rest[head..head + len],
            };
            let said = app.answer(&ask);
            let head_only = ask.method == "HEAD";
            app.hold().await;
            out.extend_from_slice(
                format!(
                    "HTTP/1.1 {} {}\r\nContent-Type: text/plain; charset=utf-8\r\nX-Weir-App: {}\r\nContent-Length: {}\r\n{}\r\n",
                    said.status,
                    if said.status == 200 { "OK" } else { "Bad Request" },
                    app.name,
                    said.body.len(),
                    if wants_close { "Connection: close\r\n" } else { "" }
                )
                .as_bytes(),
            );
            if !head_only {
                out.extend_from_slice(&said.body);
            }
            app.served.fetch_add(1, Ordering::Relaxed);
            used += head + len;
            if wants_close {
                close = true;
                break;
            }
        }
        buf.drain(..used);
        if !out.is_empty() {
            sock.write_all(&out).await?;
            out.clear();
        }
        if close {
            return sock.shutdown().await;
        }
        let mut chunk = [0u8; 16 * 1024];
        let n = sock.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}
