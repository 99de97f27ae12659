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
    key: sessiond_server::config::SecretText,
}

impl Client {
    /// A client for `base`, with the API key of `config` (`SESSIOND_API_KEY[_FILE]`).
    pub fn new(base: &str, ca_cert: Option<&Path>, config: &Config) -> anyhow::Result<Self> {
        let key = config
            .api_key
            .clone()
            .context("--server needs an API key: set SESSIOND_API_KEY or SESSIOND_API_KEY_FILE")?;
        check_transport(base)?;
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
            .bearer_auth(self.key.expose())
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

/// Refuses a plain `http://` server that is not on this machine: the API key would cross the
/// network in clear text (the server refuses the same exposure on its side unless it sits
/// behind a TLS proxy, which a client then reaches over `https://`).
fn check_transport(base: &str) -> anyhow::Result<()> {
    let url = reqwest::Url::parse(base).with_context(|| "--server must be a URL such as https://host:7420")?;
    let host = url.host_str().unwrap_or_default();
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    match url.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        "http" => bail!(
            "refusing to send the API key in clear text to {}: use https:// (and --ca-cert for a private CA), or http:// on a loopback address only",
            url.host_str().unwrap_or_default()
        ),
        other => bail!("--server must be an http:// or https:// URL, not {other}://"),
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

#[cfg(test)]
mod tests {
    use super::check_transport;

    #[test]
    fn the_api_key_never_goes_to_a_remote_server_in_clear_text() {
        for ok in
            ["https://sessiond.example:7420", "http://127.0.0.1:7420", "http://localhost:7420/", "http://[::1]:7420"]
        {
            assert!(check_transport(ok).is_ok(), "{ok}");
        }
        for refused in
            ["http://10.0.0.5:7420", "http://sessiond.example", "http://127.0.0.1.example.com", "ftp://127.0.0.1"]
        {
            let e = check_transport(refused).expect_err(refused).to_string();
            assert!(!e.is_empty(), "{refused}");
        }
        assert!(check_transport("not a url").is_err());
    }
}
