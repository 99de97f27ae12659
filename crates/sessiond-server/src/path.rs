//! Normalization of the original request path that forward-auth matches route rules against.
//!
//! A reverse proxy hands sessiond the path the browser asked for (`X-Forwarded-Uri`,
//! `X-Original-URI`, or the path appended by Envoy's `ext_authz`). The application behind the
//! proxy will normalize that path before routing, so a rule matched on the *raw* path is
//! trivially skipped: `/%61dmin`, `//admin`, `/x/../admin` and `/admin;x` all reach the
//! application's `/admin` handler. [`normalize`] therefore brings the path into the form the
//! application sees, and refuses (deny by default) anything whose meaning depends on the
//! backend:
//!
//! 1. the query string and fragment are dropped;
//! 2. the path must start with `/` and be printable ASCII (percent-encode everything else);
//! 3. `%XX` escapes of unreserved characters (`A-Z a-z 0-9 - . _ ~`) are decoded (RFC 3986
//!    §6.2.2.2), other escapes are kept with upper-case hex (§6.2.2.1); the escapes of `/`
//!    (`%2F`), `\` (`%5C`), `;` (`%3B`, a path-parameter delimiter to some backends and
//!    "ambiguous" to others) and of every control character (`%00`–`%1F`, `%7F`, which
//!    backends strip or trim) are refused, as are a segment that starts or ends with an
//!    encoded space (`/admin%20`, which backends that trim segments serve as `/admin`), a
//!    literal `\`, malformed escapes and escapes that do not decode to UTF-8;
//! 4. runs of `/` are merged;
//! 5. path parameters (`;…` inside a segment, which Tomcat-style backends ignore) are removed;
//!    a segment that is empty, `.` or `..` only once its parameters are gone (`/;x/`,
//!    `/..;x/`) is refused: RFC 3986 and nginx resolve `/admin/;x/../keys` to `/admin/keys`
//!    and keep `/admin/..;x/keys` under `/admin`, while Tomcat-style backends see `/keys`;
//! 6. dot-segments are removed (RFC 3986 §5.2.4).
//!
//! The result is only used for matching; the request itself is never rewritten.

use std::borrow::Cow;
use std::fmt;

/// Why a path was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    /// The path does not start with `/` (absolute-form, `*`, empty).
    NotAbsolutePath,
    /// A control character, space, non-ASCII byte or literal backslash.
    ForbiddenCharacter,
    /// A `%` not followed by two hex digits.
    MalformedEscape,
    /// `%2F`, `%5C`, `%3B`, an escaped control character, or a segment that starts or ends
    /// with `%20`: the backend may treat them as separators, terminators or trim them.
    ForbiddenEscape,
    /// Percent-escapes that do not decode to UTF-8.
    InvalidUtf8,
    /// A segment that is empty, `.` or `..` once its `;` parameters are removed (`/;x/`,
    /// `/..;x/`, `/.;x/`): backends that strip parameters and backends that do not resolve
    /// the dot-segments around it to different paths.
    AmbiguousParameter,
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PathError::NotAbsolutePath => "the original request path must start with `/`",
            PathError::ForbiddenCharacter => "the original request path holds a forbidden character",
            PathError::MalformedEscape => "the original request path holds a malformed percent-escape",
            PathError::ForbiddenEscape => {
                "the original request path holds an encoded `/`, `\\`, `;` or control character, or a segment that starts or ends with an encoded space"
            }
            PathError::InvalidUtf8 => "the original request path does not decode to UTF-8",
            PathError::AmbiguousParameter => {
                "the original request path holds a segment that is empty, `.` or `..` once its `;` parameters are removed, which backends resolve differently"
            }
        })
    }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// [`normalize`] without allocating when the path is already in normal form (the common case
