//! Live feeds under load (§16): many followers of one collection while
//! it is written to, against a running server (see `bench/live.sh`).
//!
//! 1. Opens SUBSCRIBERS streams on `GET /v1/books` (`Accept:
//!    text/event-stream`), each its own connection, and reports the
//!    server's RSS before and after (KiB per idle follower).
//! 2. POSTs WRITES_PER_SECOND books for SECONDS, each stamped with the
//!    time its request was sent; every follower notes when each
//!    `created` event arrives: delay from the write's send to the event
//!    (an upper bound of commit → event), p50 and p99 over all followers,
//!    and events missing or repeated; the server's CPU over the phase,
//!    and this client's own (it shares the machine).
//!
//! With `LIVE_WRK_URL` set, wrk loads that URL (`-t1 -c32`) during the
//! write phase and its requests/s are printed: run once with 0 followers
//! and once with many to see what following costs the other requests.
//!
//! Talks only to ADDR (127.0.0.1). Reads the server's /proc entry.
//!
//! Usage: cargo run --release --example live_fanout ADDR SERVER_PID
//!        [SUBSCRIBERS] [WRITES_PER_SECOND] [SECONDS]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Resident memory and CPU ticks (user + system) of `pid`.
fn proc_stats(pid: u32) -> (f64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss_kib = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0);
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command's closing parenthesis: utime is the 14th
    // field of the line, stime the 15th.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    (rss_kib, ticks)
}

/// When each write was sent, by the id its answer gave.
type Sent = Arc<Mutex<HashMap<i64, Instant>>>;

