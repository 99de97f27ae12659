//! axum extractors: [`Session`] (401 without a valid session), `Option<Session>` and
//! [`MaybeSession`] (never reject).

use std::sync::Arc;

use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use axum::http::request::Parts;
use axum::http::Extensions;

use crate::error::Error;
use crate::session::{MaybeSession, Session, Slot};

/// The per-request slot, as stored in the request extensions.
#[derive(Clone)]
pub(crate) struct SlotHandle(pub(crate) Arc<Slot>);

pub(crate) fn slot(ext: &Extensions) -> Result<Arc<Slot>, Error> {
    ext.get::<SlotHandle>().map(|h| h.0.clone()).ok_or(Error::MissingLayer)
}

impl<S: Send + Sync> FromRequestParts<S> for Session {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Session::from_slot(slot(&parts.extensions)?).ok_or(Error::Unauthenticated)
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for Session {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Option<Self>, Self::Rejection> {
        Ok(Session::from_slot(slot(&parts.extensions)?))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for MaybeSession {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(MaybeSession::from_slot(slot(&parts.extensions)?))
    }
}
