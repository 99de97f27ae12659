//! [`Remote`]: a sessiond server, over its v1 HTTP API.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::{HeaderValue, IF_MATCH};
use reqwest::{Client, RequestBuilder, StatusCode, Url};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sessiond_core::time::UnixMs;
use sessiond_core::SessionId;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::{ClientInfo, Issued, IssuedToken, Login, Resolved, SecretToken, SessionBackend, SessionInfo};
use crate::error::{Error, Result};

/// Default timeout of one call to the server.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// The remote backend: every call goes to a sessiond server's v1 API
/// (`POST /v1/sessions`, `POST /v1/sessions/resolve`, `POST /v1/sessions/{id}/elevate`,
/// `POST /v1/logout`, `PUT`/`DELETE /v1/sessions/{id}/data/{key}` with `If-Match`),
/// authenticated with a service API key (`Authorization: Bearer sdk_…`).
///
/// The CSRF token is the one the server returned with the session; it is compared in
/// constant time. The server's time (derived from its answers) is used for step-up age
/// checks, so clock skew between the application and the server does not matter.
///
/// The HTTP client is reqwest with rustls and no default features: no platform root
/// certificates are built in. For a server behind a public CA or a private one, build a
/// client with [`reqwest::ClientBuilder::add_root_certificate`] and pass it to
/// [`Remote::with_client`].
#[derive(Clone)]
pub struct Remote {
    client: Client,
    base: Url,
    api_key: Arc<Zeroizing<String>>,
}

impl fmt::Debug for Remote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Remote").field("base", &self.base.as_str()).field("api_key", &"<redacted>").finish()
    }
}

impl Remote {
    /// A backend calling the server at `base_url` with `api_key`, with a
    /// [`DEFAULT_TIMEOUT`](crate::backend::DEFAULT_TIMEOUT) per call.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a base URL that is not `http(s)://…`; [`Error::Remote`]
    /// when the HTTP client cannot be built.
    pub fn new(base_url: &str, api_key: impl Into<String>) -> Result<Self> {
        let client = Client::builder()
            .timeout(DEFAULT_TIMEOUT)
            .connect_timeout(Duration::from_secs(2))
            .build()
            .map_err(|e| Error::Remote(format!("cannot build the HTTP client: {e}")))?;
        let base =
            Url::parse(base_url).map_err(|_| Error::InvalidInput("the sessiond base URL is not a URL".into()))?;
        if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
            return Err(Error::InvalidInput("the sessiond base URL must be http(s)://host[:port][/path]".into()));
        }
        Ok(Self { client, base, api_key: Arc::new(Zeroizing::new(api_key.into())) })
    }

    /// Uses `client` (root certificates, proxy, timeouts of your choice).
    #[must_use]
    pub fn with_client(mut self, client: Client) -> Self {
        self.client = client;
        self
    }

    /// The server's base URL.
    pub fn base_url(&self) -> &Url {
        &self.base
    }

    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    fn service(&self, rb: RequestBuilder) -> RequestBuilder {
        rb.bearer_auth(self.api_key.as_str())
    }

    async fn call<T: DeserializeOwned>(&self, rb: RequestBuilder) -> Result<T> {
        let res = rb.send().await.map_err(|e| Error::Unavailable(Some(Box::new(e.without_url()))))?;
        let status = res.status();
        if status.is_success() {
            return res.json::<T>().await.map_err(|e| Error::Remote(format!("unreadable answer: {}", e.without_url())));
        }
        let body = res.bytes().await.unwrap_or_default();
        Err(problem_error(status, &body))
    }
}

#[derive(Deserialize)]
struct Problem {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    detail: String,
    current_revision: Option<u64>,
    min_aal: Option<u8>,
    max_auth_age: Option<u64>,
}

/// Maps a server error to this crate's error, by the problem's stable `type`.
fn problem_error(status: StatusCode, body: &[u8]) -> Error {
    let p: Option<Problem> = serde_json::from_slice(body).ok();
    let slug = p.as_ref().and_then(|p| p.kind.rsplit('/').next()).unwrap_or("");
    match slug {
        "invalid-token" | "session-expired" | "session-revoked" | "not-found" | "token-mismatch" => {
            Error::Unauthenticated
        }
        "conflict" => Error::Conflict { current: p.as_ref().and_then(|p| p.current_revision) },
        "limit-reached" => Error::LimitReached,
        "step-up-required" => Error::StepUpRequired(sessiond_core::error::StepUp {
            min_aal: p.as_ref().and_then(|p| p.min_aal).unwrap_or(0),
            max_auth_age: p.as_ref().and_then(|p| p.max_auth_age).map(Duration::from_secs),
        }),
        // The server's detail for input errors is fixed, client-safe text.
        "malformed-request" | "unknown-policy" => {
            let mut d = p.map(|p| p.detail).unwrap_or_default();
            truncate(&mut d, 300);
            Error::InvalidInput(d.into())
        }
        "unauthorized-client" => Error::Remote("the sessiond server refused the API key".into()),
        "store-unavailable" => Error::Unavailable(None),
        _ if status.is_server_error() => Error::Unavailable(None),
        _ => Error::Remote(format!("status {status}, problem type {slug:?}")),
    }
}