/// Follows the feed until `stop`; records each created event's delay.
async fn follow(
    addr: SocketAddr,
    sent: Sent,
    delays: Arc<Mutex<Vec<f64>>>,
    seen: Arc<Mutex<HashMap<i64, u32>>>,
    ready: tokio::sync::mpsc::Sender<()>,
) {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(
        format!("GET /v1/books HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line).await.unwrap();
    assert!(line.contains(" 200 "), "feed refused: {line}");
    loop {
        line.clear();
        r.read_line(&mut line).await.unwrap();
        if line == "\r\n" {
            break;
        }
    }
    let _ = ready.send(()).await;
    let mut kind = String::new();
    loop {
        line.clear();
        // Chunked transfer: chunk sizes and payload lines interleave;
        // frames' own lines are recognised by their field names.
        match r.read_line(&mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let l = line.trim_end();
        if let Some(k) = l.strip_prefix("event: ") {
            kind = k.to_string();
        } else if let Some(data) = l.strip_prefix("data: ") {
            if kind == "created" {
                let v: serde_json::Value = serde_json::from_str(data).unwrap_or_default();
                if let Some(id) = v["id"].as_i64() {
                    let at = sent.lock().unwrap().get(&id).copied();
                    if let Some(at) = at {
                        delays
                            .lock()
                            .unwrap()
                            .push(at.elapsed().as_secs_f64() * 1e3);
                    }
                    *seen.lock().unwrap().entry(id).or_default() += 1;
                }
            }
        }
    }
}

/// POSTs one book over `s` (keep-alive) and returns its id.
async fn post(s: &mut TcpStream, addr: SocketAddr, n: u64) -> Option<i64> {
    let body = format!(r#"{{"title":"live {n}","author":"Fan Out","year":2001}}"#);
    s.write_all(
        format!(
            "POST /v1/books HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    )
    .await
    .ok()?;
    // Read the head, then the body by Content-Length.
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut b).await.ok()?;
        head.push(b[0]);
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).await.ok()?;
    let v: serde_json::Value = serde_json::from_slice(&body).ok()?;
    v["id"].as_i64()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let addr: SocketAddr = args.get(1).expect("ADDR").parse().unwrap();
    let pid: u32 = args.get(2).expect("SERVER_PID").parse().unwrap();
    let subscribers: usize = args.get(3).and_then(|v| v.parse().ok()).unwrap_or(1000);
    let rate: u64 = args.get(4).and_then(|v| v.parse().ok()).unwrap_or(100);
    let seconds: u64 = args.get(5).and_then(|v| v.parse().ok()).unwrap_or(10);

    let sent: Sent = Arc::default();
    let delays = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::new(Mutex::new(HashMap::new()));
    let (rss_before, _) = proc_stats(pid);
    let (ready_tx, mut ready) = tokio::sync::mpsc::channel(subscribers.max(1));
    let mut followers = Vec::new();
    for _ in 0..subscribers {
        followers.push(tokio::spawn(follow(
            addr,
            sent.clone(),
            delays.clone(),
            seen.clone(),
            ready_tx.clone(),
        )));
    }
    for _ in 0..subscribers {
        ready.recv().await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (rss_idle, _) = proc_stats(pid);
    println!(
        "followers: {subscribers} open; server RSS {:.1} MiB -> {:.1} MiB ({:.1} KiB per idle follower)",
        rss_before / 1024.0,
        rss_idle / 1024.0,
        (rss_idle - rss_before) / subscribers.max(1) as f64
    );

    let load = std::env::var("LIVE_WRK_URL").ok().map(|url| {
        std::process::Command::new("wrk")
            .args(["-t1", "-c32", &format!("-d{}s", seconds.max(2) - 1), &url])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("wrk")
    });
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.set_nodelay(true).unwrap();
    let (_, ticks_before) = proc_stats(pid);
    let (_, own_before) = proc_stats(std::process::id());
    let started = Instant::now();
    let mut written = Vec::new();
    let every = Duration::from_secs_f64(1.0 / rate.max(1) as f64);
    let mut next = tokio::time::Instant::now();
    if rate == 0 {
        // Idle followers: only the load runs.
        tokio::time::sleep(Duration::from_secs(seconds)).await;
    }
    for n in 0..rate * seconds {
        next += every;
        tokio::time::sleep_until(next).await;
        let at = Instant::now();
        // The id is known only from the answer: note the send time under
        // a placeholder and move it to the id (an event that comes before
        // the answer waits for it: a follower looks the id up again).
        if let Some(id) = post(&mut s, addr, n).await {
            sent.lock().unwrap().insert(id, at);
            written.push(id);
        }
    }
    let wall = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (_, ticks_after) = proc_stats(pid);
    let (_, own_after) = proc_stats(std::process::id());
    let (rss_end, _) = proc_stats(pid);
    let hz = 100.0; // USER_HZ on Linux
    let cpu = (ticks_after - ticks_before) as f64 / hz / (wall + 2.0) * 100.0;
    // The followers' and writer's own share of the same cores.
    let own = (own_after - own_before) as f64 / hz / (wall + 2.0) * 100.0;
    let mut d = delays.lock().unwrap().clone();
    d.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let seen = seen.lock().unwrap();
    let expected = written.len() * subscribers;
    let got: u64 = written
        .iter()
        .map(|id| u64::from(*seen.get(id).unwrap_or(&0)))
        .sum();
    let repeated = seen.values().filter(|n| **n as usize > subscribers).count();
    println!(
        "writes: {} at {rate}/s over {wall:.1} s; events {got} of {expected} ({} timed), {repeated} ids seen more than once per follower",
        written.len(),
        d.len()
    );
    println!(
        "delay write sent -> event: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        percentile(&d, 0.5),
        percentile(&d, 0.99),
        d.last().copied().unwrap_or(f64::NAN)
    );
    println!(
        "server CPU {cpu:.0}% of one core over the write phase (this load client: {own:.0}%); RSS at the end {:.1} MiB",
        rss_end / 1024.0
    );
    if let Some(load) = load {
        let out = load.wait_with_output().expect("wrk");
        let text = String::from_utf8_lossy(&out.stdout);
        let rps = text
            .lines()
            .find(|l| l.starts_with("Requests/sec"))
            .and_then(|l| l.split_whitespace().nth(1))
            .unwrap_or("?");
        println!("meanwhile: {rps} requests/s on the load URL");
    }
    for f in followers {
        f.abort();
    }
}
