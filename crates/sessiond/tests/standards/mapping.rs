//! The reviewable mapping: every requirement ID of `reference/standards-checklist.md` →
//! the black-box tests (§8 merged list) that check it, or the reason it does not apply to a
//! session server, or why it is pending. `docs/conformance.md` is generated from this table
//! and the suite's results.

/// How a requirement is covered.
#[derive(Debug, Clone, Copy)]
pub enum Cover {
    /// Checked by these tests (all must pass); the note says what part sessiond owns.
    Tests(&'static [&'static str], &'static str),
    /// Not a session-server requirement, with the reason.
    NotApplicable(&'static str),
    /// Applies, not implemented yet, with the reason.
    Pending(&'static str),
}

/// One test of the merged list.
#[derive(Debug, Clone, Copy)]
pub struct TestDef {
    pub id: &'static str,
    pub name: &'static str,
    /// `None`: implemented by the suite. `Some(reason)`: not applicable or pending.
    pub skip: Option<(&'static str, &'static str)>,
}

const fn t(id: &'static str, name: &'static str) -> TestDef {
    TestDef { id, name, skip: None }
}

pub const NA: &str = "not applicable";
pub const PENDING: &str = "pending";

/// The merged test list (checklist §8).
pub const TESTS: &[TestDef] = &[
    t("T01", "cookie-attributes"),
    t("T02", "generic-name"),
    t("T03", "token-format+randomness"),
    t("T04", "csprng-code-gate"),
    t("T05", "cookie-only"),
    t("T06", "tls-hsts"),
    t("T07", "strict-mode"),
    t("T08", "fuzz-cookie"),
    t("T09", "rotate-on-auth"),
    t("T10", "fixation-forced-cookie"),
    t("T11", "logout"),
    t("T12", "idle-timeout"),
    t("T13", "absolute-timeout"),
    t("T14", "timeout-config-profiles"),
    t("T15", "renewal"),
    t("T16", "no-store"),
    t("T17", "csrf"),
    t("T18", "half-open"),
    t("T19", "step-up"),
    t("T20", "sessions-api"),
    t("T21", "admin-kill"),
    t("T22", "concurrency-limit"),
    t("T23", "multi-node-revocation"),
    t("T24", "brute-force-detect"),
    t("T25", "anomaly"),
    t("T26", "logging"),
    t("T27", "timeout-warning"),
    TestDef {
        id: "T28",
        name: "jwt-battery",
        skip: Some((
            NA,
            "sessiond issues no JWTs: tokens are opaque reference tokens checked by HMAC tag and store lookup",
        )),
    },
    TestDef {
        id: "T29",
        name: "dbsc-suite",
        skip: Some((
            PENDING,
            "Device Bound Session Credentials are later work (no registration/refresh endpoints yet)",
        )),
    },
    TestDef {
        id: "T30",
        name: "dpop-suite",
        skip: Some((PENDING, "RFC 9449 DPoP for API clients is later work (bearer tokens only today)")),
    },
];

const FEDERATION: &str = "sessiond is neither an OIDC relying party nor an identity provider";
const NO_JWT: &str = "sessiond issues no self-contained tokens (JWT); see T28";
const NO_OAUTH: &str = "sessiond issues no OAuth access or refresh tokens";
const HTML: &str =
    "sessiond serves no HTML pages; the visible logout control is the application's (it calls POST /v1/logout, T11)";

/// Every requirement ID of the checklist, in checklist order.
pub const REQUIREMENTS: &[(&str, Cover)] = &[
    // §1 OWASP Session Management Cheat Sheet
    ("CS-01", Cover::Tests(&["T02"], "")),
    ("CS-02", Cover::Tests(&["T03"], "1,000 tokens over HTTP here; 20,000 through the library in sessiond-core")),
    ("CS-03", Cover::Tests(&["T03"], "per-bit-position monobit on the 256-bit secret")),
    ("CS-04", Cover::Tests(&["T03"], "decoded tokens hold no subject, IP or time")),
    ("CS-05", Cover::Tests(&["T05"], "cookie or `Authorization: Bearer` (documented for native apps); never URL, body or custom header")),
    ("CS-06", Cover::Tests(&["T06"], "sessiond has no plain-HTTP listener beside TLS; the http→https redirect is the proxy's")),
    ("CS-07", Cover::Tests(&["T01"], "")),
    ("CS-08", Cover::Tests(&["T01"], "")),
    ("CS-09", Cover::Tests(&["T01", "T17"], "")),
    ("CS-10", Cover::Tests(&["T01"], "")),
    ("CS-11", Cover::Tests(&["T01"], "")),
    ("CS-12", Cover::Tests(&["T01"], "`Max-Age` only for a documented persistent policy, ≤ the absolute lifetime")),
    ("CS-13", Cover::Tests(&["T05"], "browser-facing responses carry the token only in `Set-Cookie`")),
    ("CS-14", Cover::Tests(&["T07", "T10"], "")),
    ("CS-15", Cover::Tests(&["T08"], "")),
    ("CS-16", Cover::Tests(&["T09"], "role changes: the application calls rotate (tested)")),
    ("CS-17", Cover::NotApplicable("sessiond holds authenticated sessions only; an anonymous pre-login cookie is the application's (its token is retired at login, T10)")),
    ("CS-18", Cover::Tests(&["T19"], "sessiond enforces the step-up demand; which changes need it is the application's choice")),
    ("CS-19", Cover::Tests(&["T08"], "one cookie per session; duplicate or mixed cookies are refused")),
    ("CS-20", Cover::Tests(&["T01"], "one name, one (Path, Domain) pair across create, rotation and logout")),
    ("CS-21", Cover::Tests(&["T12", "T13"], "")),
    ("CS-22", Cover::Tests(&["T12"], "")),
    ("CS-23", Cover::Tests(&["T13"], "")),
    ("CS-24", Cover::Tests(&["T15"], "")),
    ("CS-25", Cover::Tests(&["T11"], "")),
    ("CS-26", Cover::Tests(&["T11", "T17"], "API part: POST /v1/logout exists, is CSRF-protected and works; the button is the application's")),
    ("CS-27", Cover::Tests(&["T16"], "")),
    ("CS-28", Cover::Tests(&["T11"], "")),
    ("CS-29", Cover::Tests(&["T24"], "mass minting: create needs the service API key, whose guessing is throttled too")),
    ("CS-30", Cover::Tests(&["T25"], "")),
    ("CS-31", Cover::Tests(&["T25"], "")),
    ("CS-32", Cover::Tests(&["T26"], "")),
    ("CS-33", Cover::Tests(&["T21"], "the session-admin API needs the service API key; admin step-up is the application's")),
    ("CS-34", Cover::Tests(&["T20", "T22"], "")),
    // §2.1 ASVS 4.0.3 V3
    ("ASVS4-3.1.1", Cover::Tests(&["T05"], "")),
    ("ASVS4-3.2.1", Cover::Tests(&["T09", "T10"], "")),
    ("ASVS4-3.2.2", Cover::Tests(&["T03"], "")),
    ("ASVS4-3.2.3", Cover::Tests(&["T01", "T05"], "")),
    ("ASVS4-3.2.4", Cover::Tests(&["T04"], "")),
    ("ASVS4-3.3.1", Cover::Tests(&["T11", "T23"], "")),
    ("ASVS4-3.3.2", Cover::Tests(&["T12", "T13", "T14"], "")),
    ("ASVS4-3.3.3", Cover::Tests(&["T20", "T23"], "the password change is the application's; it calls revoke-others or bumps the epoch")),
    ("ASVS4-3.3.4", Cover::Tests(&["T20"], "re-entering credentials before the kill is the application's (sessiond offers step-up, T19)")),
    ("ASVS4-3.4.1", Cover::Tests(&["T01"], "")),
    ("ASVS4-3.4.2", Cover::Tests(&["T01"], "")),
    ("ASVS4-3.4.3", Cover::Tests(&["T01"], "")),
    ("ASVS4-3.4.4", Cover::Tests(&["T01"], "")),
    ("ASVS4-3.4.5", Cover::Tests(&["T01"], "")),
    ("ASVS4-3.5.1", Cover::NotApplicable(NO_OAUTH)),
    ("ASVS4-3.5.2", Cover::Tests(&["T21"], "session endpoints accept only minted, expiring session tokens; API keys are service credentials, refused as sessions")),
    ("ASVS4-3.5.3", Cover::NotApplicable(NO_JWT)),
    ("ASVS4-3.6.1", Cover::NotApplicable(FEDERATION)),
    ("ASVS4-3.6.2", Cover::NotApplicable(FEDERATION)),
    ("ASVS4-3.7.1", Cover::Tests(&["T18", "T19"], "")),
    // §2.2 ASVS 5.0.0 V7
    ("ASVS5-7.1.1", Cover::Tests(&["T14"], "")),
    ("ASVS5-7.1.2", Cover::Tests(&["T22"], "")),
    ("ASVS5-7.1.3", Cover::NotApplicable(FEDERATION)),
    ("ASVS5-7.2.1", Cover::Tests(&["T07", "T08", "T12"], "client-visible state (token bits, headers, times) is verified or ignored")),
    ("ASVS5-7.2.2", Cover::Tests(&["T03", "T21"], "")),
    ("ASVS5-7.2.3", Cover::Tests(&["T03", "T04"], "")),
    ("ASVS5-7.2.4", Cover::Tests(&["T09"], "")),
    ("ASVS5-7.3.1", Cover::Tests(&["T12"], "")),
    ("ASVS5-7.3.2", Cover::Tests(&["T13"], "")),
    ("ASVS5-7.4.1", Cover::Tests(&["T11", "T12", "T23"], "")),
    ("ASVS5-7.4.2", Cover::Tests(&["T21", "T23"], "disabling = epoch bump")),
    ("ASVS5-7.4.3", Cover::Tests(&["T20"], "")),
    ("ASVS5-7.4.4", Cover::NotApplicable(HTML)),
    ("ASVS5-7.4.5", Cover::Tests(&["T21"], "")),
    ("ASVS5-7.5.1", Cover::Tests(&["T19"], "")),
    ("ASVS5-7.5.2", Cover::Tests(&["T20"], "")),
    ("ASVS5-7.5.3", Cover::Tests(&["T19"], "")),
    ("ASVS5-7.6.1", Cover::NotApplicable(FEDERATION)),
    ("ASVS5-7.6.2", Cover::Tests(&["T17", "T21"], "sessions are created only by an API-key-authenticated service call, never by a browser request")),
    // §2.3 ASVS 5.0.0, other chapters
    ("ASVS5-3.3.1", Cover::Tests(&["T01"], "")),
    ("ASVS5-3.3.2", Cover::Tests(&["T01"], "")),
    ("ASVS5-3.3.3", Cover::Tests(&["T01"], "")),
    ("ASVS5-3.3.4", Cover::Tests(&["T01", "T05"], "")),
    ("ASVS5-3.3.5", Cover::Tests(&["T01"], "")),
    ("ASVS5-3.4.1", Cover::Tests(&["T06"], "")),
    ("ASVS5-3.5.1", Cover::Tests(&["T17"], "")),
    ("ASVS5-3.5.2", Cover::Tests(&["T17"], "")),
    ("ASVS5-3.5.3", Cover::Tests(&["T17"], "")),
    ("ASVS5-4.4.4", Cover::NotApplicable("sessiond has no WebSocket endpoint; a WebSocket handshake through forward-auth is an ordinary GET (T05, T17)")),
    ("ASVS5-9.1.1…9.2.4", Cover::NotApplicable(NO_JWT)),
    ("ASVS5-11.5.1", Cover::Tests(&["T03", "T04"], "")),
    ("ASVS5-11.5.2", Cover::Tests(&["T03"], "1,000 concurrent HTTP creates, 0 duplicates; 10^6 nightly is not in this suite")),
    ("ASVS5-14.2.1", Cover::Tests(&["T05"], "")),
    ("ASVS5-14.3.1", Cover::Tests(&["T11"], "")),
    ("ASVS5-14.3.2", Cover::Tests(&["T16"], "")),
    ("ASVS5-16.2.5", Cover::Tests(&["T26"], "")),
    ("ASVS5-16.3.1", Cover::Tests(&["T07", "T24", "T26"], "sessiond logs session creation and every refused token; password checks are the application's")),
    // §3 WSTG
    ("WSTG-SESS-01", Cover::Tests(&["T03", "T08"], "")),
    ("WSTG-SESS-02", Cover::Tests(&["T01"], "")),
    ("WSTG-SESS-03", Cover::Tests(&["T09", "T10"], "")),
    ("WSTG-SESS-04", Cover::Tests(&["T05", "T06", "T16", "T17"], "")),
    ("WSTG-SESS-05", Cover::Tests(&["T17"], "")),
    ("WSTG-SESS-06", Cover::Tests(&["T11", "T23"], "single sign-off is not applicable (no federation)")),
    ("WSTG-SESS-07", Cover::Tests(&["T12", "T13"], "")),
    ("WSTG-SESS-08", Cover::Tests(&["T18"], "")),
    ("WSTG-SESS-09", Cover::Tests(&["T01", "T06", "T25"], "a copied bearer cookie is only detectable (anomaly), as the guide notes")),
    ("WSTG-SESS-10", Cover::NotApplicable(NO_JWT)),
    ("WSTG-SESS-11", Cover::Tests(&["T20", "T22", "T25"], "")),
    // §4.1 NIST SP 800-63B rev 3
    ("63B3-7.1-a", Cover::Tests(&["T05"], "")),
    ("63B3-7.1-b", Cover::Tests(&["T09", "T18"], "")),
    ("63B3-7.1.1", Cover::Tests(&["T03", "T04"], "")),
    ("63B3-7.1.3", Cover::Tests(&["T11"], "")),
    ("63B3-7.1.4", Cover::Tests(&["T11"], "")),
    ("63B3-7.1.5", Cover::Tests(&["T01", "T05"], "")),
    ("63B3-7.1.6", Cover::Tests(&["T06"], "")),
    ("63B3-7.1.7", Cover::Tests(&["T12", "T13"], "")),
    ("63B3-7.1.8", Cover::Tests(&["T06"], "")),
    ("63B3-7.1-c", Cover::Tests(&["T17"], "")),
    ("63B3-7.1.1-cookies", Cover::Tests(&["T01", "T12"], "")),
    ("63B3-7.1.2", Cover::NotApplicable(NO_OAUTH)),
    ("63B3-7.2-a", Cover::Tests(&["T01"], "")),
    ("63B3-7.2-b", Cover::Tests(&["T13", "T19"], "")),
    ("63B3-7.2-c", Cover::Tests(&["T11", "T12"], "")),
    ("63B3-7.2.1", Cover::NotApplicable(FEDERATION)),
    ("63B3-4.1.3", Cover::Tests(&["T14"], "")),
    ("63B3-4.2.3", Cover::Tests(&["T12", "T13", "T14"], "")),
    ("63B3-4.3.3", Cover::Tests(&["T12", "T13", "T14"], "which factors a re-authentication uses is the application's")),
    // §4.2 NIST SP 800-63B-4
    ("63B4-5.1-a", Cover::Tests(&["T05"], "")),
    ("63B4-5.1-b", Cover::Tests(&["T01", "T13"], "proof-of-possession sessions (DBSC) are pending, T29")),
    ("63B4-5.1-c", Cover::Tests(&["T13"], "a remember-me session still ends at its absolute lifetime")),
    ("63B4-5.1-d", Cover::Tests(&["T09", "T18"], "")),
    ("63B4-5.1-1…6", Cover::Tests(&["T03", "T04", "T06", "T11", "T12"], "")),
    ("63B4-5.1-e", Cover::Tests(&["T01", "T11"], "")),
    ("63B4-5.1-f", Cover::Tests(&["T06"], "")),
    ("63B4-5.1-g", Cover::Tests(&["T17"], "")),
    ("63B4-5.1-h", Cover::Tests(&["T11"], "the visible control is the application's")),
    ("63B4-5.1.1", Cover::Tests(&["T01", "T03"], "")),
    ("63B4-5.1.2", Cover::NotApplicable(NO_OAUTH)),
    ("63B4-5.2", Cover::Tests(&["T12", "T13", "T14", "T27"], "")),
    ("63B4-5.3", Cover::Tests(&["T25"], "")),
    ("63B4-2.1.3", Cover::Tests(&["T14"], "")),
    ("63B4-2.2.3", Cover::Tests(&["T14"], "")),
    ("63B4-2.3.3", Cover::Tests(&["T14"], "")),
    // §5 SP 800-53, PCI DSS, HIPAA
    ("AC-10", Cover::Tests(&["T22"], "")),
    ("AC-12", Cover::Tests(&["T12", "T13", "T21"], "")),
    ("AC-12(1)", Cover::Tests(&["T11"], "")),
    ("AC-12(2)", Cover::Tests(&["T11"], "API: a documented 204 with the clearing cookie; the message page is the application's")),
    ("AC-12(3)", Cover::Tests(&["T27"], "")),
    ("SC-23", Cover::Tests(&["T06", "T10", "T17"], "")),
    ("SC-23(1)", Cover::Tests(&["T11", "T12"], "")),
    ("SC-23(3)", Cover::Tests(&["T03", "T07"], "")),
    ("SC-23(5)", Cover::NotApplicable("sessiond makes outbound TLS connections only to its own store (Redis/PostgreSQL), configured by the operator; no certificate authority set to test here")),
    ("IA-11", Cover::Tests(&["T13", "T19"], "")),
    ("AC-2(5)", Cover::Tests(&["T12"], "")),
    ("AC-11", Cover::NotApplicable("device lock is an operating-system control")),
    ("SC-10", Cover::Tests(&["T12"], "sessiond's own listener: `idle_connection_timeout` and `header_read_timeout`, checked on a node configured with 1 s; a TLS front in a proxy has its own setting")),
    ("PCI-8.2.8", Cover::Tests(&["T12", "T14"], "")),
    ("HIPAA-164.312(a)(2)(iii)", Cover::Tests(&["T12", "T14"], "")),
    // §6 DBSC and DPoP
    ("DBSC-01", Cover::Pending("T29: DBSC is later work")),
    ("DBSC-02", Cover::Pending("T29: DBSC is later work")),
    ("DBSC-03", Cover::Pending("T29: DBSC is later work")),
    ("DBSC-04", Cover::Pending("T29: DBSC is later work")),
    ("DBSC-05", Cover::Pending("T29: DBSC is later work")),
    ("DBSC-06", Cover::Pending("T29: DBSC is later work")),
    ("DBSC-07", Cover::Pending("T29: DBSC is later work")),
    ("DBSC-08", Cover::Pending("T29: DBSC is later work")),
    ("DBSC-09", Cover::Pending("T29: DBSC is later work")),
    ("DBSC-10", Cover::Pending("T29: DBSC is later work")),
    ("DBSC-11", Cover::Pending("T29: DBSC is later work")),
    ("DBSC-12", Cover::Pending("T29: DBSC is later work")),
    ("RFC9449-4.3", Cover::Pending("T30: DPoP is later work")),
];

/// IDs the checklist writes as a range or context group, which the table names differently.
pub const ALIASES: &[(&str, &str)] = &[
    ("ASVS5-9.1.1", "ASVS5-9.1.1…9.2.4"),
    ("PCI DSS v4.0 / 4.0.1 Req. 8.2.8", "PCI-8.2.8"),
    ("HIPAA 45 CFR §164.312(a)(2)(iii)", "HIPAA-164.312(a)(2)(iii)"),
    ("63B4-5.1-1", "63B4-5.1-1…6"),
];
