//! The connection URLs the store accepts, translated to `fred`'s configuration.
//!
//! | form | meaning |
//! |---|---|
//! | `redis://[user[:password]@]host[:port][/db]` | one server over TCP |
//! | `rediss://[user[:password]@]host[:port][/db]` | one server over TLS (rustls, system roots) |
//! | `redis+sentinel://[user[:password]@]host:port[,host:port…]/service[/db]` | Sentinel: the sentinels, then the primary's service name |
//! | `rediss+sentinel://…` | the same over TLS |
//! | `redis+cluster://[user[:password]@]host:port[,host:port…]` | Cluster: any subset of the nodes (the rest are discovered) |
//! | `rediss+cluster://…` | the same over TLS |
//!
//! The user and password are the ACL credentials of the data nodes (percent-encoded if they
//! hold reserved characters). A query string is passed through to `fred`'s URL parser, e.g.
//! `?sentinelUsername=…&sentinelPassword=…` for sentinels with their own credentials.

use fred::types::config::Config;

/// Why a URL was refused (never echoes a password).
pub(crate) fn parse(url: &str) -> Result<Config, String> {
    let (scheme, rest) = url.split_once("://").ok_or("the Redis URL has no scheme")?;
    let (rest, query) = match rest.split_once('?') {
        Some((r, q)) => (r, Some(q)),
        None => (rest, None),
    };
    let (auth, rest) = match rest.rsplit_once('@') {
        Some((a, r)) => (Some(a), r),
        None => (None, rest),
    };
    let (hosts, path) = match rest.split_once('/') {
        Some((h, p)) => (h, Some(p)),
        None => (rest, None),
    };
    let hosts: Vec<&str> = hosts.split(',').filter(|h| !h.is_empty()).collect();
    if hosts.is_empty() {
        return Err("the Redis URL names no host".into());
    }
    let auth = auth.map(|a| format!("{a}@")).unwrap_or_default();
    let extra = |q: &mut Vec<String>| {
        if let Some(query) = query {
            q.extend(query.split('&').filter(|s| !s.is_empty()).map(str::to_owned));
        }
    };
    let fred_url = match scheme {
        "redis" | "rediss" => {
            if hosts.len() != 1 {
                return Err("redis:// takes one host; use redis+cluster:// or redis+sentinel://".into());
            }
            let mut q = Vec::new();
            extra(&mut q);
            format!("{scheme}://{auth}{}{}{}", hosts[0], path.map(|p| format!("/{p}")).unwrap_or_default(), join(&q))
        }
        "redis+cluster" | "rediss+cluster" => {
            if path.is_some_and(|p| !p.is_empty()) {
                return Err("Redis Cluster has no databases: remove the path from the URL".into());
            }
            let mut q: Vec<String> = hosts[1..].iter().map(|h| format!("node={h}")).collect();
            extra(&mut q);
            let s = if scheme == "redis+cluster" { "redis-cluster" } else { "rediss-cluster" };
            format!("{s}://{auth}{}{}", hosts[0], join(&q))
        }
        "redis+sentinel" | "rediss+sentinel" => {
            let path = path.unwrap_or_default();
            let (service, db) = match path.split_once('/') {
                Some((s, d)) => (s, Some(d)),
                None => (path, None),
            };
            if service.is_empty() {
                return Err("redis+sentinel:// needs the service name as the path".into());
            }
            let mut q = vec![format!("sentinelServiceName={service}")];
            q.extend(hosts[1..].iter().map(|h| format!("node={h}")));
            extra(&mut q);
            let s = if scheme == "redis+sentinel" { "redis-sentinel" } else { "rediss-sentinel" };
            let db = db.filter(|d| !d.is_empty()).map(|d| format!("/{d}")).unwrap_or_default();
            format!("{s}://{auth}{}{db}{}", hosts[0], join(&q))
        }
        _ => return Err(format!("unsupported Redis URL scheme {scheme:?}")),
    };
    Config::from_url(&fred_url).map_err(|e| format!("invalid Redis URL: {}", e.details()))
}

fn join(q: &[String]) -> String {
    if q.is_empty() {
        String::new()
    } else {
        format!("?{}", q.join("&"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fred::types::config::ServerConfig;

    #[test]
    fn accepted_forms() {
        let c = parse("redis://127.0.0.1:6379/2").expect("standalone");
        assert!(matches!(c.server, ServerConfig::Centralized { .. }));
        assert_eq!(c.database, Some(2));
        let c = parse("redis+cluster://u:p@10.0.0.1:7000,10.0.0.2:7001,10.0.0.3:7002").expect("cluster");
        match c.server {
            ServerConfig::Clustered { hosts, .. } => assert_eq!(hosts.len(), 3),
            other => panic!("{other:?}"),
        }
        assert_eq!((c.username.as_deref(), c.password.as_deref()), (Some("u"), Some("p")));
        let c = parse("redis+sentinel://:secret@s1:26379,s2:26379/mymaster/1").expect("sentinel");
        match c.server {
            ServerConfig::Sentinel { hosts, service_name, .. } => {
                assert_eq!((hosts.len(), service_name.as_str()), (2, "mymaster"));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(c.database, Some(1));
        assert!(parse("rediss://h:6380").expect("tls").tls.is_some());
    }

    #[test]
    fn refused_forms_do_not_echo_passwords() {
        for bad in ["http://h", "redis://", "redis://a:1,b:2", "redis+cluster://h:1/3", "redis+sentinel://h:1"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        let e = parse("ftp://user:hunter2@h").expect_err("scheme");
        assert!(!e.contains("hunter2"));
    }
}
