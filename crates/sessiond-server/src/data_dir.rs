//! The data directory: created owner-only (0700) on first run; holds the signing key
//! (`signing-key`, 0600), the API key hashes (`api-keys.json`, 0600) and the embedded store.

use std::io::Write;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use sessiond_core::token::{KeyId, KeyRing, SigningKey};

/// File name of the signing key inside the data directory.
pub const SIGNING_KEY_FILE: &str = "signing-key";

/// A failure reading or writing the data directory. Messages name the path, never a secret.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DataDirError {
    /// An I/O error on `path`.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A file exists but its content is not what sessiond wrote.
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: &'static str,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DataDirError + '_ {
    move |source| DataDirError::Io { path: path.to_owned(), source }
}

/// Creates `dir` (and parents) with mode 0700 if it does not exist, then checks it: it must be
/// a directory (a symlink is followed) owned by this process's user, and is narrowed to 0700
/// if it was wider. A directory someone else created or can write to (a shared location such
/// as `/tmp`) could hold a planted `api-keys.json` (their key) or a planted signing key.
///
/// # Errors
/// When the directory cannot be created, or is not ours.
pub fn prepare(dir: &Path) -> Result<(), DataDirError> {
    if !dir.is_dir() {
        let mut b = std::fs::DirBuilder::new();
        b.recursive(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            b.mode(0o700);
        }
        b.create(dir).map_err(io(dir))?;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        // Followed if `dir` is a symlink: what matters is who owns the directory it leads to.
        let meta = std::fs::metadata(dir).map_err(io(dir))?;
        if !meta.is_dir() {
            return Err(DataDirError::Invalid {
                path: dir.to_owned(),
                message: "the data directory is not a directory",
            });
        }
        if meta.uid() != rustix::process::geteuid().as_raw() {
            return Err(DataDirError::Invalid {
                path: dir.to_owned(),
                message: "the data directory belongs to another user; use a directory of your own",
            });
        }
        if meta.mode() & 0o077 != 0 {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io(dir))?;
        }
    }
    Ok(())
}

/// File name of the lock that keeps two processes from opening one data directory.
pub const LOCK_FILE: &str = "sessiond.lock";

/// An exclusive, advisory lock on a data directory, held while a server (or a direct CLI
/// command) uses it; released when dropped or when the process dies (also on `kill -9`).
#[derive(Debug)]
pub struct DirLock {
    _file: std::fs::File,
}

impl DirLock {
    /// Takes the lock, or fails at once if another process holds it.
    ///
    /// # Errors
    /// [`DataDirError::Invalid`] when the directory is in use; I/O failures.
    // `File::try_lock` needs Rust 1.89; the binary is built with a current toolchain.
    #[allow(clippy::incompatible_msrv)]
    pub fn acquire(dir: &Path) -> Result<Self, DataDirError> {
        let path = dir.join(LOCK_FILE);
        let file =
            std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path).map_err(io(&path))?;
        match file.try_lock() {
            Ok(()) => Ok(Self { _file: file }),
            Err(std::fs::TryLockError::WouldBlock) => Err(DataDirError::Invalid {
                path: dir.to_owned(),
                message: "the data directory is in use by another sessiond process (a running server? \
                          then use --server URL)",
            }),
            Err(std::fs::TryLockError::Error(source)) => Err(DataDirError::Io { path, source }),
        }
    }
}

/// Writes `bytes` to `path` atomically with mode 0600: a new temporary file with a unique
/// name (created exclusively, so neither a planted file nor a symlink is followed), synced,
/// renamed over `path`, then the directory synced so that the rename survives a power loss.
///
/// # Errors
/// I/O failures.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), DataDirError> {
    let unique = URL_SAFE_NO_PAD.encode(sessiond_core::token::os_random::<9>());
    let tmp = path.with_extension(format!("tmp-{unique}"));
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(&tmp).map_err(io(&tmp))?;
    let written = f.write_all(bytes).and_then(|()| f.sync_all());
    drop(f);
    if let Err(e) = written.and_then(|()| std::fs::rename(&tmp, path)) {
        let _ = std::fs::remove_file(&tmp);
        return Err(io(path)(e));
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::File::open(parent).and_then(|d| d.sync_all()).map_err(io(parent))?;
    }
    Ok(())
}

