//! [`SessionConfig`]: the cookie and the CSRF defences, with secure defaults.

use std::borrow::Cow;
use std::time::Duration;

use axum::http::header::COOKIE;
use axum::http::HeaderMap;

use crate::error::{Error, Result};

/// The production cookie name: the `__Host-` prefix makes browsers refuse the cookie unless it
/// is `Secure`, has `Path=/` and no `Domain`, so no sibling subdomain can plant or shadow it.
pub const HOST_COOKIE: &str = "__Host-sid";
/// The development-mode cookie name (plain HTTP on localhost; no `Secure`, so no `__Host-`).
pub const DEV_COOKIE: &str = "sid";
/// The request header carrying the CSRF synchronizer token.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// The response header carrying a rotated token to a bearer-authenticated client.
pub const TOKEN_HEADER: &str = "x-session-token";

/// How the layer names and protects the session cookie, and which origins may make
/// cookie-authenticated state changes.
///
/// # Examples
/// ```
/// use sessiond_tower::SessionConfig;
/// let prod = SessionConfig::default();
/// assert_eq!(prod.cookie_name(), "__Host-sid");
/// assert!(prod.secure());
/// let dev = SessionConfig::development();
/// assert_eq!(dev.cookie_name(), "sid");
/// assert!(!dev.secure());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionConfig {
    name: Cow<'static, str>,
    secure: bool,
    allowed_origins: Vec<String>,
    cross_site_login: bool,
}

impl Default for SessionConfig {
    /// [`SessionConfig::production`].
    fn default() -> Self {
        Self::production()
    }
}

impl SessionConfig {
    /// The production cookie: `__Host-sid=…; Path=/; Secure; HttpOnly; SameSite=Lax`, no
    /// `Domain`, no `Max-Age` unless the policy is persistent (OWASP Session Management Cheat
    /// Sheet "Cookies"; ASVS V3.4). `Origin` must match the request's `Host`.
    pub fn production() -> Self {
        Self { name: Cow::Borrowed(HOST_COOKIE), secure: true, allowed_origins: Vec::new(), cross_site_login: false }
    }

    /// Development mode, for plain HTTP on localhost only: the cookie is `sid` and has no
    /// `Secure` (and so cannot carry the `__Host-` prefix). Never use it in production.
    pub fn development() -> Self {
        Self { name: Cow::Borrowed(DEV_COOKIE), secure: false, allowed_origins: Vec::new(), cross_site_login: false }
    }

    /// Renames the cookie.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] when `name` is not an RFC 6265 cookie name, or carries the
    /// `__Host-` / `__Secure-` prefix in development mode (browsers would drop it).
    pub fn with_cookie_name(mut self, name: impl Into<Cow<'static, str>>) -> Result<Self> {
        let name = name.into();
        let token_char = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
        if name.is_empty() || name.len() > 64 || !name.bytes().all(token_char) {
            return Err(Error::InvalidInput("the cookie name must be 1 to 64 RFC 6265 token characters".into()));
        }
        let prefixed = name.starts_with("__Host-") || name.starts_with("__Secure-");
        if prefixed && !self.secure {
            return Err(Error::InvalidInput("__Host- and __Secure- cookies need Secure (not development mode)".into()));
        }
        self.name = name;
        Ok(self)
    }

