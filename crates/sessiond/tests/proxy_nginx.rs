//! Real nginx (`auth_request`) in front of the demo application and sessiond, with the
//! configuration files of `examples/nginx/` included as they are. Plain HTTP on loopback with
//! sessiond in `--dev` mode (cookie `sid`); the TLS + `__Host-sid` setup is in `browser.rs`.
//!
//! Needs Debian's `nginx` (`scripts/ensure-tools.sh`) and the demo application example
//! (`cargo test -p sessiond` builds it). Skipped when nginx is missing, unless
//! `SESSIOND_REQUIRE_TOOLS` is set.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

mod proxy_support;

use proxy_support::Stack;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_login_reaches_protected_page() {
    let Some(s) = Stack::nginx() else { return };
    proxy_support::login_reaches_protected_page(&s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_refuses_forged_and_expired_cookies() {
    let Some(s) = Stack::nginx() else { return };
    proxy_support::bad_cookies_are_refused(&s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_logout_then_replay_is_refused() {
    let Some(s) = Stack::nginx() else { return };
    proxy_support::logout_then_replay_is_refused(&s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_strips_client_sent_session_headers() {
    let Some(s) = Stack::nginx() else { return };
    proxy_support::client_session_headers_are_ignored(&s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_step_up_redirects_to_elevate() {
    let Some(s) = Stack::nginx() else { return };
    proxy_support::step_up_redirects_to_elevate(&s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_passes_rotated_cookie_to_browser() {
    let Some(s) = Stack::nginx() else { return };
    proxy_support::rotated_cookie_reaches_the_browser(&s).await;
}