/// Reads a key file: the base64url (unpadded) encoding of 32 bytes, surrounding whitespace
/// ignored.
///
/// # Errors
/// I/O failures; content that is not 32 bytes of base64url.
pub fn read_signing_key(path: &Path) -> Result<SigningKey, DataDirError> {
    let text = std::fs::read_to_string(path).map_err(io(path))?;
    let bytes = URL_SAFE_NO_PAD.decode(text.trim()).map_err(|_| DataDirError::Invalid {
        path: path.to_owned(),
        message: "the signing key file must hold 32 bytes in unpadded base64url",
    })?;
    let key: [u8; 32] = bytes.try_into().map_err(|_| DataDirError::Invalid {
        path: path.to_owned(),
        message: "the signing key file must hold 32 bytes in unpadded base64url",
    })?;
    Ok(SigningKey::from_bytes(key))
}

/// The key ring: from `key_file` if given (it must exist: several nodes share it), otherwise
/// from `dir/signing-key`, generated there (0600) on first run.
///
/// # Errors
/// I/O failures; a malformed key file.
pub fn key_ring(dir: &Path, key_file: Option<&Path>) -> Result<KeyRing, DataDirError> {
    let key = match key_file {
        Some(p) => read_signing_key(p)?,
        None => {
            let path = dir.join(SIGNING_KEY_FILE);
            if path.exists() {
                read_signing_key(&path)?
            } else {
                let key = SigningKey::generate();
                write_private(&path, URL_SAFE_NO_PAD.encode(key.expose_bytes()).as_bytes())?;
                tracing::info!(path = %path.display(), "generated a new signing key");
                key
            }
        }
    };
    Ok(KeyRing::single(KeyId(1), key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_run_creates_private_dir_and_key_and_reuses_it() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("a/b");
        prepare(&dir).expect("prepare");
        let ring = key_ring(&dir, None).expect("key");
        let token = ring.mint();
        let again = key_ring(&dir, None).expect("key again");
        assert!(again.verify(token.expose()).is_ok(), "the same key is loaded on the next run");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| std::fs::metadata(p).expect("meta").permissions().mode() & 0o777;
            assert_eq!(mode(&dir), 0o700);
            assert_eq!(mode(&dir.join(SIGNING_KEY_FILE)), 0o600);
        }
    }

    #[test]
    fn the_directory_lock_is_exclusive() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let held = DirLock::acquire(tmp.path()).expect("first");
        assert!(DirLock::acquire(tmp.path()).is_err());
        drop(held);
        assert!(DirLock::acquire(tmp.path()).is_ok());
    }

    /// A data directory in a shared place is not trusted as found: a wide mode is narrowed, a
    /// symlink or another user's directory is refused, and key files are written through a
    /// fresh temporary file, never through one planted beside them.
    #[cfg(unix)]
    #[test]
    fn a_data_directory_someone_else_could_write_is_not_trusted() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let tmp = tempfile::tempdir().expect("tempdir");
        let mode = |p: &Path| std::fs::symlink_metadata(p).expect("meta").permissions().mode() & 0o777;
        let wide = tmp.path().join("wide");
        std::fs::create_dir(&wide).expect("mkdir");
        std::fs::set_permissions(&wide, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        prepare(&wide).expect("ours");
        assert_eq!(mode(&wide), 0o700);
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&wide, &link).expect("symlink");
        prepare(&link).expect("a symlink to a directory of ours");
        if rustix::process::geteuid().is_root() {
            let theirs = tmp.path().join("theirs");
            std::fs::create_dir(&theirs).expect("mkdir");
            std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).expect("chown");
            assert_eq!(std::fs::metadata(&theirs).expect("meta").uid(), 65534);
            assert!(matches!(prepare(&theirs), Err(DataDirError::Invalid { .. })));
            let their_link = tmp.path().join("their-link");
            std::os::unix::fs::symlink(&theirs, &their_link).expect("symlink");
            assert!(matches!(prepare(&their_link), Err(DataDirError::Invalid { .. })));
        }
        // A file planted where the old fixed temporary name was, pointing elsewhere.
        let elsewhere = tmp.path().join("stolen");
        std::os::unix::fs::symlink(&elsewhere, wide.join("signing-key.tmp")).expect("plant");
        let key = wide.join(SIGNING_KEY_FILE);
        std::fs::write(&key, "old").expect("write");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        write_private(&key, b"secret").expect("write_private");
        assert!(!elsewhere.exists(), "the secret went through a planted symlink");
        assert_eq!(std::fs::read(&key).expect("read"), b"secret");
        assert_eq!(mode(&key), 0o600, "the replaced file keeps no wider mode");
    }

    #[test]
    fn malformed_key_file_is_refused() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let p = tmp.path().join("k");
        std::fs::write(&p, "not a key").expect("write");
        assert!(matches!(read_signing_key(&p), Err(DataDirError::Invalid { .. })));
    }
}
