#![allow(missing_docs)] // criterion_group! generates undocumented items
//! The middleware in-process against tower-sessions (the crate, with its `MemoryStore`) on
//! the same axum app and the same request mix: 9 reads of a typed value for every write, over
//! 1,000 logged-in sessions, driven with `oneshot` (no sockets).
//!
//! Run: `cargo bench -p sessiond-tower --bench vs_tower_sessions`
//!
//! sessiond does more per request than tower-sessions — a keyed tag check, a token hash,
//! deadline/epoch/binding checks, and a CSRF synchronizer check on the write — so the ratio is
//! the price of the secure lifecycle, measured.

use axum::body::Body;
use axum::http::{Method, Request};
use axum::routing::{get, post};
use axum::Router;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tower::ServiceExt as _;

const SESSIONS: usize = 1000;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime")
}

/// One logged-in client: the `Cookie` header and, for sessiond, the CSRF token.
struct Client {
    cookie: String,
    csrf: String,
}

fn requests(clients: &[Client], i: usize) -> Request<Body> {
    let c = &clients[i % clients.len()];
    let b = if i % 10 == 9 { Request::builder().method(Method::POST).uri("/incr") } else { Request::get("/read") };
    b.header("cookie", &c.cookie).header("x-csrf-token", &c.csrf).body(Body::empty()).expect("request")
}

fn sessiond_app(rt: &tokio::runtime::Runtime) -> (Router, Vec<Client>) {
    use sessiond_tower::testkit::TestKit;
    use sessiond_tower::Session;
    let kit = TestKit::new();
    let app = Router::new()
        .route("/read", get(|s: Session| async move { s.get::<u64>("n").ok().flatten().unwrap_or(0).to_string() }))
        .route(
            "/incr",
            post(|s: Session| async move {
                let n = s.get::<u64>("n").ok().flatten().unwrap_or(0) + 1;
                s.insert("n", &n).map(|_| n.to_string()).unwrap_or_default()
            }),
        )
        .layer(kit.layer());
    let clients = rt.block_on(async {
        let mut out = Vec::new();
        for i in 0..SESSIONS {
            let s = kit.seed(&format!("user-{i}")).await.expect("seed");
            out.push(Client { cookie: s.cookie_header(), csrf: s.csrf_token.clone() });
        }
        out
    });
    (app, clients)
}

fn tower_sessions_app(rt: &tokio::runtime::Runtime) -> (Router, Vec<Client>) {
    use tower_sessions::{MemoryStore, Session, SessionManagerLayer};
    let layer = SessionManagerLayer::new(MemoryStore::default()).with_secure(false);
    let app = Router::new()
        .route(
            "/login",
            post(|s: Session| async move {
                s.insert("n", 0u64).await.expect("insert");
            }),
        )
        .route(
            "/read",
            get(|s: Session| async move { s.get::<u64>("n").await.ok().flatten().unwrap_or(0).to_string() }),
        )
        .route(
            "/incr",
            post(|s: Session| async move {
                let n = s.get::<u64>("n").await.ok().flatten().unwrap_or(0) + 1;
                s.insert("n", n).await.map(|_| n.to_string()).unwrap_or_default()
            }),
        )
        .layer(layer);
    let clients = rt.block_on(async {
        let mut out = Vec::new();
        for _ in 0..SESSIONS {
            let res = app
                .clone()
                .oneshot(Request::builder().method(Method::POST).uri("/login").body(Body::empty()).expect("req"))
                .await
                .expect("login");
            let set = res.headers().get("set-cookie").expect("cookie").to_str().expect("ascii");
            let cookie = set.split(';').next().expect("pair").to_owned();
            out.push(Client { cookie, csrf: String::new() });
        }
        out
    });
    (app, clients)
}

fn bench(c: &mut Criterion) {
    let rt = rt();
    let mut g = c.benchmark_group("middleware_9_reads_1_write");
    g.throughput(Throughput::Elements(1));
    for (name, (app, clients)) in
        [("sessiond_tower_in_process", sessiond_app(&rt)), ("tower_sessions_memory_store", tower_sessions_app(&rt))]
    {
        // Sanity: a read with a session answers 200 in both apps.
        let ok = rt.block_on(app.clone().oneshot(requests(&clients, 0))).expect("call").status();
        assert_eq!(ok, 200, "{name}");
        let mut i = 0usize;
        g.bench_function(name, |b| {
            b.iter(|| {
                i += 1;
                let res = rt.block_on(app.clone().oneshot(requests(&clients, i))).expect("call");
                debug_assert!(res.status().is_success());
                res.status()
            })
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(std::time::Duration::from_secs(4)).warm_up_time(std::time::Duration::from_secs(1));
    targets = bench
}
criterion_main!(benches);
