//! Arguments and dispatch.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use sessiond_server::config::{Config, LogFormat, Overrides, StoreUrl};

use crate::{client, direct};

/// sessiond: a secure, distributed session authority.
#[derive(Debug, Parser)]
#[command(name = "sessiond", version, about, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command understands. Each flag has an environment variable; flags win.
#[derive(Debug, Args)]
pub struct Global {
    /// TOML configuration file [env: SESSIOND_CONFIG]
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Data directory (default ./sessiond-data) [env: SESSIOND_DATA_DIR]
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Session store: `embedded:` (default), `memory:`, `redis://…`, `rediss://…`,
    /// `redis+sentinel://…`, `redis+cluster://…` or `postgres://…` [env: SESSIOND_STORE]
    #[arg(long, global = true, value_name = "URL")]
    pub store: Option<String>,
    /// Talk to a running server at this URL instead of opening the data directory (https://,
    /// or http:// on a loopback address only)
    /// [env: SESSIOND_SERVER]
    #[arg(long, global = true, value_name = "URL", env = "SESSIOND_SERVER")]
    pub server: Option<String>,
    /// The CA certificate (PEM) to trust for an https:// --server, the only one trusted
    /// [env: SESSIOND_CA_CERT]
    #[arg(long, global = true, value_name = "FILE", env = "SESSIOND_CA_CERT")]
    pub ca_cert: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server.
    Serve(ServeArgs),
    /// Manage service API keys.
    #[command(subcommand, name = "api-key")]
    ApiKey(ApiKeyCmd),
    /// Check configuration files.
    #[command(subcommand)]
    Config(ConfigCmd),
    /// Inspect and revoke sessions.
    #[command(subcommand)]
    Sessions(SessionsCmd),
    /// Act on all sessions of a subject.
    #[command(subcommand)]
    Subjects(SubjectsCmd),
    /// Read the lifecycle event log.
    #[command(subcommand)]
    Events(EventsCmd),
    /// Export every session and epoch of the embedded store as JSON lines.
    Export {
        /// Output file (`-` for standard output).
        file: PathBuf,
    },
    /// Import JSON lines written by `export` (all or nothing), into a data directory without
    /// sessions unless `--replace`.
    Import {
        /// Input file (`-` for standard input).
        file: PathBuf,
        /// Import into a store that already holds sessions. An export older than the store
        /// brings back the sessions revoked since it was taken, with working tokens.
        #[arg(long)]
        replace: bool,
    },
    /// Print the OpenAPI document.
    #[command(hide = true)]
    Openapi,
    /// Serve an empty axum handler with the same server stack (for benchmarks).
    #[command(hide = true, name = "bench-empty")]
    BenchEmpty {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:7421")]
        listen: SocketAddr,
        /// Answer with the same six `X-Session-*` headers as a forward-auth `200` (fixed
        /// values): a second baseline that separates the response's size from the session work.
        #[arg(long, conflicts_with = "with_state")]
        session_headers: bool,
        /// Take an `Arc` state from the router, as every v1 handler takes the server's state: a
        /// third baseline that shows what axum's per-request state and route clones cost.
        #[arg(long, conflicts_with = "bare")]
        with_state: bool,
        /// No middleware at all: the plainest empty axum handler, a fourth baseline.
        #[arg(long, conflicts_with = "session_headers")]
        bare: bool,
    },
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on, IP:port (default 127.0.0.1:7420) [env: SESSIOND_LISTEN]
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// TLS certificate chain, PEM [env: SESSIOND_TLS_CERT]
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key, PEM [env: SESSIOND_TLS_KEY]
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Development mode: plain HTTP on loopback only, cookie `sid` without Secure
    /// [env: SESSIOND_DEV]
    #[arg(long)]
    pub dev: bool,
    /// Allow plain HTTP on a non-loopback address because a TLS-terminating proxy is in front
    /// [env: SESSIOND_BEHIND_TLS_PROXY]
    #[arg(long)]
    pub behind_tls_proxy: bool,
    /// File holding a service API key [env: SESSIOND_API_KEY_FILE; the key itself: SESSIOND_API_KEY]
    #[arg(long, value_name = "FILE")]
    pub api_key_file: Option<PathBuf>,
    /// File holding the token signing key (shared by all nodes) [env: SESSIOND_SIGNING_KEY_FILE]
    #[arg(long, value_name = "FILE")]
    pub signing_key_file: Option<PathBuf>,
    /// Log format: text or json [env: SESSIOND_LOG_FORMAT]
    #[arg(long, value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,
    /// Log filter, e.g. info or sessiond=debug [env: SESSIOND_LOG]
    #[arg(long, value_name = "FILTER")]
    pub log: Option<String>,
    /// Take client IPs from X-Forwarded-For / X-Real-IP [env: SESSIOND_TRUST_FORWARDED_HEADERS]
    #[arg(long)]
    pub trust_forwarded_headers: bool,
    /// Largest request body in bytes (default 65536) [env: SESSIOND_MAX_BODY_BYTES]
    #[arg(long, value_name = "BYTES")]
    pub max_body_bytes: Option<usize>,
    /// Grace window of a rotated-out token in seconds (default 10) [env: SESSIOND_ROTATION_GRACE]
    #[arg(long, value_name = "SECS")]
    pub rotation_grace: Option<u64>,
}

