//! Session tokens: the secret a client holds.
//!
//! # Format
//!
//! `sds_` followed by the unpadded base64url encoding of 53 bytes:
//!
//! | bytes | content |
//! |---|---|
//! | 1 | format version (`1`) |
//! | 4 | id of the key that signed the token (big-endian) |
//! | 32 | 256-bit secret from the operating system's CSPRNG |
//! | 16 | HMAC-SHA-256 tag over prefix, version, key id and secret, truncated to 128 bits |
//!
//! The `sds_` prefix lets secret scanners find leaked tokens. The tag lets every node reject a
//! forged or random token with no store access; it is compared in constant time. The store
//! never sees the token: it only sees [`TokenHash`], a domain-separated SHA-256 of the secret,
//! so a leaked database or backup yields no usable session. The hash does not depend on the
//! signing key, so rotating keys does not change where a session is found.
//!
//! # Randomness
//!
//! Secrets come only from [`os_random`], which calls the operating system's CSPRNG through
//! `getrandom`. Unlike session ids ([`crate::id::IdSource`]), this source is deliberately not
//! injectable: no configuration, test helper or feature can substitute a seeded generator.

use std::fmt;
use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::error::MalformedInput;
use crate::id::SessionId;

/// The recognisable prefix of every session token.
pub const TOKEN_PREFIX: &str = "sds_";
const VERSION: u8 = 1;
const SECRET_LEN: usize = 32;
const TAG_LEN: usize = 16;
const RAW_LEN: usize = 1 + 4 + SECRET_LEN + TAG_LEN;
/// Length in characters of a token's text form.
pub const TOKEN_LEN: usize = TOKEN_PREFIX.len() + (RAW_LEN * 4).div_ceil(3);
const HASH_DOMAIN: &[u8] = b"sessiond/token-hash/v1\0";
const CSRF_DOMAIN: &[u8] = b"sessiond/csrf/v1\0";
const SUCCESSOR_DOMAIN: &[u8] = b"sessiond/successor-pad/v1\0";

type HmacSha256 = Hmac<Sha256>;

/// `N` bytes from the operating system's CSPRNG.
///
/// This is the only source of token and key randomness in sessiond.
///
/// # Panics
/// Panics if the operating system cannot provide randomness: continuing with weak tokens
/// would be worse than stopping.
pub fn os_random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    #[allow(clippy::expect_used)] // no safe way to continue without an OS CSPRNG
    getrandom::fill(&mut b).expect("the operating system's CSPRNG failed");
    b
}

/// The id of a signing key, carried in every token it signed.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct KeyId(pub u32);

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A 256-bit key for token tags. Zeroized on drop; `Debug` never shows it.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct SigningKey([u8; 32]);

impl SigningKey {
    /// A new key from the OS CSPRNG.
    pub fn generate() -> Self {
        Self(os_random::<32>())
    }

    /// Wraps existing key material (from a key file).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The key material, for writing to an owner-only key file.
    pub fn expose_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningKey(<redacted>)")
    }
}

/// The set of keys that verify tokens, one of which signs new ones.
///
/// Key rotation: add a new key and make it the signer; keep the old ones for at least the
/// longest absolute session lifetime. Tokens signed by an old key keep verifying, so nobody is
/// logged out; tokens naming an unknown key id are rejected without a store lookup.
#[derive(Clone)]
pub struct KeyRing {
    signer: KeyId,
    /// Few keys (usually one to three): a linear scan beats hashing the key id.
    macs: Arc<Vec<(KeyId, HmacSha256)>>,
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ids: Vec<_> = self.macs.iter().map(|(k, _)| k).collect();
        ids.sort();
        f.debug_struct("KeyRing").field("signer", &self.signer).field("key_ids", &ids).finish()
    }
}

impl KeyRing {
    /// A ring with one key, which signs.
    pub fn single(id: KeyId, key: SigningKey) -> Self {
        Self::new(id, [(id, key)]).unwrap_or_else(|_| unreachable!("the signer is in the ring"))
    }

    /// A ring of `keys` where `signer` signs new tokens.
    ///
    /// # Errors
    /// [`crate::Error::ApiMisuse`] when `signer` is not among `keys`.
    pub fn new(signer: KeyId, keys: impl IntoIterator<Item = (KeyId, SigningKey)>) -> crate::Result<Self> {
        let mut macs: Vec<(KeyId, HmacSha256)> = Vec::new();
        for (id, key) in keys {
            #[allow(clippy::expect_used)] // HMAC accepts keys of any length
            let mac = HmacSha256::new_from_slice(key.expose_bytes()).expect("HMAC takes any key length");
            macs.retain(|(k, _)| *k != id);
            macs.push((id, mac));
        }
        if !macs.iter().any(|(k, _)| *k == signer) {
            return Err(crate::Error::ApiMisuse("the signing key id is not in the key ring"));
        }
        Ok(Self { signer, macs: Arc::new(macs) })
    }

