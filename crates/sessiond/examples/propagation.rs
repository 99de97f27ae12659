//! Revocation propagation between two running `sessiond` nodes over one shared store.
//!
//! For each round: create a session on node A, resolve it twice on node B (so B's near-cache
//! holds it), revoke it on A, then poll B's `GET /v1/auth` back to back until it answers 401.
//! The delay is measured from the moment A's `DELETE` returned. Prints p50/p90/p99/max.
//!
//! ```sh
//! cargo run --release -p sessiond --example propagation -- http://127.0.0.1:7560 http://127.0.0.1:7561 "$KEY" 1000
//! ```
//! (`bench/distributed.sh` starts the nodes and runs it.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)] // measures wall time

use std::time::{Duration, Instant};

use serde_json::{json, Value};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        eprintln!("usage: propagation NODE_A_URL NODE_B_URL API_KEY [ROUNDS]");
        std::process::exit(2);
    }
    let (a, b, key) = (args[1].trim_end_matches('/'), args[2].trim_end_matches('/'), args[3].as_str());
    let rounds: usize = args.get(4).and_then(|r| r.parse().ok()).unwrap_or(1000);
    let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().expect("client");
    let auth = |token: String| {
        let http = http.clone();
        let url = format!("{b}/v1/auth");
        async move { http.get(url).bearer_auth(token).send().await.map(|r| r.status().as_u16()).unwrap_or(0) }
    };

    let mut delays = Vec::with_capacity(rounds);
    let mut polls = 0u64;
    let mut still_accepted_after_100ms = 0usize;
    for i in 0..rounds {
        let r = http
            .post(format!("{a}/v1/sessions"))
            .bearer_auth(key)
            .json(&json!({ "subject": format!("propagation-{}", i % 50) }))
            .send()
            .await
            .expect("create on A");
        assert_eq!(r.status().as_u16(), 201, "create on A");
        let body: Value = r.json().await.expect("json");
        let token = body["token"].as_str().expect("token").to_owned();
        let id = body["session"]["id"].as_str().expect("id").to_owned();
        for _ in 0..2 {
            assert_eq!(auth(token.clone()).await, 200, "warm B's cache");
        }
        let r = http.delete(format!("{a}/v1/sessions/{id}")).bearer_auth(key).send().await.expect("revoke on A");
        assert_eq!(r.status().as_u16(), 204, "revoke on A");
        let t = Instant::now();
        loop {
            polls += 1;
            match auth(token.clone()).await {
                401 => break,
                200 => {}
                other => panic!("B answered {other}"),
            }
            assert!(t.elapsed() < Duration::from_secs(5), "B still accepts a session revoked 5 s ago");
        }
        let d = t.elapsed();
        if d > Duration::from_millis(100) {
            still_accepted_after_100ms += 1;
        }
        delays.push(d);
    }
    delays.sort();
    let q = |p: f64| delays[((delays.len() as f64 - 1.0) * p).round() as usize];
    let ms = |d: Duration| format!("{:.2} ms", d.as_secs_f64() * 1000.0);
    println!(
        "revocation propagation A -> B over {rounds} revocations: p50 {} | p90 {} | p99 {} | max {} | \
         {:.2} polls of B per revocation | {still_accepted_after_100ms} over 100 ms",
        ms(q(0.5)),
        ms(q(0.9)),
        ms(q(0.99)),
        ms(q(1.0)),
        polls as f64 / rounds as f64
    );
}