fn truncate(s: &mut String, max: usize) {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
}

// ---- wire shapes (mirroring sessiond-server's `api` module; unknown fields are ignored) ----

#[derive(Deserialize)]
struct View {
    id: SessionId,
    subject: String,
    #[serde(default)]
    tenant: String,
    policy: String,
    created_at: u64,
    idle_expires_at: u64,
    absolute_expires_at: u64,
    auth_time: u64,
    aal: u8,
    #[serde(default)]
    amr: Vec<String>,
    #[serde(default)]
    data: BTreeMap<String, serde_json::Value>,
    revision: u64,
}

impl View {
    fn into_info(self, aal: u8, csrf_token: String, as_of: UnixMs) -> SessionInfo {
        SessionInfo {
            id: self.id,
            subject: self.subject,
            tenant: self.tenant,
            policy: self.policy,
            aal,
            amr: self.amr,
            auth_time: UnixMs(self.auth_time),
            created_at: UnixMs(self.created_at),
            idle_expires_at: UnixMs(self.idle_expires_at),
            absolute_expires_at: UnixMs(self.absolute_expires_at),
            data: self.data,
            revision: self.revision,
            csrf_token,
            as_of,
        }
    }

    /// The server's time when it answered, from the deadline and the seconds left until it.
    fn server_now(&self, expires_in: u64) -> UnixMs {
        UnixMs(self.idle_expires_at.min(self.absolute_expires_at).saturating_sub(expires_in.saturating_mul(1000)))
    }
}

#[derive(Serialize)]
struct ResolveBody<'a> {
    token: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_agent: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ip: Option<String>,
}

#[derive(Deserialize)]
struct ResolveAnswer {
    session: View,
    expires_in: u64,
    aal: u8,
    csrf_token: String,
    token: Option<String>,
    set_cookie: Option<String>,
}

#[derive(Serialize)]
struct CreateBody<'a> {
    subject: &'a str,
    tenant: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    policy: Option<&'a str>,
    aal: u8,
    amr: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    user_agent: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ip: Option<String>,
    data: &'a BTreeMap<String, serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    previous_token: Option<&'a str>,
}

#[derive(Deserialize)]
struct CreatedAnswer {
    token: String,
    session: View,
    csrf_token: String,
    set_cookie: String,
    expires_in: u64,
}

#[derive(Serialize)]
struct ElevateBody<'a> {
    token: &'a str,
    aal: u8,
    amr: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    user_agent: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ip: Option<String>,
}

#[derive(Deserialize)]
struct RotatedAnswer {
    token: String,
    session: View,
    csrf_token: String,
    set_cookie: String,
}

#[derive(Deserialize)]
struct RevisionAnswer {
    revision: u64,
}

/// `Max-Age` of the server's ready `Set-Cookie` value: present only for persistent policies.
fn max_age(set_cookie: &str) -> Option<Duration> {
    set_cookie
        .split(';')
        .filter_map(|a| a.trim().split_once('='))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("max-age"))
        .and_then(|(_, v)| v.trim().parse().ok())
        .map(Duration::from_secs)
}

fn issued(token: String, set_cookie: Option<&str>) -> IssuedToken {
    IssuedToken { token: SecretToken::new(token), max_age: set_cookie.and_then(max_age) }
}

#[async_trait]
impl SessionBackend for Remote {
    async fn resolve(&self, token: &str, client: &ClientInfo) -> Result<Resolved> {
        let body =
            ResolveBody { token, user_agent: client.user_agent.as_deref(), ip: client.ip.map(|i| i.to_string()) };
        let rb = self.service(self.client.post(self.url(&["v1", "sessions", "resolve"]))).json(&body);
        let a: ResolveAnswer = self.call(rb).await?;
        let now = a.session.server_now(a.expires_in);
        let rotated = a.token.map(|t| issued(t, a.set_cookie.as_deref()));
        Ok(Resolved { session: a.session.into_info(a.aal, a.csrf_token, now), rotated })
    }