/// behind a proxy): then the path part of `uri` is borrowed. Any other path takes the full
/// [`normalize`], so the result is always exactly what [`normalize`] gives.
///
/// A path is already normal when it starts with `/`, holds only printable ASCII other than
/// `\\`, `%` and `;` (no escapes, no path parameters), has no empty segment before its end (no
/// `//`) and no `.` or `..` segment.
///
/// # Errors
/// As [`normalize`].
///
/// # Examples
/// ```
/// use std::borrow::Cow;
/// use sessiond_server::path::normalize_cow;
/// assert!(matches!(normalize_cow("/admin/users?q=1"), Ok(Cow::Borrowed("/admin/users"))));
/// assert_eq!(normalize_cow("//admin/./x/../users").unwrap(), "/admin/users");
/// ```
pub fn normalize_cow(uri: &str) -> Result<Cow<'_, str>, PathError> {
    let end = uri.bytes().position(|b| b == b'?' || b == b'#').unwrap_or(uri.len());
    let path = &uri[..end];
    if is_normal(path.as_bytes()) {
        Ok(Cow::Borrowed(path))
    } else {
        normalize(uri).map(Cow::Owned)
    }
}

/// Whether `path` (no query, no fragment) is its own normal form; see [`normalize_cow`].
fn is_normal(path: &[u8]) -> bool {
    let Some((&b'/', rest)) = path.split_first() else { return false };
    // `rest` is a `/`-separated list of segments; only the last may be empty (a trailing `/`).
    let mut seg_len = 0usize;
    let mut dots = 0usize;
    for &b in rest {
        match b {
            b'/' => {
                // An empty segment (`//`) or a dot-segment before this `/`.
                if seg_len == 0 || (dots == seg_len && dots <= 2) {
                    return false;
                }
                seg_len = 0;
                dots = 0;
                continue;
            }
            b'%' | b';' | b'\\' => return false,
            0x21..=0x7e => {}
            _ => return false,
        }
        seg_len += 1;
        if b == b'.' {
            dots += 1;
        }
    }
    // The last segment: empty (trailing `/` or the root) is fine, `.` and `..` are not.
    !(seg_len > 0 && dots == seg_len && dots <= 2)
}

/// The normalized form of `uri` (a path, optionally with query and fragment) for rule
/// matching. See the module documentation for the rules.
///
/// # Errors
/// A [`PathError`] when the path cannot be normalized without guessing what the backend does.
///
/// # Examples
/// ```
/// use sessiond_server::path::normalize;
/// assert_eq!(normalize("/%61dmin").unwrap(), "/admin");
/// assert_eq!(normalize("//admin/./x/../users?q=1").unwrap(), "/admin/users");
/// assert!(normalize("/admin%2fusers").is_err());
/// ```
pub fn normalize(uri: &str) -> Result<String, PathError> {
    let path = uri.split(['?', '#']).next().unwrap_or_default();
    if !path.starts_with('/') {
        return Err(PathError::NotAbsolutePath);
    }
    // Pass 1: check characters, decode unreserved escapes, keep the others (upper-case hex),
    // and collect every escaped byte for the UTF-8 check.
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut decoded = Vec::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let (Some(h), Some(l)) = (bytes.get(i + 1).copied().and_then(hex), bytes.get(i + 2).copied().and_then(hex))
            else {
                return Err(PathError::MalformedEscape);
            };
            let v = h << 4 | l;
            if matches!(v, b'/' | b'\\' | b';') || v.is_ascii_control() {
                return Err(PathError::ForbiddenEscape);
            }
            // An encoded space at either end of a segment (`/`, `%20…`, `…%20/` or the end).
            if v == b' ' {
                let before = if i == 0 { None } else { Some(bytes[i - 1]) };
                let after = bytes.get(i + 3).copied();
                if before == Some(b'/') || matches!(after, None | Some(b'/' | b';' | b'?' | b'#')) {
                    return Err(PathError::ForbiddenEscape);
                }
            }
            decoded.push(v);
            if unreserved(v) {
                out.push(char::from(v));
            } else {
                out.push('%');
                out.push(char::from(b"0123456789ABCDEF"[usize::from(v >> 4)]));
                out.push(char::from(b"0123456789ABCDEF"[usize::from(v & 15)]));
            }
            i += 3;
            continue;
        }
        if !(0x21..0x7f).contains(&b) || b == b'\\' {
            return Err(PathError::ForbiddenCharacter);
        }
        decoded.push(b);
        out.push(char::from(b));
        i += 1;
    }
    if std::str::from_utf8(&decoded).is_err() {
        return Err(PathError::InvalidUtf8);
    }
    // Pass 2: segments without empty ones (merged slashes) and without `;` parameters, then
    // dot-segment removal. Splitting on `/` after the checks above is exact: no segment can
    // hold an encoded `/`.
    let trailing = out.ends_with('/') || out.ends_with("/.") || out.ends_with("/..");
    let mut stack: Vec<&str> = Vec::new();
    for seg in out.split('/') {
        let seg = match seg.split_once(';') {
            // `/;x/../k` is `/admin/k` under RFC 3986 and nginx (the `..` removes `;x`) but
            // `/k` once `;x` is stripped; `..;x` is `..` only to backends that strip it.
            Some(("" | "." | "..", _)) => return Err(PathError::AmbiguousParameter),
            Some((name, _)) => name,
            None => seg,
        };
        match seg {
            "" | "." => {}
            ".." => {
                stack.pop();
            }
            s => stack.push(s),
        }
    }
    let mut norm = String::with_capacity(out.len());
    for s in &stack {
        norm.push('/');
        norm.push_str(s);
    }
    if norm.is_empty() || trailing {
        norm.push('/');
    }
    Ok(norm)
}

