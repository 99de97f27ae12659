//! The OpenAPI document, generated from the handlers' annotations with `utoipa`. The
//! committed copy lives at `docs/openapi.json`; a test fails when it drifts.

use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::api;

/// The v1 API description.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "sessiond",
        description = "Secure distributed session authority: v1 API. Errors are RFC 9457 problem+json with a stable `type` URI (https://sessiond.dev/problems/...). Times are Unix milliseconds unless named `*_in` (seconds).",
        license(name = "Apache-2.0")
    ),
    paths(
        api::create, api::resolve, api::peek, api::forward_auth, api::forward_auth_rest, api::rotate, api::elevate, api::show, api::revoke,
        api::set_data, api::remove_data, api::list, api::revoke_subject, api::revoke_tenant, api::bump_epoch,
        api::logout, api::events, api::healthz, api::readyz, api::metrics, api::openapi
    ),
    modifiers(&Security),
    tags(
        (name = "sessions", description = "Create, resolve, rotate, elevate and revoke sessions (service API key)"),
        (name = "data", description = "Per-session application data with compare-and-set"),
        (name = "subjects", description = "All sessions of a subject or tenant"),
        (name = "forward-auth", description = "Browser-facing: reverse-proxy forward-auth and logout"),
        (name = "events", description = "The lifecycle event log"),
        (name = "operations", description = "Health, readiness, metrics, this document"),
    )
)]
pub struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let c = openapi.components.get_or_insert_with(Default::default);
        c.add_security_scheme(
            "api_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("Service API key (`sdk_…`), created with `sessiond api-key create`"))
                    .build(),
            ),
        );
        c.add_security_scheme(
            "session_cookie",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                "__Host-sid",
                "The session cookie (`sid` in development mode)",
            ))),
        );
        c.add_security_scheme(
            "session_bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("The session token (`sds_…`)"))
                    .build(),
            ),
        );
    }
}

/// The document as pretty JSON with a trailing newline (the committed form).
pub fn json() -> String {
    let mut s = ApiDoc::openapi().to_pretty_json().unwrap_or_else(|_| "{}".to_owned());
    s.push('\n');
    s
}