    /// The id of the key that signs new tokens.
    pub fn signer(&self) -> KeyId {
        self.signer
    }

    fn mac(&self, kid: KeyId) -> Option<&HmacSha256> {
        self.macs.iter().find(|(k, _)| *k == kid).map(|(_, m)| m)
    }

    fn tag(&self, kid: KeyId, body: &[u8]) -> Option<[u8; 32]> {
        let mut mac = self.mac(kid)?.clone();
        mac.update(TOKEN_PREFIX.as_bytes());
        mac.update(body);
        Some(mac.finalize().into_bytes().into())
    }

    /// Mints a new token with a fresh secret from the OS CSPRNG.
    pub fn mint(&self) -> SessionToken {
        self.assemble(self.signer, Secret(os_random::<SECRET_LEN>()))
    }

    fn assemble(&self, kid: KeyId, secret: Secret) -> SessionToken {
        let mut raw = [0u8; RAW_LEN];
        raw[0] = VERSION;
        raw[1..5].copy_from_slice(&kid.0.to_be_bytes());
        raw[5..5 + SECRET_LEN].copy_from_slice(&secret.0);
        // The signer (or the key that signed the predecessor) is always in the ring.
        let tag = self.tag(kid, &raw[..5 + SECRET_LEN]).unwrap_or([0u8; 32]);
        raw[5 + SECRET_LEN..].copy_from_slice(&tag[..TAG_LEN]);
        let mut text = String::with_capacity(TOKEN_LEN);
        text.push_str(TOKEN_PREFIX);
        URL_SAFE_NO_PAD.encode_string(raw, &mut text);
        raw.zeroize();
        SessionToken { text, hash: secret.hash(), kid, secret }
    }

    /// Parses `text` and checks its tag. No store is touched.
    ///
    /// # Errors
    /// [`MalformedInput::Token`] for anything that is not a well-formed token with a valid tag
    /// from a key in this ring. The error never says which check failed.
    pub fn verify(&self, text: &str) -> Result<VerifiedToken, MalformedInput> {
        let body = text.strip_prefix(TOKEN_PREFIX).ok_or(MalformedInput::Token)?;
        if text.len() != TOKEN_LEN {
            return Err(MalformedInput::Token);
        }
        let mut raw = [0u8; RAW_LEN + 2];
        let n = URL_SAFE_NO_PAD.decode_slice(body.as_bytes(), &mut raw).map_err(|_| MalformedInput::Token)?;
        if n != RAW_LEN || raw[0] != VERSION {
            return Err(MalformedInput::Token);
        }
        let kid = KeyId(u32::from_be_bytes([raw[1], raw[2], raw[3], raw[4]]));
        let expected = self.tag(kid, &raw[..5 + SECRET_LEN]).ok_or(MalformedInput::Token)?;
        let ok: bool = expected[..TAG_LEN].ct_eq(&raw[5 + SECRET_LEN..RAW_LEN]).into();
        if !ok {
            raw.zeroize();
            return Err(MalformedInput::Token);
        }
        let mut secret = [0u8; SECRET_LEN];
        secret.copy_from_slice(&raw[5..5 + SECRET_LEN]);
        raw.zeroize();
        let secret = Secret(secret);
        Ok(VerifiedToken { hash: secret.hash(), kid, secret })
    }

    /// The CSRF synchronizer token of a session: an HMAC of its public id under the signing
    /// key, so that it survives token rotation and needs no storage.
    pub fn csrf_token(&self, id: &SessionId) -> String {
        self.csrf_with(self.signer, id).unwrap_or_default()
    }

    fn csrf_with(&self, kid: KeyId, id: &SessionId) -> Option<String> {
        let mut mac = self.mac(kid)?.clone();
        mac.update(CSRF_DOMAIN);
        mac.update(id.as_bytes());
        let tag = mac.finalize().into_bytes();
        let mut raw = [0u8; 4 + 24];
        raw[..4].copy_from_slice(&kid.0.to_be_bytes());
        raw[4..].copy_from_slice(&tag[..24]);
        Some(URL_SAFE_NO_PAD.encode(raw))
    }

    /// Whether `presented` is the CSRF token of session `id` (under any key of the ring).
    /// Constant-time in the token's content.
    pub fn verify_csrf(&self, id: &SessionId, presented: &str) -> bool {
        let mut raw = [0u8; 30];
        let Ok(28) = URL_SAFE_NO_PAD.decode_slice(presented.as_bytes(), &mut raw) else {
            return false;
        };
        let kid = KeyId(u32::from_be_bytes([raw[0], raw[1], raw[2], raw[3]]));
        match self.csrf_with(kid, id) {
            Some(expected) => expected.as_bytes().ct_eq(presented.as_bytes()).into(),
            None => false,
        }
    }