/// The form in which route rules are compared under `route_matching = "folded"` (the
/// default, [`crate::config::RouteMatching`]): ASCII letters lower-cased and trailing dots
/// removed from every segment of an already [normalized](normalize) path; a segment made of
/// dots only disappears, as merged slashes do. Case-insensitive backends (Windows / IIS,
/// macOS file systems, many CMSs) serve `/ADMIN` as `/admin`, and Windows drops trailing
/// dots (`/admin.` is `/admin`), so a rule must match those spellings too: folding both
/// the rule and the path can only make a rule apply more widely, never less. Borrows when
/// there is nothing to fold (the common case: no allocation).
///
/// ```
/// use sessiond_server::path::fold;
/// assert_eq!(fold("/ADMIN./Users"), "/admin/users");
/// assert_eq!(fold("/admin/"), "/admin/");
/// ```
pub fn fold(path: &str) -> Cow<'_, str> {
    let needs = path.bytes().any(|b| b.is_ascii_uppercase()) || path.split('/').any(|seg| seg.ends_with('.'));
    if !needs {
        return Cow::Borrowed(path);
    }
    let mut out = String::with_capacity(path.len());
    for seg in path.split('/').skip(1) {
        let kept = seg.trim_end_matches('.');
        if kept.is_empty() && !seg.is_empty() {
            continue;
        }
        out.push('/');
        out.extend(kept.chars().map(|c| c.to_ascii_lowercase()));
    }
    if out.is_empty() {
        out.push('/');
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attack_paths_normalize_to_the_path_the_backend_serves() {
        for (raw, want) in [
            ("/admin", "/admin"),
            ("/%61dmin", "/admin"),
            ("/%41dmin", "/Admin"),
            ("/ad%6Din/users", "/admin/users"),
            ("//admin", "/admin"),
            ("///admin//users", "/admin/users"),
            ("/admin/../x", "/x"),
            ("/x/../admin", "/admin"),
            ("/public/../admin/keys", "/admin/keys"),
            ("/./admin", "/admin"),
            ("/%2e/admin", "/admin"),
            ("/%2e%2e/admin", "/admin"),
            ("/public/%2E%2E/admin", "/admin"),
            ("/../../admin", "/admin"),
            ("/admin;jsessionid=x/keys", "/admin/keys"),
            ("/admin;/../admin/keys", "/admin/keys"),
            ("/x;a/../admin/keys", "/admin/keys"),
            ("/admin?x=/public", "/admin"),
            ("/admin#frag", "/admin"),
            ("/admin/", "/admin/"),
            ("/admin/.", "/admin/"),
            ("/admin/x/..", "/admin/"),
            ("/", "/"),
            ("/..", "/"),
            ("/a%20b", "/a%20b"),
            ("/caf%C3%A9", "/caf%C3%A9"),
            ("/~user/x", "/~user/x"),
        ] {
            assert_eq!(normalize(raw).as_deref(), Ok(want), "{raw}");
        }
    }

    #[test]
    fn ambiguous_paths_are_refused() {
        for (raw, err) in [
            ("/admin%2fkeys", PathError::ForbiddenEscape),
            ("/admin%2Fkeys", PathError::ForbiddenEscape),
            ("/x/..%2fadmin", PathError::ForbiddenEscape),
            ("/admin%5ckeys", PathError::ForbiddenEscape),
            ("/admin%00.html", PathError::ForbiddenEscape),
            ("/admin%0a", PathError::ForbiddenEscape),
            ("/admin%0D", PathError::ForbiddenEscape),
            ("/admin%09", PathError::ForbiddenEscape),
            ("/admin%7f", PathError::ForbiddenEscape),
            ("/admin%1b/x", PathError::ForbiddenEscape),
            ("/admin%3B", PathError::ForbiddenEscape),
            ("/admin%3bx/keys", PathError::ForbiddenEscape),
            // Resolved to /admin/keys by RFC 3986 and nginx, to /keys once `;x` is stripped.
            ("/admin/;x/../keys", PathError::AmbiguousParameter),
            ("/admin/;/../keys", PathError::AmbiguousParameter),
            // `..;x` is `..` only to backends that strip parameters (Tomcat).
            ("/admin/..;x/keys", PathError::AmbiguousParameter),
            ("/admin/..;/keys", PathError::AmbiguousParameter),
            ("/admin/.;x/keys", PathError::AmbiguousParameter),
            ("/;x", PathError::AmbiguousParameter),
            ("/admin%20", PathError::ForbiddenEscape),
            ("/admin%20/keys", PathError::ForbiddenEscape),
            ("/%20admin", PathError::ForbiddenEscape),
            ("/admin%20?x=1", PathError::ForbiddenEscape),
            ("/admin\\keys", PathError::ForbiddenCharacter),
            ("/x\\..\\admin", PathError::ForbiddenCharacter),
            ("/adm in", PathError::ForbiddenCharacter),
            ("/adm\tin", PathError::ForbiddenCharacter),
            ("/admin\u{e9}", PathError::ForbiddenCharacter),
            ("/admin%", PathError::MalformedEscape),
            ("/admin%4", PathError::MalformedEscape),
            ("/admin%zz", PathError::MalformedEscape),
            ("/%C3", PathError::InvalidUtf8),
            ("/%FF%FE", PathError::InvalidUtf8),
            ("/%C0%AE%C0%AE/admin", PathError::InvalidUtf8),
            ("admin", PathError::NotAbsolutePath),
            ("", PathError::NotAbsolutePath),
            ("*", PathError::NotAbsolutePath),
            ("https://evil.example/admin", PathError::NotAbsolutePath),
        ] {
            assert_eq!(normalize(raw), Err(err), "{raw:?}");
        }
    }

    #[test]
    fn a_rule_cannot_be_skipped_by_any_spelling() {
        let rule = crate::config::RouteRule { prefix: "/admin".into(), min_aal: 2, max_auth_age: None, csrf: None };
        for raw in ["/%61dmin", "//admin", "/x/../admin", "/admin;x", "/%2e%2e/admin/", "/./admin/keys"] {
            let n = normalize(raw).expect("normalizes");
            assert!(rule.matches(&n), "{raw} -> {n} must stay under /admin");
        }
        assert!(!rule.matches(&normalize("/administrator").expect("ok")));
        assert!(!rule.matches(&normalize("/admin/../public").expect("ok")));
        // Folded (the default): other cases and trailing dots stay under the rule too.
        let folded_rule = crate::config::RouteRule { prefix: fold("/Admin").into_owned(), ..rule.clone() };
        for raw in [
            "/ADMIN",
            "/Admin/x",
            "/admin.",
            "/admin./keys",
            "/ADMIN%2e/users",
            "/admin.../x",
            "/%41dmin",
            "/admin../x",
        ] {
            let n = normalize(raw).expect("normalizes");
            assert!(folded_rule.matches(&fold(&n)), "{raw} -> {} must stay under /admin when folded", fold(&n));
            assert!(!rule.matches(&n), "exact matching keeps {raw} apart");
        }
        for raw in ["/administrator.", "/ADMINISTRATOR", "/Public/admin"] {
            let n = normalize(raw).expect("normalizes");
            assert!(!folded_rule.matches(&fold(&n)), "{raw} -> {} is not under /admin", fold(&n));
        }
    }

    #[test]
    fn fold_lowercases_and_drops_trailing_dots_only() {
        for (path, want) in [
            ("/", "/"),
            ("/admin", "/admin"),
            ("/admin/", "/admin/"),
            ("/ADMIN/", "/admin/"),
            ("/admin./x.y/z..", "/admin/x.y/z"),
            ("/a/.../b", "/a/b"),
            ("/...", "/"),
            ("/%C3%A9T%C3%89", "/%c3%a9t%c3%89"),
            ("/.well-known/x", "/.well-known/x"),
        ] {
            assert_eq!(fold(path), want, "{path}");
        }
        assert!(matches!(fold("/already/folded/"), Cow::Borrowed(_)), "nothing to fold: borrowed");
    }

    /// `normalize_cow` must give exactly what `normalize` gives (value or error), borrowing only
    /// when the path is already normal.
    fn same_as_slow_path(raw: &str) {
        let fast = normalize_cow(raw);
        let slow = normalize(raw);
        assert_eq!(fast.as_deref().map_err(|e| *e), slow.as_deref().map_err(|e| *e), "{raw:?}");
        if let Ok(Cow::Borrowed(b)) = fast {
            // Borrowed means the input path was already normal.
            assert_eq!(Some(b), raw.split(['?', '#']).next(), "{raw:?}");
        }
    }

    #[test]
    fn borrowed_fast_path_agrees_with_the_slow_path_on_tricky_inputs() {
        for raw in [
            "/",
            "",
            "*",
            "a",
            "/a",
            "/a/",
            "/a/b",
            "/a/b/",
            "/a/../b",
            "/a/./b",
            "//x",
            "/x//",
            "/x//y",
            "/%2e%2e",
            "/%2e%2e/x",
            "/%2E/x",
            "/a%2fb",
            "/a%2Fb",
            "/a%5cb",
            "/a%00",
            "/.",
            "/..",
            "/...",
            "/a/.",
            "/a/..",
            "/a/...",
            "/a/.../b",
            "/.a",
            "/a.",
            "/a..",
            "/..a",
            "/a/b.",
            "/a/b..",
            "/./",
            "/../",
            "/a;b",
            "/a;b/c",
            "/;",
            "/a\\b",
            "/a b",
            "/a\tb",
            "/caf\u{e9}",
            "/a?x=/../b",
            "/a#/../b",
            "/a/..?x",
            "/?",
            "/#",
            "?/a",
            "/a?",
            "/~u/x-y_z.html",
            "/%61",
            "/%",
            "/%4",
            "/a%zz",
            "/%C3%A9",
            "/%C3",
            "/admin",
            "/admin/keys/",
            "/\u{7f}",
            "/\u{0}",
            "/a/b/c/d/e/f/g/../../..",
        ] {
            same_as_slow_path(raw);
        }
        assert!(matches!(normalize_cow("/admin/keys?x=1"), Ok(Cow::Borrowed("/admin/keys"))));
        assert!(matches!(normalize_cow("/admin/keys/"), Ok(Cow::Borrowed("/admin/keys/"))));
        assert!(matches!(normalize_cow("/"), Ok(Cow::Borrowed("/"))));
        assert!(matches!(normalize_cow("/a/../b"), Ok(Cow::Owned(_))));
    }

    #[test]
    fn borrowed_fast_path_agrees_with_the_slow_path_on_every_short_string() {
        // Every string of up to 5 characters over an alphabet of separators, dots, escapes,
        // parameters and forbidden characters (about 300,000 strings).
        const ALPHABET: [char; 12] = ['/', '.', 'a', '%', '2', 'e', 'f', ';', '?', '#', '\\', ' '];
        let mut buf = String::new();
        fn walk(buf: &mut String, depth: usize) {
            same_as_slow_path(buf);
            if depth == 0 {
                return;
            }
            for c in ALPHABET {
                buf.push(c);
                walk(buf, depth - 1);
                buf.pop();
            }
        }
        walk(&mut buf, 5);
        // Longer paths, starting with `/`, from a fixed pseudo-random sequence.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            let mut s = String::from("/");
            let len = (x % 24) as usize;
            for _ in 0..len {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                s.push(ALPHABET[(x % ALPHABET.len() as u64) as usize]);
            }
            same_as_slow_path(&s);
        }
    }
}
