//! The session cookie: how it is built, cleared and found.
//!
//! Production cookies are `__Host-sid=…; Path=/; Secure; HttpOnly; SameSite=Lax`: the
//! `__Host-` prefix makes browsers refuse the cookie unless it is `Secure`, has `Path=/` and no
//! `Domain`, so no sibling subdomain can plant or shadow it. No `Max-Age` / `Expires`: the
//! cookie ends with the browser session, unless the session's policy is `persistent`
//! ("remember me"), where `Max-Age` is the session's remaining absolute lifetime.
//!
//! Development mode (plain HTTP on loopback only) uses `sid` without `Secure` and therefore
//! without the `__Host-` prefix, which browsers would reject.

use std::time::Duration;

use axum::http::header::{AUTHORIZATION, COOKIE};
use axum::http::HeaderMap;

/// The production cookie name.
pub const HOST_COOKIE: &str = "__Host-sid";
/// The development-mode cookie name.
pub const DEV_COOKIE: &str = "sid";

/// Where a presented token came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenSource {
    /// `Authorization: Bearer`.
    Bearer,
    /// The session cookie.
    Cookie,
}

/// How the session cookie is named and which attributes it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CookieSettings {
    name: &'static str,
    secure: bool,
}

impl Default for CookieSettings {
    /// The production cookie: `__Host-sid`, `Secure` (OWASP Session Management Cheat Sheet,
    /// "Cookies"; ASVS V3.4).
    fn default() -> Self {
        Self::production()
    }
}

impl CookieSettings {
    /// `__Host-sid` with `Secure`.
    pub fn production() -> Self {
        Self { name: HOST_COOKIE, secure: true }
    }

    /// `sid` without `Secure`, for plain HTTP on loopback in development mode.
    pub fn development() -> Self {
        Self { name: DEV_COOKIE, secure: false }
    }

    /// The cookie name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Whether the cookie carries `Secure`.
    pub fn secure(&self) -> bool {
        self.secure
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
    /// use sessiond_server::cookie::CookieSettings;
    /// let c = CookieSettings::production().set("sds_abc", None);
    /// assert_eq!(c, "__Host-sid=sds_abc; Path=/; Secure; HttpOnly; SameSite=Lax");
    /// ```
    pub fn set(&self, token: &str, max_age: Option<Duration>) -> String {
        let mut out = String::with_capacity(self.name.len() + token.len() + 64);
        out.push_str(self.name);
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
    pub fn clear(&self) -> String {
        let mut out = String::with_capacity(64);
        out.push_str(self.name);
        out.push('=');
        self.attributes(&mut out);
        out.push_str("; Max-Age=0");
        out
    }

    /// The session cookie's value among `Cookie` headers (the non-empty one). Headers that are
    /// not valid text and malformed pairs are skipped. Two *different* non-empty values are
    /// ambiguous (a browser holds one `__Host-` cookie per name; two mean a planted or mixed
    /// cookie, OWASP CS-19): then there is no session cookie at all.
    pub fn find<'h>(&self, headers: &'h HeaderMap) -> Option<&'h str> {
        let mut found: Option<&'h str> = None;
        for value in headers.get_all(COOKIE) {
            let Ok(value) = value.to_str() else { continue };
            for pair in value.split(';') {
                if let Some(v) = self.value_in(pair) {
                    match found {
                        None => found = Some(v),
                        Some(first) if first != v => return None,
                        Some(_) => {}
                    }
                }
            }
        }
        found
    }

    /// The value of `pair` (one `name=value` of a `Cookie` header) when it names the session
    /// cookie and has a non-empty value: surrounding whitespace and double quotes removed. A
    /// header value that passed `to_str` holds no whitespace but spaces and tabs.
    fn value_in<'p>(&self, pair: &'p str) -> Option<&'p str> {
        let (k, v) = trim_ows(pair).split_once('=')?;
        if v.is_empty() || trim_ows(k) != self.name {
            return None;
        }
        Some(trim_ows(v).trim_matches('"'))
    }

    /// The presented token: `Authorization: Bearer` first, then the cookie.
    pub fn token<'h>(&self, headers: &'h HeaderMap) -> Option<(&'h str, TokenSource)> {
        bearer(headers)
            .map(|t| (t, TokenSource::Bearer))
            .or_else(|| self.find(headers).map(|t| (t, TokenSource::Cookie)))
    }
}

/// `s` without leading and trailing spaces and tabs (the optional whitespace of RFC 9110),
/// scanned as bytes: the same result as `trim_matches` on those two characters, without
/// decoding characters (both are ASCII, so the cut points are character boundaries).
fn trim_ows(s: &str) -> &str {
    let b = s.as_bytes();
    let ows = |c: &u8| *c == b' ' || *c == b'\t';
    let start = b.iter().position(|c| !ows(c)).unwrap_or(b.len());
    let end = b.iter().rposition(|c| !ows(c)).map_or(start, |i| i + 1);
    s.get(start..end).unwrap_or_default()
}

