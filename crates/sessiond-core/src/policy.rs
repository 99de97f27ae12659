//! Policy classes: how long sessions live, how often they rotate, how many a subject may
//! hold, and how device changes are treated.
//!
//! The presets carry the values of the standards (see `docs/policies.md` and the checklist
//! §4.3). The [`Policy::default`] policy satisfies every source at once: idle 15 minutes,
//! absolute 12 hours.

use std::sync::Arc;
use std::time::Duration;

use crate::error::MalformedInput;

const MINUTE: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(86_400);

/// What creation does when a subject already holds `max_sessions` live sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitAction {
    /// Refuse the new session.
    DenyNew,
    /// End the session created longest ago.
    EvictOldest,
    /// End the session used least recently.
    EvictIdlest,
}

/// What a change in a request's device facts does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BindingAction {
    /// Ignore it.
    Allow,
    /// Emit an `anomaly` event and let the request through (the default).
    #[default]
    Flag,
    /// Revoke the session.
    Revoke,
    /// Emit an `anomaly` event and demand re-authentication (the session's AAL counts as 0).
    StepUp,
}

/// Binding rules: what to do when the user-agent family or the IP prefix drifts mid-session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Binding {
    /// Reaction to a different user-agent family (browser or OS).
    pub user_agent: BindingAction,
    /// Reaction to a different IP prefix (/24 for IPv4, /48 for IPv6).
    pub ip_prefix: BindingAction,
}

/// A policy class.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// The class name that sessions refer to.
    pub name: String,
    /// Inactivity after which the session ends.
    #[serde(with = "secs")]
    pub idle_timeout: Duration,
    /// Lifetime after which the session ends however active it is.
    #[serde(with = "secs")]
    pub absolute_lifetime: Duration,
    /// Rotate the token when it is this old (renewal, OWASP CS-24); `None` never rotates on age.
    #[serde(with = "opt_secs", default)]
    pub rotation_interval: Option<Duration>,
    /// Write a renewed idle deadline only once this fraction of the idle window has passed,
    /// so a read-mostly workload causes almost no writes. The session may then end up to this
    /// fraction early, never late. Each session renews after its own share of it, between
    /// half and all ([`Engine::renewal_threshold`](crate::Engine::renewal_threshold)), so
    /// that sessions created together do not all write at once.
    pub renewal_fraction: f64,
    /// Concurrent live sessions per subject; `None` is unlimited.
    #[serde(default)]
    pub max_sessions: Option<u32>,
    /// What happens at the limit.
    pub on_limit: LimitAction,
    /// "Remember me": the cookie outlives the browser session (it gets `Max-Age`).
    #[serde(default)]
    pub persistent: bool,
    /// Device binding rules.
    #[serde(default)]
    pub binding: Binding,
}

impl Default for Policy {
    /// The default class, `default`: idle 15 min (PCI DSS 8.2.8, NIST AAL3, ASVS L3), absolute
    /// 12 h (NIST AAL2/AAL3, ASVS L2/L3), rotation every hour (OWASP CS-24), no concurrent
    /// limit, browser-session cookie, device drift flagged.
    fn default() -> Self {
        Self {
            name: "default".into(),
            idle_timeout: 15 * MINUTE,
            absolute_lifetime: 12 * HOUR,
            rotation_interval: Some(HOUR),
            renewal_fraction: 0.1,
            max_sessions: None,
            on_limit: LimitAction::EvictOldest,
            persistent: false,
            binding: Binding::default(),
        }
    }
}

impl Policy {
    /// The preset named `name`: `default`, `nist-aal1`, `nist-aal2`, `nist-aal3`, `pci-dss`,
    /// `hipaa` or `remember-me`.
    ///
    /// # Examples
    /// ```
    /// let p = sessiond_core::Policy::preset("nist-aal2").unwrap();
    /// assert_eq!(p.idle_timeout.as_secs(), 30 * 60);
    /// ```
    pub fn preset(name: &str) -> Option<Policy> {
        let base = Policy { name: name.to_owned(), ..Policy::default() };
        Some(match name {
            "default" => base,
            // 800-63B rev 4 AAL1: absolute SHALL exist, SHOULD <= 30 days; idle MAY (none here
            // beyond the absolute bound). ASVS 4 L1: 30 days.
            "nist-aal1" => {
                Policy { idle_timeout: 30 * DAY, absolute_lifetime: 30 * DAY, rotation_interval: Some(DAY), ..base }
            }
            // 800-63B rev 3 AAL2: absolute SHALL 12 h, idle SHALL 30 min (stricter than rev 4).
            "nist-aal2" => Policy { idle_timeout: 30 * MINUTE, absolute_lifetime: 12 * HOUR, ..base },
            // 800-63B rev 3/4 AAL3: absolute 12 h, idle 15 min.
            "nist-aal3" => Policy { idle_timeout: 15 * MINUTE, absolute_lifetime: 12 * HOUR, ..base },
            // PCI DSS v4.0 8.2.8: idle <= 15 min; no absolute bound given, 12 h kept.
            "pci-dss" => Policy { idle_timeout: 15 * MINUTE, absolute_lifetime: 12 * HOUR, ..base },
            // HIPAA 164.312(a)(2)(iii) automatic logoff: 15 min is common practice.
            "hipaa" => Policy { idle_timeout: 15 * MINUTE, absolute_lifetime: 12 * HOUR, ..base },
            // Remember-me: a persistent cookie, within the AAL1 bounds.
            "remember-me" => Policy {
                idle_timeout: 7 * DAY,
                absolute_lifetime: 30 * DAY,
                rotation_interval: Some(DAY),
                persistent: true,
                ..base
            },
            _ => return None,
        })
    }