    /// Origins (`scheme://host[:port]`) allowed to make cookie-authenticated state changes.
    /// With none configured (the default) the `Origin` header must name the request's own
    /// `Host`. Requests without `Origin` (non-browser clients, old browsers) still need the
    /// CSRF token.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for an entry that is not `http(s)://host[:port]`.
    pub fn with_allowed_origins<I, S>(mut self, origins: I) -> Result<Self>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut out = Vec::new();
        for o in origins {
            let o = o.as_ref().trim().trim_end_matches('/').to_ascii_lowercase();
            let host = o.strip_prefix("https://").or_else(|| o.strip_prefix("http://"));
            if !host.is_some_and(|h| !h.is_empty() && !h.contains(['/', '?', '#', '@', ' '])) {
                return Err(Error::InvalidInput("allowed origins must look like https://host[:port]".into()));
            }
            out.push(o);
        }
        self.allowed_origins = out;
        Ok(self)
    }

    /// Lets a cross-site state-changing request log in (default: refused with 403
    /// `csrf-rejected`). Login CSRF: without this refusal a cross-site form posting the
    /// attacker's credentials to the login route would log the victim into the attacker's
    /// account (`SameSite=Lax` lets a top-level POST response set the cookie). Turn it on only
    /// for single sign-on callbacks that arrive as cross-site POSTs (OpenID Connect
    /// `response_mode=form_post`, the SAML POST binding); those flows must check their own
    /// `state` / `nonce` / `RelayState`.
    pub fn with_cross_site_login(mut self, allowed: bool) -> Self {
        self.cross_site_login = allowed;
        self
    }

    /// Whether cross-site requests may log in ([`SessionConfig::with_cross_site_login`]).
    pub fn cross_site_login(&self) -> bool {
        self.cross_site_login
    }

    /// The cookie name.
    pub fn cookie_name(&self) -> &str {
        &self.name
    }

    /// Whether the cookie carries `Secure`.
    pub fn secure(&self) -> bool {
        self.secure
    }

    /// The configured allowed origins (normalised, lowercase).
    pub fn allowed_origins(&self) -> &[String] {
        &self.allowed_origins
    }

    fn attributes(&self, out: &mut String) {
        out.push_str("; Path=/");
        if self.secure {
            out.push_str("; Secure");
        }
        out.push_str("; HttpOnly; SameSite=Lax");
    }

    /// The `Set-Cookie` value carrying `token`; `max_age` only for persistent sessions.
    ///
    /// # Examples
    /// ```
    /// use sessiond_tower::SessionConfig;
    /// let c = SessionConfig::production().set_cookie("sds_abc", None);
    /// assert_eq!(c, "__Host-sid=sds_abc; Path=/; Secure; HttpOnly; SameSite=Lax");
    /// ```
    pub fn set_cookie(&self, token: &str, max_age: Option<Duration>) -> String {
        let mut out = String::with_capacity(self.name.len() + token.len() + 64);
        out.push_str(&self.name);
        out.push('=');
        out.push_str(token);
        self.attributes(&mut out);
        if let Some(age) = max_age {
            out.push_str("; Max-Age=");
            out.push_str(&age.as_secs().to_string());
        }
        out
    }

    /// The `Set-Cookie` value that deletes the cookie: the same attributes plus `Max-Age=0`.
    ///
    /// # Examples
    /// ```
    /// use sessiond_tower::SessionConfig;
    /// let c = SessionConfig::production().clear_cookie();
    /// assert_eq!(c, "__Host-sid=; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=0");
    /// ```
    pub fn clear_cookie(&self) -> String {
        let mut out = String::with_capacity(self.name.len() + 64);
        out.push_str(&self.name);
        out.push('=');
        self.attributes(&mut out);
        out.push_str("; Max-Age=0");
        out
    }

    /// The session cookie's value among the `Cookie` headers. Headers that are not text and
    /// malformed pairs are skipped, never an error. Two *different* non-empty values are
    /// ambiguous and give `None`, as in the server (`docs/decisions.md`, "Duplicate session
    /// cookies are ambiguous"): a sibling subdomain or a network attacker can plant a second
    /// cookie of the same name (without the `__Host-` prefix, or on plain HTTP) that the
    /// browser sends first, and taking it would put the victim in the attacker's session.
    pub fn find_cookie<'h>(&self, headers: &'h HeaderMap) -> Option<&'h str> {
        let mut values = headers
            .get_all(COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .filter(|(k, v)| k.trim() == self.name && !v.trim().is_empty())
            .map(|(_, v)| v.trim().trim_matches('"'));
        let first = values.next()?;
        values.all(|v| v == first).then_some(first)
    }

    /// Whether `origin` (an `Origin` header value) may make a cookie-authenticated state
    /// change to a request for `host` (its `Host` header).
    pub(crate) fn origin_allowed(&self, origin: &str, host: Option<&str>) -> bool {
        let origin = origin.trim().trim_end_matches('/').to_ascii_lowercase();
        if self.allowed_origins.is_empty() {
            let Some(host) = host else { return false };
            let host = host.trim().to_ascii_lowercase();
            let origin_host = origin.strip_prefix("https://").or_else(|| origin.strip_prefix("http://"));
            return origin_host == Some(host.as_str());
        }
        self.allowed_origins.contains(&origin)
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn attrs(c: &str) -> Vec<String> {
        c.split(';').skip(1).map(|a| a.trim().to_ascii_lowercase()).collect()
    }

    #[test]
    fn production_cookie_has_exactly_the_host_attributes() {
        let c = SessionConfig::production().set_cookie("sds_x", None);
        assert!(c.starts_with("__Host-sid=sds_x;"));
        assert_eq!(attrs(&c), ["path=/", "secure", "httponly", "samesite=lax"]);
        let p = SessionConfig::production().set_cookie("sds_x", Some(Duration::from_secs(60)));
        assert!(p.ends_with("; Max-Age=60"));
    }

    #[test]
    fn development_cookie_has_no_secure_and_no_host_prefix() {
        assert_eq!(SessionConfig::development().set_cookie("t", None), "sid=t; Path=/; HttpOnly; SameSite=Lax");
        assert!(SessionConfig::development().with_cookie_name("__Host-x").is_err());
    }

    #[test]
    fn cookie_names_are_validated() {
        for bad in ["", "a b", "a;b", "a=b", "é"] {
            assert!(SessionConfig::production().with_cookie_name(bad.to_owned()).is_err(), "{bad}");
        }
        let c = SessionConfig::production().with_cookie_name("__Host-app").expect("valid");
        assert_eq!(c.cookie_name(), "__Host-app");
    }

    #[test]
    fn finds_the_cookie_among_garbage() {
        let s = SessionConfig::production();
        let mut h = HeaderMap::new();
        h.append(COOKIE, HeaderValue::from_static("a=b; ;;=; junk; __Host-sid=; x"));
        h.append(COOKIE, HeaderValue::from_bytes(b"\xff\xfe=1").expect("obs-text is allowed"));
        h.append(COOKIE, HeaderValue::from_static("other=1; __Host-sid=sds_tok"));
        assert_eq!(s.find_cookie(&h), Some("sds_tok"));
        assert_eq!(SessionConfig::development().find_cookie(&h), None);
    }

    #[test]
    fn two_different_session_cookies_are_ambiguous() {
        let s = SessionConfig::development();
        let mut h = HeaderMap::new();
        // A cookie planted by a sibling subdomain (narrower path: sent first), then the victim's.
        h.append(COOKIE, HeaderValue::from_static("sid=sds_attacker; sid=sds_victim"));
        assert_eq!(s.find_cookie(&h), None);
        let mut h = HeaderMap::new();
        h.append(COOKIE, HeaderValue::from_static("sid=sds_same; x=1"));
        h.append(COOKIE, HeaderValue::from_static("sid=\"sds_same\""));
        assert_eq!(s.find_cookie(&h), Some("sds_same"), "the same value twice is fine");
    }

    #[test]
    fn origins() {
        let same = SessionConfig::production();
        assert!(same.origin_allowed("https://app.example", Some("app.example")));
        assert!(!same.origin_allowed("https://evil.example", Some("app.example")));
        assert!(!same.origin_allowed("null", Some("app.example")));
        assert!(!same.origin_allowed("https://app.example", None));
        let listed = SessionConfig::production().with_allowed_origins(["https://App.example/"]).expect("valid");
        assert!(listed.origin_allowed("https://app.example", Some("other")));
        assert!(!listed.origin_allowed("http://app.example", Some("app.example")));
        assert!(SessionConfig::production().with_allowed_origins(["app.example"]).is_err());
    }
}