    /// Rebuilds the successor token sealed by a rotation (see [`Sealed`]).
    pub(crate) fn unseal(&self, sealed: &Sealed, predecessor: &VerifiedToken) -> SessionToken {
        let pad = predecessor.secret.pad();
        let mut s = [0u8; SECRET_LEN];
        for (i, b) in s.iter_mut().enumerate() {
            *b = sealed.secret[i] ^ pad[i];
        }
        self.assemble(sealed.kid, Secret(s))
    }

    /// Seals `successor` so that only a holder of `predecessor` can recover it.
    pub(crate) fn seal(successor: &SessionToken, predecessor: &VerifiedToken) -> Sealed {
        let pad = predecessor.secret.pad();
        let mut s = [0u8; SECRET_LEN];
        for (i, b) in s.iter_mut().enumerate() {
            *b = successor.secret.0[i] ^ pad[i];
        }
        Sealed { kid: successor.kid, secret: s }
    }
}

#[derive(Clone, Zeroize, ZeroizeOnDrop)]
struct Secret([u8; SECRET_LEN]);

impl Secret {
    fn hash(&self) -> TokenHash {
        let mut h = Sha256::new();
        h.update(HASH_DOMAIN);
        h.update(self.0);
        TokenHash(h.finalize().into())
    }

    fn pad(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(SUCCESSOR_DOMAIN);
        h.update(self.0);
        h.finalize().into()
    }
}

/// The successor of a rotated token, encrypted (XOR with a SHA-256 pad derived from the
/// *predecessor's* secret). The store keeps it beside the predecessor's hash for the grace
/// window so that a retried request with the old token gets the *same* successor; a leaked
/// store cannot open it, because the pad needs the old secret, which the store never has.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Sealed {
    /// Key id of the successor.
    pub kid: KeyId,
    /// Successor secret XOR pad.
    #[serde(with = "b64_32")]
    pub secret: [u8; 32],
}

impl fmt::Debug for Sealed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Sealed(<redacted>)")
    }
}

/// A freshly minted token: the secret text to hand to the client, once.
///
/// `Debug` and `Display` are redacted; use [`SessionToken::expose`] where the text must go
/// out (a `Set-Cookie` header, an API response).
pub struct SessionToken {
    text: String,
    hash: TokenHash,
    kid: KeyId,
    secret: Secret,
}

impl SessionToken {
    /// The token text. Only for sending to its owner; never log it.
    pub fn expose(&self) -> &str {
        &self.text
    }

    /// The hash under which the store knows this token.
    pub fn hash(&self) -> &TokenHash {
        &self.hash
    }
}

impl Drop for SessionToken {
    fn drop(&mut self) {
        self.text.zeroize();
    }
}

impl fmt::Debug for SessionToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionToken(<redacted>, hash={})", self.hash.short())
    }
}

impl fmt::Display for SessionToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted session token>")
    }
}

/// A token whose tag has been checked. Holds the secret only to open a sealed successor.
pub struct VerifiedToken {
    hash: TokenHash,
    kid: KeyId,
    secret: Secret,
}

impl VerifiedToken {
    /// The hash under which the store knows this token.
    pub fn hash(&self) -> &TokenHash {
        &self.hash
    }

    /// The key that signed it.
    pub fn key_id(&self) -> KeyId {
        self.kid
    }
}

impl fmt::Debug for VerifiedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VerifiedToken(hash={})", self.hash.short())
    }
}

/// Domain-separated SHA-256 of a token's secret: what stores keep and index instead of the
/// token. Safe to store; not safe to publish in full (it is the lookup key), so `Display`
/// shows only a short prefix for correlation in logs and events.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TokenHash(pub [u8; 32]);

impl TokenHash {
    /// The first 8 bytes in hex: enough to correlate log lines, useless as a lookup key.
    pub fn short(&self) -> String {
        self.0[..8].iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Full lowercase hex, for store keys.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Parses [`TokenHash::to_hex`] output.
    pub fn from_hex(s: &str) -> Option<Self> {
        if s.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, o) in out.iter_mut().enumerate() {
            *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some(Self(out))
    }
}

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenHash({}…)", self.short())
    }
}

impl fmt::Display for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}…", self.short())
    }
}

impl serde::Serialize for TokenHash {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> serde::Deserialize<'de> for TokenHash {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str> as serde::Deserialize>::deserialize(d)?;
        Self::from_hex(&s).ok_or_else(|| serde::de::Error::custom("invalid token hash"))
    }
}

mod b64_32 {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;

    pub fn serialize<S: serde::Serializer>(v: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&URL_SAFE_NO_PAD.encode(v))
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let s = <std::borrow::Cow<'de, str> as serde::Deserialize>::deserialize(d)?;
        let v = URL_SAFE_NO_PAD.decode(s.as_bytes()).map_err(serde::de::Error::custom)?;
        v.try_into().map_err(|_| serde::de::Error::custom("expected 32 bytes"))
    }
}

#[cfg(test)]
mod tests;