#[derive(Debug, Subcommand)]
pub enum ApiKeyCmd {
    /// Create a key; it is printed once and only its hash is stored.
    Create {
        /// Which application will use the key.
        #[arg(long)]
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCmd {
    /// Validate a TOML configuration file (unknown keys, policies, route rules).
    Check {
        /// The file.
        file: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum SessionsCmd {
    /// List a subject's live sessions.
    List {
        /// The subject.
        #[arg(long)]
        subject: String,
        /// The tenant.
        #[arg(long, default_value = "")]
        tenant: String,
        /// Page size.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Cursor from a previous page.
        #[arg(long)]
        cursor: Option<String>,
    },
    /// Show one session.
    Show {
        /// Session id (`ses_…`).
        id: String,
    },
    /// Revoke one session.
    Revoke {
        /// Session id (`ses_…`).
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum SubjectsCmd {
    /// Revoke all sessions of a subject.
    Revoke {
        /// The subject.
        subject: String,
        /// The tenant.
        #[arg(long, default_value = "")]
        tenant: String,
        /// Keep this session.
        #[arg(long)]
        except: Option<String>,
    },
    /// Bump the subject's security epoch: every existing session ends at once.
    BumpEpoch {
        /// The subject.
        subject: String,
        /// The tenant.
        #[arg(long, default_value = "")]
        tenant: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum EventsCmd {
    /// Print events as JSON lines.
    Tail {
        /// Start after this cursor.
        #[arg(long, default_value_t = 0)]
        after: u64,
        /// Keep polling for new events.
        #[arg(long)]
        follow: bool,
    },
}

/// The flag layer of the configuration.
fn flags(g: &Global, serve: Option<&ServeArgs>) -> anyhow::Result<Overrides> {
    let mut o = Overrides {
        data_dir: g.data_dir.clone(),
        store: g.store.as_deref().map(str::parse::<StoreUrl>).transpose().map_err(anyhow::Error::msg)?,
        ..Overrides::default()
    };
    if let Some(s) = serve {
        o.listen = s.listen;
        o.tls_cert.clone_from(&s.tls_cert);
        o.tls_key.clone_from(&s.tls_key);
        o.dev = s.dev.then_some(true);
        o.behind_tls_proxy = s.behind_tls_proxy.then_some(true);
        o.api_key_file.clone_from(&s.api_key_file);
        o.signing_key_file.clone_from(&s.signing_key_file);
        o.log_format = s.log_format;
        o.log.clone_from(&s.log);
        o.trust_forwarded_headers = s.trust_forwarded_headers.then_some(true);
        o.max_body_bytes = s.max_body_bytes;
        o.rotation_grace = s.rotation_grace;
    }
    Ok(o)
}

/// Defaults, then the TOML file, then `SESSIOND_*`, then flags.
pub fn load_config(g: &Global, serve: Option<&ServeArgs>) -> anyhow::Result<Config> {
    let env = Overrides::from_env(|k| std::env::var(k).ok())?;
    let file = g.config.clone().or_else(|| std::env::var_os("SESSIOND_CONFIG").map(PathBuf::from));
    Ok(Config::load(file.as_deref(), &env, &flags(g, serve)?)?)
}

fn init_logging(config: &Config) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_new(&config.log).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match config.log_format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
    let unknown = Overrides::unknown_env_vars(std::env::vars_os().filter_map(|(k, _)| k.into_string().ok()));
    for var in unknown.iter().filter(|v| !matches!(v.as_str(), "SESSIOND_SERVER" | "SESSIOND_CA_CERT")) {
        tracing::warn!(variable = %var, "unknown SESSIOND_* environment variable ignored");
    }
}

/// Runs one command.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let g = &cli.global;
    match &cli.command {
        Command::Serve(args) => {
            let config = load_config(g, Some(args))?;
            init_logging(&config);
            let server = sessiond_server::Server::bind(&config).await?;
            let url = server.url()?;
            tracing::info!(%url, "listening");
            println!("sessiond listening on {url}");
            server.run(sessiond_server::serve::shutdown_signal()).await?;
            Ok(())
        }
        Command::BenchEmpty { listen, session_headers, with_state, bare } => {
            use sessiond_server::app::EmptyHandler;
            let handler = match (session_headers, with_state, bare) {
                (true, _, _) => EmptyHandler::SessionHeaders,
                (_, true, _) => EmptyHandler::WithState,
                (_, _, true) => EmptyHandler::Bare,
                _ => EmptyHandler::Empty,
            };
            let router = sessiond_server::app::empty_router(&sessiond_server::HttpSettings::default(), handler);
            let server = sessiond_server::Server::for_router(*listen, router, None)?;
            println!("bench-empty listening on {}", server.url()?);
            server.run(sessiond_server::serve::shutdown_signal()).await?;
            Ok(())
        }
        Command::Openapi => {
            print!("{}", sessiond_server::openapi::json());
            Ok(())
        }
        Command::Config(ConfigCmd::Check { file }) => {
            let env = Overrides::default();
            Config::load(Some(file), &env, &Overrides::default())
                .with_context(|| format!("{} is not a valid sessiond configuration", file.display()))?;
            println!("{}: ok", file.display());
            Ok(())
        }
        Command::ApiKey(ApiKeyCmd::Create { name }) => {
            let config = load_config(g, None)?;
            direct::create_api_key(&config, name)
        }
        cmd => {
            let config = load_config(g, None)?;
            init_logging_quiet(&config);
            match &g.server {
                Some(url) => client::run(&client::Client::new(url, g.ca_cert.as_deref(), &config)?, cmd).await,
                None => direct::run(&config, cmd).await,
            }
        }
    }
}

fn init_logging_quiet(config: &Config) {
    let mut c = config.clone();
    if std::env::var_os("SESSIOND_LOG").is_none() {
        c.log = "warn".into();
    }
    init_logging(&c);
}