    async fn create(&self, login: Login, previous_token: Option<&str>, client: &ClientInfo) -> Result<Issued> {
        let body = CreateBody {
            subject: &login.subject,
            tenant: &login.tenant,
            policy: login.policy.as_deref(),
            aal: login.aal,
            amr: &login.amr,
            user_agent: client.user_agent.as_deref(),
            ip: client.ip.map(|i| i.to_string()),
            data: &login.data,
            previous_token,
        };
        let rb = self.service(self.client.post(self.url(&["v1", "sessions"]))).json(&body);
        let a: CreatedAnswer = self.call(rb).await?;
        let now = a.session.server_now(a.expires_in);
        let aal = a.session.aal;
        Ok(Issued { token: issued(a.token, Some(&a.set_cookie)), session: a.session.into_info(aal, a.csrf_token, now) })
    }

    async fn elevate(
        &self,
        session: &SessionInfo,
        token: &str,
        aal: u8,
        amr: Vec<String>,
        client: &ClientInfo,
    ) -> Result<Issued> {
        let body = ElevateBody {
            token,
            aal,
            amr: &amr,
            user_agent: client.user_agent.as_deref(),
            ip: client.ip.map(|i| i.to_string()),
        };
        let id = session.id.to_string();
        let rb = self.service(self.client.post(self.url(&["v1", "sessions", &id, "elevate"]))).json(&body);
        let a: RotatedAnswer = self.call(rb).await?;
        // Elevation sets `auth_time` to the server's now.
        let now = UnixMs(a.session.auth_time);
        let aal = a.session.aal;
        Ok(Issued { token: issued(a.token, Some(&a.set_cookie)), session: a.session.into_info(aal, a.csrf_token, now) })
    }

    async fn logout(&self, token: &str) -> Result<()> {
        // Browser logout authenticates with the session token itself, not the API key.
        let rb = self.client.post(self.url(&["v1", "logout"])).bearer_auth(token);
        let res = rb.send().await.map_err(|e| Error::Unavailable(Some(Box::new(e.without_url()))))?;
        let status = res.status();
        if status.is_success() {
            return Ok(());
        }
        let body = res.bytes().await.unwrap_or_default();
        match problem_error(status, &body) {
            Error::Unauthenticated => Ok(()),
            e => Err(e),
        }
    }

    async fn write_data(
        &self,
        id: &SessionId,
        key: &str,
        value: Option<serde_json::Value>,
        expected_revision: Option<u64>,
    ) -> Result<u64> {
        let id = id.to_string();
        let url = self.url(&["v1", "sessions", &id, "data", key]);
        let mut rb = match &value {
            Some(v) => self.client.put(url).json(v),
            None => self.client.delete(url),
        };
        if let Some(rev) = expected_revision {
            if let Ok(v) = HeaderValue::from_str(&format!("\"{rev}\"")) {
                rb = rb.header(IF_MATCH, v);
            }
        }
        let a: RevisionAnswer = self.call(self.service(rb)).await?;
        Ok(a.revision)
    }

    fn verify_csrf(&self, session: &SessionInfo, presented: &str) -> bool {
        !session.csrf_token.is_empty() && bool::from(session.csrf_token.as_bytes().ct_eq(presented.as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_map_by_type() {
        let p = |slug: &str, extra: &str| {
            format!(r#"{{"type":"https://sessiond.dev/problems/{slug}","status":400,"detail":"d"{extra}}}"#)
        };
        let e =
            |status: u16, body: String| problem_error(StatusCode::from_u16(status).expect("status"), body.as_bytes());
        assert!(matches!(e(401, p("invalid-token", "")), Error::Unauthenticated));
        assert!(matches!(e(401, p("unauthorized-client", "")), Error::Remote(_)));
        assert!(matches!(e(409, p("conflict", r#","current_revision":7"#)), Error::Conflict { current: Some(7) }));
        assert!(matches!(
            e(403, p("step-up-required", r#","min_aal":2,"max_auth_age":600"#)),
            Error::StepUpRequired(s) if s.min_aal == 2 && s.max_auth_age == Some(Duration::from_secs(600))
        ));
        assert!(matches!(e(503, p("store-unavailable", "")), Error::Unavailable(_)));
        assert!(matches!(e(502, "not json".into()), Error::Unavailable(_)));
        assert!(matches!(e(418, "not json".into()), Error::Remote(_)));
    }

    #[test]
    fn max_age_only_when_persistent() {
        assert_eq!(max_age("sid=x; Path=/; HttpOnly; SameSite=Lax"), None);
        assert_eq!(max_age("sid=x; Path=/; HttpOnly; SameSite=Lax; Max-Age=60"), Some(Duration::from_secs(60)));
    }

    #[test]
    fn urls_escape_segments_and_keep_a_base_path() {
        let r = Remote::new("http://127.0.0.1:1/prefix/", "k").expect("remote");
        assert_eq!(r.url(&["v1", "sessions", "a/b c"]).as_str(), "http://127.0.0.1:1/prefix/v1/sessions/a%2Fb%20c");
        assert!(Remote::new("ftp://x", "k").is_err());
        assert!(format!("{r:?}").contains("redacted"));
    }
}
