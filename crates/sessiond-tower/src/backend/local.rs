//! [`InProcess`]: the engine in this process.

use std::sync::Arc;

use async_trait::async_trait;
use sessiond_core::record::{DeviceInfo, SessionRecord};
use sessiond_core::time::UnixMs;
use sessiond_core::token::SessionToken;
use sessiond_core::{ClientError, CreateRequest, Engine, Policy, Resolution, SessionId};

use super::{ClientInfo, Issued, IssuedToken, Login, Resolved, SecretToken, SessionBackend, SessionInfo};
use crate::error::Result;

/// The in-process backend: every call goes straight to a [`sessiond_core::Engine`].
///
/// CSRF tokens are verified with the engine's key ring
/// ([`sessiond_core::token::KeyRing::verify_csrf`]), so they survive token rotation and key
/// rotation and need no storage.
#[derive(Debug, Clone)]
pub struct InProcess {
    engine: Engine,
}

impl InProcess {
    /// A backend over `engine`.
    pub fn new(engine: Engine) -> Self {
        Self { engine }
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    fn info(&self, rec: &SessionRecord, aal: u8, idle_expires_at: UnixMs, now: UnixMs) -> SessionInfo {
        SessionInfo {
            id: rec.id,
            subject: rec.subject.clone(),
            tenant: rec.tenant.clone(),
            policy: rec.policy.clone(),
            aal,
            amr: rec.amr.clone(),
            auth_time: rec.auth_time,
            created_at: rec.created_at,
            idle_expires_at,
            absolute_expires_at: rec.absolute_expires_at,
            data: rec.data.clone(),
            revision: rec.revision,
            csrf_token: self.engine.keys().csrf_token(&rec.id),
            as_of: now,
        }
    }

    fn resolved(&self, r: &Resolution) -> Resolved {
        let rotated = r.rotated.as_ref().map(|t| Self::issued(t, Some(&r.policy), &r.session, r.now));
        Resolved { session: self.info(&r.session, r.aal(), r.idle_expires_at, r.now), rotated }
    }

    fn issued(token: &SessionToken, policy: Option<&Arc<Policy>>, rec: &SessionRecord, now: UnixMs) -> IssuedToken {
        let persistent = policy.is_some_and(|p| p.persistent);
        IssuedToken {
            token: SecretToken::new(token.expose()),
            max_age: persistent.then(|| rec.absolute_expires_at.since(now)),
        }
    }
}

impl From<Engine> for InProcess {
    fn from(engine: Engine) -> Self {
        Self::new(engine)
    }
}

#[async_trait]
impl SessionBackend for InProcess {
    async fn resolve(&self, token: &str, client: &ClientInfo) -> Result<Resolved> {
        let r = self.engine.resolve(token, &client.context()).await?;
        Ok(self.resolved(&r))
    }

    fn resolve_now(&self, token: &str, client: &ClientInfo) -> Option<Result<Resolved>> {
        Some(self.engine.resolve_now(token, &client.context())?.map(|r| self.resolved(&r)).map_err(Into::into))
    }

    async fn create(&self, login: Login, previous_token: Option<&str>, client: &ClientInfo) -> Result<Issued> {
        let created = self
            .engine
            .create(CreateRequest {
                subject: login.subject,
                tenant: login.tenant,
                policy: login.policy,
                aal: login.aal,
                amr: login.amr,
                auth_time: None,
                device: DeviceInfo {
                    user_agent: client.user_agent.clone(),
                    first_ip: client.ip.map(|ip| ip.to_string()),
                    last_ip: None,
                },
                data: login.data,
                previous_token: previous_token.map(str::to_owned),
            })
            .await?;
        let now = created.session.created_at;
        let rec = &created.session;
        Ok(Issued {
            token: Self::issued(&created.token, Some(&created.policy), rec, now),
            session: self.info(rec, rec.aal, rec.idle_expires_at, now),
        })
    }

    async fn elevate(
        &self,
        _session: &SessionInfo,
        token: &str,
        aal: u8,
        amr: Vec<String>,
        client: &ClientInfo,
    ) -> Result<Issued> {
        let (rec, token) = self.engine.elevate(token, aal, amr, &client.context()).await?;
        // Elevation records `auth_time = now`, the engine's time of this operation.
        let now = rec.auth_time;
        let policy = self.engine.policies().get(&rec.policy);
        Ok(Issued {
            token: Self::issued(&token, policy, &rec, now),
            session: self.info(&rec, rec.aal, rec.idle_expires_at, now),
        })
    }

    async fn logout(&self, token: &str) -> Result<()> {
        match self.engine.logout(token).await {
            Ok(_) | Err(sessiond_core::Error::Client(ClientError::Malformed(_))) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn write_data(
        &self,
        id: &SessionId,
        key: &str,
        value: Option<serde_json::Value>,
        expected_revision: Option<u64>,
    ) -> Result<u64> {
        let rev = match value {
            Some(v) => self.engine.set_data(id, key, v, expected_revision).await?,
            None => self.engine.remove_data(id, key, expected_revision).await?,
        };
        Ok(rev)
    }

    fn verify_csrf(&self, session: &SessionInfo, presented: &str) -> bool {
        self.engine.keys().verify_csrf(&session.id, presented)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;

    #[test]
    fn errors_map_by_who_is_at_fault() {
        let e: Error = sessiond_core::Error::Client(ClientError::IdleExpired).into();
        assert!(matches!(e, Error::Unauthenticated));
        let e: Error = sessiond_core::Error::Conflict { current: 4 }.into();
        assert!(matches!(e, Error::Conflict { current: Some(4) }));
        let e: Error = sessiond_core::Error::Store(sessiond_core::StoreError::Corrupt("x".into())).into();
        assert_eq!(e.status(), axum::http::StatusCode::SERVICE_UNAVAILABLE);
        let e: Error = sessiond_core::Error::from(sessiond_core::MalformedInput::Field("bad key")).into();
        assert_eq!(e.status(), axum::http::StatusCode::BAD_REQUEST);
        let e: Error = sessiond_core::Error::from(sessiond_core::MalformedInput::Token).into();
        assert!(matches!(e, Error::Unauthenticated));
    }
}