    /// Names of all presets.
    pub const PRESETS: [&'static str; 7] =
        ["default", "nist-aal1", "nist-aal2", "nist-aal3", "pci-dss", "hipaa", "remember-me"];

    /// Checks the rules a policy must follow.
    ///
    /// # Errors
    /// A message naming the broken rule.
    pub fn validate(&self) -> Result<(), MalformedInput> {
        crate::record::check_name(&self.name, "policy name")?;
        if self.idle_timeout < Duration::from_secs(1) || self.absolute_lifetime < Duration::from_secs(1) {
            return Err(MalformedInput::Field("policy timeouts must be at least one second"));
        }
        if self.idle_timeout > self.absolute_lifetime {
            return Err(MalformedInput::Field("policy idle_timeout must not exceed absolute_lifetime"));
        }
        if !(0.0..=0.5).contains(&self.renewal_fraction) {
            return Err(MalformedInput::Field("policy renewal_fraction must be between 0 and 0.5"));
        }
        if self.max_sessions == Some(0) {
            return Err(MalformedInput::Field("policy max_sessions must be at least 1"));
        }
        Ok(())
    }
}

/// The set of policy classes an engine knows, by name. Always contains `default`.
#[derive(Debug, Clone)]
pub struct Policies {
    /// Few classes, looked up on every resolve: a linear scan of short names beats hashing.
    by_name: Vec<Arc<Policy>>,
}

impl Default for Policies {
    fn default() -> Self {
        Self { by_name: Policy::PRESETS.iter().filter_map(|n| Policy::preset(n)).map(Arc::new).collect() }
    }
}

impl Policies {
    /// Adds or replaces a class.
    ///
    /// # Errors
    /// When the policy breaks a rule of [`Policy::validate`].
    pub fn insert(&mut self, policy: Policy) -> Result<(), MalformedInput> {
        policy.validate()?;
        self.by_name.retain(|p| p.name != policy.name);
        self.by_name.push(Arc::new(policy));
        Ok(())
    }

    /// The class named `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<Policy>> {
        self.by_name.iter().find(|p| p.name == name)
    }

    /// All classes.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Policy>> {
        self.by_name.iter()
    }
}

/// A route's demand on the session's assurance (for step-up).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Requirement {
    /// Minimum AAL (1, 2 or 3).
    pub min_aal: u8,
    /// Maximum time since the last authentication.
    #[serde(with = "opt_secs", default)]
    pub max_auth_age: Option<Duration>,
}

mod secs {
    use std::time::Duration;
    pub fn serialize<S: serde::Serializer>(v: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(v.as_secs())
    }
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        <u64 as serde::Deserialize>::deserialize(d).map(Duration::from_secs)
    }
}

mod opt_secs {
    use std::time::Duration;
    pub fn serialize<S: serde::Serializer>(v: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(d) => s.serialize_some(&d.as_secs()),
            None => s.serialize_none(),
        }
    }
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        <Option<u64> as serde::Deserialize>::deserialize(d).map(|o| o.map(Duration::from_secs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(name: &str) -> Policy {
        Policy::preset(name).expect("preset exists")
    }

    // One test per preset pins the values from the standards checklist §4.3.
    #[test]
    fn default_satisfies_every_source() {
        let d = p("default");
        assert_eq!(d, Policy::default());
        assert_eq!(d.idle_timeout, 15 * MINUTE);
        assert_eq!(d.absolute_lifetime, 12 * HOUR);
        assert!(!d.persistent);
    }

    #[test]
    fn nist_aal1_pins_30_days() {
        let a = p("nist-aal1");
        assert_eq!(a.absolute_lifetime, 30 * DAY);
        assert!(a.idle_timeout <= a.absolute_lifetime);
    }

    #[test]
    fn nist_aal2_pins_12h_and_30min() {
        let a = p("nist-aal2");
        assert_eq!((a.absolute_lifetime, a.idle_timeout), (12 * HOUR, 30 * MINUTE));
    }

    #[test]
    fn nist_aal3_pins_12h_and_15min() {
        let a = p("nist-aal3");
        assert_eq!((a.absolute_lifetime, a.idle_timeout), (12 * HOUR, 15 * MINUTE));
    }

    #[test]
    fn pci_dss_pins_15min_idle() {
        let a = p("pci-dss");
        assert_eq!(a.idle_timeout, 15 * MINUTE);
        assert!(a.absolute_lifetime <= 12 * HOUR);
    }

    #[test]
    fn hipaa_pins_15min_idle() {
        let a = p("hipaa");
        assert_eq!(a.idle_timeout, 15 * MINUTE);
        assert!(a.absolute_lifetime <= 12 * HOUR);
    }

    #[test]
    fn remember_me_is_persistent_within_aal1_bounds() {
        let a = p("remember-me");
        assert!(a.persistent);
        assert!(a.absolute_lifetime <= 30 * DAY);
    }

    #[test]
    fn every_preset_validates_and_unknown_is_none() {
        for name in Policy::PRESETS {
            p(name).validate().expect(name);
        }
        assert!(Policy::preset("nope").is_none());
    }

    #[test]
    fn validate_rejects_bad_values() {
        let bad = [
            Policy { idle_timeout: 13 * HOUR, ..Policy::default() },
            Policy { renewal_fraction: 0.9, ..Policy::default() },
            Policy { max_sessions: Some(0), ..Policy::default() },
            Policy { name: String::new(), ..Policy::default() },
        ];
        for b in bad {
            assert!(b.validate().is_err(), "{b:?}");
        }
    }
}
