//! The load loop: keep-alive HTTP/1.1 connections, each sending one request at a time,
//! either back to back (fixed concurrency) or at a fixed arrival rate.
//!
//! At a fixed rate every request has an intended start time (start + i ÷ rate) and its
//! latency runs from that time, not from when a connection was free to send it: a
//! stalled server shows as latency instead of as fewer requests (coordinated omission).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::scenario::{Prepared, WorkerState};

/// How the load is applied.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// Connections, each with at most one request in flight.
    pub connections: usize,
    /// Requests a second in all; `None` sends back to back.
    pub rate: Option<f64>,
    /// Run, unrecorded, before the measured part.
    pub warmup: Duration,
    /// The measured part.
    pub duration: Duration,
}

/// Latencies in milliseconds.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Latency {
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
    pub mean: f64,
}

/// What a measured run gave.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Outcome {
    /// Requests started in the measured part and answered.
    pub requests: u64,
    /// `requests` over the time from the measured part's start to its last answer (at
    /// least its length): at a fixed rate the server cannot keep up with, this is what
    /// it managed, not the rate offered.
    pub throughput: f64,
    pub latency_ms: Latency,
    /// Answers by status code.
    pub statuses: BTreeMap<String, u64>,
    /// Requests that got no answer (connection refused or reset).
    pub errors: u64,
}

/// One HTTP/1.1 connection.
pub struct Connection {
    sender: SendRequest<Full<Bytes>>,
}

impl Connection {
    pub async fn open(addr: SocketAddr) -> std::io::Result<Connection> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(std::io::Error::other)?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(Connection { sender })
    }

    /// Sends a request and reads the whole answer.
    pub async fn send(&mut self, request: Request<Full<Bytes>>) -> Result<(StatusCode, Bytes), hyper::Error> {
        self.sender.ready().await?;
        let response = self.sender.send_request(request).await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        Ok((status, body))
    }
}

struct Tally {
    histogram: Histogram<u64>,
    statuses: BTreeMap<u16, u64>,
    errors: u64,
    /// When the last measured request was answered.
    last_answer: Option<Instant>,
}

/// A request unanswered after this long counts as an error: a server that stops
/// answering must not hold the run past its end.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

impl Tally {
    fn new() -> Result<Tally, String> {
        // 1 µs to 10 minutes at 3 significant digits.
        let histogram = Histogram::new_with_bounds(1, 600_000_000, 3).map_err(|e| format!("histogram: {e}"))?;
        Ok(Tally { histogram, statuses: BTreeMap::new(), errors: 0, last_answer: None })
    }

    fn record(&mut self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX).max(1);
        self.histogram.saturating_record(micros);
    }
}

/// Runs `plan` against `addr` and returns the measured part's figures.
pub async fn run(addr: SocketAddr, prepared: Arc<Prepared>, plan: Plan) -> Result<Outcome, String> {
    let mut states = Vec::with_capacity(plan.connections);
    for worker in 0..plan.connections {
        let connection = Connection::open(addr).await.map_err(|e| format!("cannot connect to {addr}: {e}"))?;
        let state = prepared.worker(worker).await?;
        states.push((connection, state, Tally::new()?));
    }
    let start = Instant::now() + Duration::from_millis(50);
    let measured_from = start + plan.warmup;
    let end = measured_from + plan.duration;
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::with_capacity(plan.connections);
    for (connection, state, tally) in states {
        let prepared = prepared.clone();
        let next = next.clone();
        let times = Times { start, measured_from, end };
        tasks
            .push(tokio::spawn(async move { work(addr, connection, state, tally, prepared, plan, next, times).await }));
    }
    let mut tally = Tally::new()?;
    for task in tasks {
        let part = task.await.map_err(|e| format!("a load task failed: {e}"))?;
        tally.histogram.add(&part.histogram).map_err(|e| format!("cannot merge histograms: {e}"))?;
        for (status, n) in part.statuses {
            *tally.statuses.entry(status).or_default() += n;
        }
        tally.errors += part.errors;
        tally.last_answer = tally.last_answer.max(part.last_answer);
    }
    let window = tally.last_answer.map_or(plan.duration, |last| last.duration_since(measured_from).max(plan.duration));
    let requests = tally.histogram.len();
    let ms = |micros: u64| micros as f64 / 1000.0;
    let h = &tally.histogram;
    Ok(Outcome {
        requests,
        throughput: requests as f64 / window.as_secs_f64(),
        latency_ms: Latency {
            p50: ms(h.value_at_quantile(0.50)),
            p95: ms(h.value_at_quantile(0.95)),
            p99: ms(h.value_at_quantile(0.99)),
            max: ms(h.max()),
            mean: h.mean() / 1000.0,
        },
        statuses: tally.statuses.into_iter().map(|(s, n)| (s.to_string(), n)).collect(),
        errors: tally.errors,
    })
}

#[derive(Clone, Copy)]
struct Times {
    start: Instant,
    measured_from: Instant,
    end: Instant,
}

#[allow(clippy::too_many_arguments)]
async fn work(
    addr: SocketAddr,
    mut connection: Connection,
    mut state: WorkerState,
    mut tally: Tally,
    prepared: Arc<Prepared>,
    plan: Plan,
    next: Arc<AtomicU64>,
    Times { start, measured_from, end }: Times,
) -> Tally {
    tokio::time::sleep_until(start).await;
    loop {
        let began = match plan.rate {
            None => Instant::now(),
            Some(rate) => {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let intended = start + Duration::from_secs_f64(i as f64 / rate);
                if intended >= end {
                    break;
                }
                tokio::time::sleep_until(intended).await;
                intended
            }
        };
        if began >= end {
            break;
        }
        let request = prepared.request(&mut state);
        let answer = tokio::time::timeout(REQUEST_TIMEOUT, connection.send(request)).await;
        let latency = began.elapsed();
        let measured = began >= measured_from;
        match answer {
            Ok(Ok((status, body))) => {
                if measured {
                    tally.record(latency);
                    *tally.statuses.entry(status.as_u16()).or_default() += 1;
                    tally.last_answer = Some(Instant::now());
                }
                prepared.answered(&mut state, status, &body).await;
            }
            Ok(Err(_)) | Err(_) => {
                if measured {
                    tally.errors += 1;
                }
                // The server closed the connection (or never answered): a new one, after
                // a pause so that a server that is down is not spun against.
                tokio::time::sleep(Duration::from_millis(10)).await;
                if let Ok(fresh) = Connection::open(addr).await {
                    connection = fresh;
                }
            }
        }
    }
    tally
}
