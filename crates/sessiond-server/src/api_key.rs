//! Service API keys: `sdk_` + 256 random bits, shown once at creation; only their SHA-256
//! is stored (`api-keys.json`, 0600, in the data directory). A key can also be supplied
//! through the environment (`SESSIOND_API_KEY` / `SESSIOND_API_KEY_FILE`); it is hashed at
//! startup and the text is dropped.
//!
//! A plain (unsalted, fast) hash is enough here: keys are 256-bit random strings, so there is
//! nothing to brute-force; a slow password hash would only slow the request path. Hashes are
//! compared in constant time, against every stored key, without an early exit.

use std::fmt;
use std::path::Path;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::data_dir::{write_private, DataDirError};

/// The recognisable prefix of API keys (for secret scanners).
pub const API_KEY_PREFIX: &str = "sdk_";
/// File name of the key hashes inside the data directory.
pub const API_KEYS_FILE: &str = "api-keys.json";
/// Shortest key accepted from the environment.
pub const MIN_KEY_LEN: usize = 16;

/// A new API key's text. `Debug` and `Display` are redacted.
pub struct ApiKeySecret(String);

impl ApiKeySecret {
    /// A fresh key: `sdk_` + base64url of 32 bytes from the OS CSPRNG.
    pub fn generate() -> Self {
        let raw = sessiond_core::token::os_random::<32>();
        Self(format!("{API_KEY_PREFIX}{}", URL_SAFE_NO_PAD.encode(raw)))
    }

    /// The key text, to show once to the operator.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKeySecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKeySecret(<redacted>)")
    }
}

/// One stored key: a name and the hash.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredKey {
    /// The operator's name for the key (which application uses it).
    pub name: String,
    /// The first 8 characters of the key, to recognise it; not enough to use it.
    pub prefix: String,
    /// Lowercase hex SHA-256 of the key text.
    pub sha256: String,
    /// Creation time, Unix milliseconds.
    pub created_at: u64,
}

#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    version: u32,
    keys: Vec<StoredKey>,
}

/// The set of accepted API keys (as hashes).
#[derive(Clone, Default)]
pub struct ApiKeys {
    keys: Vec<(String, [u8; 32])>,
}

impl fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.keys.iter().map(|(n, _)| n)).finish()
    }
}

fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

fn read_file(path: &Path) -> Result<KeyFile, DataDirError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|_| DataDirError::Invalid {
            path: path.to_owned(),
            message: "the API key file is not valid sessiond JSON",
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(KeyFile { version: 1, keys: Vec::new() }),
        Err(source) => Err(DataDirError::Io { path: path.to_owned(), source }),
    }
}

impl ApiKeys {
    /// The keys stored in `dir/api-keys.json` (none if the file does not exist).
    ///
    /// # Errors
    /// I/O failures; a malformed file.
    pub fn load(dir: &Path) -> Result<Self, DataDirError> {
        let path = dir.join(API_KEYS_FILE);
        let file = read_file(&path)?;
        let mut keys = Vec::with_capacity(file.keys.len());
        for k in file.keys {
            let h = unhex(&k.sha256).ok_or(DataDirError::Invalid {
                path: path.clone(),
                message: "an API key hash is not 64 hex characters",
            })?;
            keys.push((k.name, h));
        }
        Ok(Self { keys })
    }