/// The credential of an `Authorization: Bearer` header, if there is a well-formed one.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, cred) = v.trim().split_once(' ')?;
    let cred = cred.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !cred.is_empty()).then_some(cred)
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
        let c = CookieSettings::production().set("sds_x", None);
        assert!(c.starts_with("__Host-sid=sds_x;"));
        assert_eq!(attrs(&c), ["path=/", "secure", "httponly", "samesite=lax"]);
        assert!(!c.to_ascii_lowercase().contains("domain"));
        assert!(!c.to_ascii_lowercase().contains("expires"));
    }

    #[test]
    fn persistent_cookie_gets_max_age() {
        let c = CookieSettings::production().set("sds_x", Some(Duration::from_secs(3600)));
        assert!(c.ends_with("; Max-Age=3600"));
    }

    #[test]
    fn development_cookie_has_no_secure_and_no_host_prefix() {
        let c = CookieSettings::development().set("sds_x", None);
        assert_eq!(c, "sid=sds_x; Path=/; HttpOnly; SameSite=Lax");
    }

    #[test]
    fn clear_repeats_the_attributes_with_max_age_zero() {
        for s in [CookieSettings::production(), CookieSettings::development()] {
            let set = s.set("v", None);
            let clear = s.clear();
            assert_eq!(attrs(&clear)[..attrs(&set).len()], attrs(&set)[..]);
            assert!(clear.ends_with("; Max-Age=0"));
            assert!(clear.starts_with(&format!("{}=;", s.name())));
        }
    }

    #[test]
    fn trim_ows_is_trim_matches_of_space_and_tab() {
        for s in ["", " ", "\t \t", "a", " a ", "\ta b\t", "  caf\u{e9}  ", "\u{e9}", " \u{a0}x\u{a0} ", "=\t", "x\r "]
        {
            assert_eq!(trim_ows(s), s.trim_matches(|c| c == ' ' || c == '\t'), "{s:?}");
        }
    }

    #[test]
    fn finds_the_cookie_among_garbage() {
        let s = CookieSettings::production();
        let mut h = HeaderMap::new();
        h.append(COOKIE, HeaderValue::from_static("a=b; ;;=; junk; __Host-sid=; x"));
        h.append(COOKIE, HeaderValue::from_bytes(b"\xff\xfe=1").expect("obs-text is allowed"));
        h.append(COOKIE, HeaderValue::from_static("other=1; __Host-sid=sds_tok"));
        assert_eq!(s.find(&h), Some("sds_tok"));
        assert_eq!(CookieSettings::development().find(&h), None);
        // The same value twice is fine; two different values are ambiguous.
        h.append(COOKIE, HeaderValue::from_static("__Host-sid=sds_tok"));
        assert_eq!(s.find(&h), Some("sds_tok"));
        h.append(COOKIE, HeaderValue::from_static("__Host-sid=sds_other"));
        assert_eq!(s.find(&h), None);
    }

    #[test]
    fn bearer_wins_over_cookie() {
        let s = CookieSettings::production();
        let mut h = HeaderMap::new();
        h.insert(COOKIE, HeaderValue::from_static("__Host-sid=c"));
        assert_eq!(s.token(&h), Some(("c", TokenSource::Cookie)));
        h.insert(AUTHORIZATION, HeaderValue::from_static("bearer   b "));
        assert_eq!(s.token(&h), Some(("b", TokenSource::Bearer)));
        h.insert(AUTHORIZATION, HeaderValue::from_static("Basic Zm9v"));
        assert_eq!(bearer(&h), None);
    }

    /// The former iterator-chain implementation of `find`, kept as the reference.
    fn find_reference<'h>(name: &str, headers: &'h HeaderMap) -> Option<&'h str> {
        let mut values = headers
            .get_all(COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .filter(|(k, v)| k.trim() == name && !v.is_empty())
            .map(|(_, v)| v.trim().trim_matches('"'));
        let first = values.next()?;
        values.all(|v| v == first).then_some(first)
    }

    #[test]
    fn find_agrees_with_the_reference_on_tricky_headers() {
        let parts = [
            "sid=a",
            "sid=b",
            " sid = a ",
            "sid=\"a\"",
            "sid=\"\"a\"\"",
            "sid=",
            "sid= ",
            "sid=\t",
            "\tsid=a\t",
            "sid",
            "=a",
            "sid==a",
            "sid=a=b",
            "sidx=a",
            "xsid=a",
            "SID=a",
            "sid=\"",
            "a=b",
            "",
            " ",
            ";",
            "sid=a;",
            "OBS",
            "sid=\u{e9}",
            "__Host-sid=a",
            "__Host-sid=c",
        ];
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = |n: usize| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % n as u64) as usize
        };
        for _ in 0..20_000 {
            let mut h = HeaderMap::new();
            for _ in 0..1 + next(3) {
                let mut v = Vec::new();
                for j in 0..1 + next(4) {
                    if j > 0 {
                        v.extend_from_slice(if next(2) == 0 { b";" } else { b"; " });
                    }
                    let p = parts[next(parts.len())];
                    if p == "OBS" {
                        v.push(0xff);
                    } else {
                        v.extend_from_slice(p.as_bytes());
                    }
                }
                if let Ok(v) = HeaderValue::from_bytes(&v) {
                    h.append(COOKIE, v);
                }
            }
            for s in [CookieSettings::production(), CookieSettings::development()] {
                assert_eq!(s.find(&h), find_reference(s.name(), &h), "{h:?}");
            }
        }
    }
}
