//! Operator commands directly on the data directory (no server running on it).

use std::io::{BufReader, Write as _};
use std::time::Duration;

use anyhow::{bail, Context as _};
use sessiond_core::{RevokeReason, SessionId};
use sessiond_server::api::{EventView, SessionView};
use sessiond_server::api_key::ApiKeys;
use sessiond_server::config::{Config, StoreUrl};

use crate::cli::{Command, EventsCmd, SessionsCmd, SubjectsCmd};

fn print(v: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

fn id(s: &str) -> anyhow::Result<SessionId> {
    s.parse().map_err(|_| anyhow::anyhow!("{s:?} is not a session id (expected ses_…)"))
}

/// `api-key create`: stores the hash in the data directory and prints the key once.
pub fn create_api_key(config: &Config, name: &str) -> anyhow::Result<()> {
    if name.trim().is_empty() || name.len() > 128 || name.chars().any(char::is_control) {
        bail!("--name must be 1 to 128 printable characters");
    }
    sessiond_server::data_dir::prepare(&config.data_dir)?;
    let now = sessiond_core::time::Clock::now(&sessiond_core::time::SystemClock).0;
    let (secret, stored) = ApiKeys::create(&config.data_dir, name, now)?;
    eprintln!(
        "API key {:?} created (hash stored in {}); it is shown only once:",
        stored.name,
        config.data_dir.join(sessiond_server::api_key::API_KEYS_FILE).display()
    );
    println!("{}", secret.expose());
    Ok(())
}

/// Runs an operator command on the data directory.
pub async fn run(config: &Config, cmd: &Command) -> anyhow::Result<()> {
    if config.store == StoreUrl::Memory {
        bail!("the memory store lives inside a server process: use --server URL");
    }
    if !config.data_dir.is_dir() && !matches!(cmd, Command::Import { .. }) {
        bail!("no data directory at {} (set --data-dir, or use --server URL)", config.data_dir.display());
    }
    let (engine, backend, _lock) = sessiond_server::serve::open_engine(config).await?;
    let result = async {
        match cmd {
            Command::Sessions(SessionsCmd::List { subject, tenant, limit, cursor }) => {
                let after = cursor.as_deref().map(str::parse).transpose().map_err(|e| anyhow::anyhow!("{e}"))?;
                let page = engine.list(tenant, subject, after, *limit).await?;
                let sessions: Vec<_> = page.sessions.iter().map(|r| SessionView::of(r)).collect();
                print(&serde_json::json!({ "sessions": sessions, "next_cursor": page.next.map(|c| c.to_string()) }))
            }
            Command::Sessions(SessionsCmd::Show { id: s }) => match engine.get(&id(s)?).await? {
                Some(r) => print(&SessionView::of(&r)),
                None => bail!("no live session {s}"),
            },
            Command::Sessions(SessionsCmd::Revoke { id: s }) => {
                if !engine.revoke(&id(s)?, RevokeReason::Admin).await? {
                    bail!("no session {s}");
                }
                println!("revoked {s}");
                Ok(())
            }
            Command::Subjects(SubjectsCmd::Revoke { subject, tenant, except }) => {
                let except = except.as_deref().map(id).transpose()?;
                let gone = engine.revoke_subject(tenant, subject, except.as_ref(), RevokeReason::Subject).await?;
                let revoked: Vec<String> = gone.iter().map(ToString::to_string).collect();
                print(&serde_json::json!({ "revoked": revoked }))
            }
            Command::Subjects(SubjectsCmd::BumpEpoch { subject, tenant }) => {
                print(&serde_json::json!({ "epoch": engine.bump_epoch(tenant, subject).await? }))
            }
            Command::Events(EventsCmd::Tail { after, follow }) => {
                let mut cursor = *after;
                loop {
                    let events = engine.events(cursor, 1000).await?;
                    for e in &events {
                        println!("{}", serde_json::to_string(&EventView::of(e))?);
                        cursor = e.cursor;
                    }
                    if events.is_empty() {
                        if !*follow {
                            return Ok(());
                        }
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
            Command::Export { file } => {
                let n = if file.as_os_str() == "-" {
                    let mut out = std::io::BufWriter::new(std::io::stdout());
                    let n = backend.export_jsonl(&mut out).await?;
                    out.flush()?;
                    n
                } else {
                    // Owner-only, and never over an existing file or through a symlink: the
                    // export holds subjects, addresses, user agents and application data.
                    use std::os::unix::fs::OpenOptionsExt as _;
                    let f = std::fs::OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .mode(0o600)
                        .open(file)
                        .with_context(|| format!("cannot create {} (it must not exist yet)", file.display()))?;
                    let mut w = std::io::BufWriter::new(f);
                    let n = backend.export_jsonl(&mut w).await?;
                    w.flush()?;
                    n
                };
                eprintln!("exported {n} sessions");
                Ok(())
            }
            Command::Import { file, replace } => {
                if !*replace {
                    let held = backend.export_jsonl(&mut std::io::sink()).await?;
                    if held > 0 {
                        bail!(
                            "the data directory already holds {held} sessions: importing an export over them would \
                             bring back every session revoked since the export was taken; use --replace to import anyway"
                        );
                    }
                }
                let n = if file.as_os_str() == "-" {
                    backend.import_jsonl(BufReader::new(std::io::stdin())).await?
                } else {
                    let f = std::fs::File::open(file).with_context(|| format!("cannot open {}", file.display()))?;
                    backend.import_jsonl(BufReader::new(f)).await?
                };
                eprintln!("imported {n} sessions");
                Ok(())
            }
            _ => bail!("unsupported command"),
        }
    }
    .await;
    backend.flush().await?;
    result
}
