//! Device facts of a request and the drift checks of [`crate::policy::Binding`].

use std::net::IpAddr;

/// Facts about the request presenting a token.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestContext<'a> {
    /// The client IP, as the deployment determines it (trusted proxy headers resolved).
    pub ip: Option<IpAddr>,
    /// The `User-Agent` header.
    pub user_agent: Option<&'a str>,
}

/// Which device fact drifted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drift {
    /// The browser or OS family differs.
    UserAgentFamily,
    /// The IP is outside the session's /24 (IPv4) or /48 (IPv6).
    IpPrefix,
}

impl Drift {
    /// The event detail.
    pub fn as_str(self) -> &'static str {
        match self {
            Drift::UserAgentFamily => "user_agent_family_changed",
            Drift::IpPrefix => "ip_prefix_changed",
        }
    }
}

/// Browser and OS family of a user agent, coarse on purpose: version updates are not drift.
pub fn ua_family(ua: &str) -> (&'static str, &'static str) {
    let browser = [
        ("Firefox/", "firefox"),
        ("Edg/", "edge"),
        ("OPR/", "opera"),
        ("Chrome/", "chrome"),
        ("Safari/", "safari"),
        ("curl/", "curl"),
    ]
    .iter()
    .find(|(needle, _)| ua.contains(needle))
    .map_or("other", |(_, f)| f);
    let os = [
        ("Android", "android"),
        ("iPhone", "ios"),
        ("iPad", "ios"),
        ("Windows", "windows"),
        ("Mac OS X", "macos"),
        ("CrOS", "chromeos"),
        ("Linux", "linux"),
    ]
    .iter()
    .find(|(needle, _)| ua.contains(needle))
    .map_or("other", |(_, f)| f);
    (browser, os)
}

/// Whether two IPs share the binding prefix.
pub fn same_prefix(a: IpAddr, b: IpAddr) -> bool {
    match (a, b) {
        (IpAddr::V4(a), IpAddr::V4(b)) => a.octets()[..3] == b.octets()[..3],
        (IpAddr::V6(a), IpAddr::V6(b)) => a.octets()[..6] == b.octets()[..6],
        _ => a.to_canonical() == b.to_canonical(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_bumps_are_not_drift_but_family_changes_are() {
        let a = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36";
        let b = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/121.0 Safari/537.36";
        let c = "Mozilla/5.0 (Windows NT 10.0; rv:120.0) Gecko/20100101 Firefox/120.0";
        assert_eq!(ua_family(a), ua_family(b));
        assert_ne!(ua_family(a), ua_family(c));
    }

    #[test]
    fn prefixes() {
        let p = |s: &str| s.parse::<IpAddr>().expect("ip");
        assert!(same_prefix(p("192.0.2.1"), p("192.0.2.200")));
        assert!(!same_prefix(p("192.0.2.1"), p("192.0.3.1")));
        assert!(same_prefix(p("2001:db8:1::1"), p("2001:db8:1:ffff::1")));
        assert!(!same_prefix(p("2001:db8:1::1"), p("2001:db8:2::1")));
        assert!(!same_prefix(p("192.0.2.1"), p("2001:db8:2::1")));
    }
}