    /// Creates a key named `name`, stores its hash in `dir/api-keys.json` (0600) and returns
    /// the key text, which is not kept anywhere.
    ///
    /// # Errors
    /// I/O failures; a malformed existing file.
    pub fn create(dir: &Path, name: &str, now_ms: u64) -> Result<(ApiKeySecret, StoredKey), DataDirError> {
        let path = dir.join(API_KEYS_FILE);
        // Read, add, write under an exclusive lock of its own (not the data directory's, which
        // a running server holds): two `api-key create` at once would otherwise each write
        // the file without the other's key.
        let _guard = lock_keys_file(dir)?;
        let mut file = read_file(&path)?;
        let secret = ApiKeySecret::generate();
        let stored = StoredKey {
            name: name.to_owned(),
            prefix: secret.expose().chars().take(8).collect(),
            sha256: hex(&digest(secret.expose())),
            created_at: now_ms,
        };
        file.version = 1;
        file.keys.push(stored.clone());
        let json = serde_json::to_vec_pretty(&file)
            .map_err(|_| DataDirError::Invalid { path: path.clone(), message: "could not encode the API key file" })?;
        write_private(&path, &json)?;
        Ok((secret, stored))
    }

    /// Adds a key given as text (from the environment); only its hash is kept.
    pub fn add_secret(&mut self, name: &str, key: &str) {
        self.keys.push((name.to_owned(), digest(key.trim())));
    }

    /// Whether no key is configured (then every service call is refused).
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The number of keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// The name of the key `presented`, if it is one of ours. Compares the hash against every
    /// key in constant time.
    pub fn verify(&self, presented: &str) -> Option<&str> {
        let h = digest(presented);
        let mut found = None;
        for (name, k) in &self.keys {
            if bool::from(k.ct_eq(&h)) {
                found = Some(name.as_str());
            }
        }
        found
    }
}

/// Waits for and takes the exclusive lock that serializes changes of the API key file;
/// released when the returned file is dropped (or the process dies).
// `File::lock` needs Rust 1.89; the workspace is built with a current toolchain.
#[allow(clippy::incompatible_msrv)]
fn lock_keys_file(dir: &Path) -> Result<std::fs::File, DataDirError> {
    let path = dir.join("api-keys.lock");
    let mut opts = std::fs::OpenOptions::new();
    opts.create(true).truncate(false).write(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let file = opts.open(&path).map_err(|source| DataDirError::Io { path: path.clone(), source })?;
    file.lock().map_err(|source| DataDirError::Io { path, source })?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_key_verifies_and_only_its_hash_is_stored() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let (secret, stored) = ApiKeys::create(tmp.path(), "app", 1).expect("create");
        assert!(secret.expose().starts_with(API_KEY_PREFIX));
        assert_eq!(secret.expose().len(), 4 + 43);
        let text = std::fs::read_to_string(tmp.path().join(API_KEYS_FILE)).expect("read");
        assert!(!text.contains(secret.expose()));
        assert!(text.contains(&stored.sha256));
        let keys = ApiKeys::load(tmp.path()).expect("load");
        assert_eq!(keys.verify(secret.expose()), Some("app"));
        assert_eq!(keys.verify("sdk_wrong"), None);
        assert_eq!(format!("{secret:?}"), "ApiKeySecret(<redacted>)");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let m = std::fs::metadata(tmp.path().join(API_KEYS_FILE)).expect("meta").permissions().mode();
            assert_eq!(m & 0o777, 0o600);
        }
    }

    #[test]
    fn environment_keys_verify() {
        let mut keys = ApiKeys::default();
        assert!(keys.is_empty());
        keys.add_secret("env", "sdk_0123456789abcdef\n");
        assert_eq!(keys.verify("sdk_0123456789abcdef"), Some("env"));
    }

    /// Concurrent creations each keep their key: the read-add-write is serialized.
    #[test]
    fn concurrent_creations_lose_no_key() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().to_owned();
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let dir = dir.clone();
                std::thread::spawn(move || {
                    (0..10)
                        .map(|i| ApiKeys::create(&dir, &format!("k{t}-{i}"), 0).expect("create").0)
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let secrets: Vec<ApiKeySecret> = threads.into_iter().flat_map(|t| t.join().expect("join")).collect();
        let keys = ApiKeys::load(&dir).expect("load");
        assert_eq!(keys.len(), 80);
        for s in &secrets {
            assert!(keys.verify(s.expose()).is_some(), "a created key was lost");
        }
    }
}
