//! [`Heartbeat`]: a store's check that its own push channel still delivers.
//!
//! A shared store announces changes on a push channel (Redis pub/sub, PostgreSQL
//! `LISTEN/NOTIFY`). A connection can die silently — a half-open TCP connection, a partition
//! that drops packets without a reset — and then no socket error ever says so. Each store
//! therefore sends a heartbeat naming itself through the same channel, and declares the
//! channel lost when its own heartbeats stop coming back (`docs/decisions.md`, D15).

/// One store's heartbeat: a random node id and the message carrying it.
#[derive(Debug, Clone)]
pub struct Heartbeat {
    node: String,
    message: String,
}

impl Heartbeat {
    /// A heartbeat with a fresh random node id (not a secret: it only tells nodes apart).
    pub fn new() -> Self {
        let node: String = crate::token::os_random::<12>().iter().map(|b| format!("{b:02x}")).collect();
        let message = serde_json::json!({ "kind": "heartbeat", "node": node }).to_string();
        Self { node, message }
    }

    /// The message to publish on the channel.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Whether `payload`, received on the channel, is one of this node's own heartbeats.
    pub fn is_own(&self, payload: &str) -> bool {
        #[derive(serde::Deserialize)]
        struct Beat<'a> {
            kind: &'a str,
            node: &'a str,
        }
        serde_json::from_str::<Beat<'_>>(payload).is_ok_and(|b| b.kind == "heartbeat" && b.node == self.node)
    }
}

impl Default for Heartbeat {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_its_own_heartbeat_is_recognised() {
        let (a, b) = (Heartbeat::new(), Heartbeat::new());
        assert!(a.is_own(a.message()));
        assert!(!a.is_own(b.message()), "another node's heartbeat");
        assert!(!a.is_own(r#"{"kind":"session","node":"x"}"#));
        assert!(!a.is_own("not json"));
    }
}
