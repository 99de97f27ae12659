//! Operator commands against a running server (`--server URL`).

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context as _};
use reqwest::Method;
use sessiond_server::config::Config;

use crate::cli::{Command, EventsCmd, SessionsCmd, SubjectsCmd};

/// An HTTP client carrying the service API key.
pub struct Client {
    http: reqwest::Client,
    base: String,
    key: String,
}

impl Client {
    /// A client for `base`, with the API key of `config` (`SESSIOND_API_KEY[_FILE]`).
    pub fn new(base: &str, ca_cert: Option<&Path>, config: &Config) -> anyhow::Result<Self> {
        let key = config
            .api_key
            .clone()
            .context("--server needs an API key: set SESSIOND_API_KEY or SESSIOND_API_KEY_FILE")?;
        let mut b = reqwest::Client::builder().timeout(Duration::from_secs(30)).tls_built_in_root_certs(false);
        if let Some(p) = ca_cert {
            let pem = std::fs::read(p).with_context(|| format!("cannot read {}", p.display()))?;
            b = b.add_root_certificate(reqwest::Certificate::from_pem(&pem).context("invalid CA certificate")?);
        }
        Ok(Self { http: b.build()?, base: base.trim_end_matches('/').to_owned(), key })
    }

    async fn call(&self, method: Method, path: &str, query: &[(&str, String)]) -> anyhow::Result<serde_json::Value> {
        let res = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.key)
            .query(query)
            .send()
            .await
            .with_context(|| format!("cannot reach {}", self.base))?;
        let status = res.status();
        let body = res.bytes().await?;
        if !status.is_success() {
            let detail = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.get("detail").and_then(|d| d.as_str()).map(str::to_owned))
                .unwrap_or_default();
            bail!("server answered {status}: {detail}");
        }
        if body.is_empty() {
            return Ok(serde_json::Value::Null);
        }
        Ok(serde_json::from_slice(&body)?)
    }
}

fn seg(s: &str) -> String {
    // Percent-encode a path segment (subjects may hold any printable text).
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn print(v: &serde_json::Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// Runs an operator command through the HTTP API.
pub async fn run(c: &Client, cmd: &Command) -> anyhow::Result<()> {
    match cmd {
        Command::Sessions(SessionsCmd::List { subject, tenant, limit, cursor }) => {
            let mut q = vec![("tenant", tenant.clone()), ("limit", limit.to_string())];
            if let Some(cur) = cursor {
                q.push(("cursor", cur.clone()));
            }
            print(&c.call(Method::GET, &format!("/v1/subjects/{}/sessions", seg(subject)), &q).await?)
        }
        Command::Sessions(SessionsCmd::Show { id }) => {
            print(&c.call(Method::GET, &format!("/v1/sessions/{}", seg(id)), &[]).await?)
        }
        Command::Sessions(SessionsCmd::Revoke { id }) => {
            c.call(Method::DELETE, &format!("/v1/sessions/{}", seg(id)), &[]).await?;
            println!("revoked {id}");
            Ok(())
        }
        Command::Subjects(SubjectsCmd::Revoke { subject, tenant, except }) => {
            let mut q = vec![("tenant", tenant.clone())];
            if let Some(e) = except {
                q.push(("except", e.clone()));
            }
            print(&c.call(Method::DELETE, &format!("/v1/subjects/{}/sessions", seg(subject)), &q).await?)
        }
        Command::Subjects(SubjectsCmd::BumpEpoch { subject, tenant }) => print(
            &c.call(Method::POST, &format!("/v1/subjects/{}/epoch", seg(subject)), &[("tenant", tenant.clone())])
                .await?,
        ),
        Command::Events(EventsCmd::Tail { after, follow }) => {
            let mut cursor = *after;
            loop {
                let page = c
                    .call(Method::GET, "/v1/events", &[("after", cursor.to_string()), ("limit", "1000".into())])
                    .await?;
                let events = page.get("events").and_then(|e| e.as_array()).cloned().unwrap_or_default();
                for e in &events {
                    println!("{e}");
                }
                cursor = page.get("next_cursor").and_then(serde_json::Value::as_u64).unwrap_or(cursor);
                if events.is_empty() {
                    if !*follow {
                        return Ok(());
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
        Command::Export { .. } | Command::Import { .. } => {
            bail!("export and import work on the data directory: stop the server and run them without --server")
        }
        _ => bail!("this command does not take --server"),
    }
}
