//! The OpenAPI document, generated from the handlers' annotations with `utoipa`. The
//! committed copy lives at `docs/openapi.json`; a test fails when it drifts.

use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Content, HeaderBuilder, ObjectBuilder, Ref, RefOr, Response, ResponseBuilder, Type};
use utoipa::{Modify, OpenApi, ToResponse, ToSchema};

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
    components(
        schemas(api::ProblemDoc),
        responses(BadRequest, Unauthorized, RequestTimeout, PayloadTooLarge, UnsupportedMediaType, TooManyRequests, StoreUnavailable)
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

/// A problem+json response (`ProblemDoc` body), with a `Retry-After` header when `retry_after`
/// describes one.
fn problem_response(description: &str, retry_after: Option<&str>) -> RefOr<Response> {
    let mut b = ResponseBuilder::new()
        .description(description)
        .content("application/problem+json", Content::new(Some(Ref::from_schema_name(api::ProblemDoc::name()))));
    if let Some(d) = retry_after {
        let schema = ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(0));
        b = b.header("Retry-After", HeaderBuilder::new().schema(schema).description(Some(d)).build());
    }
    b.build().into()
}

/// Reusable responses (`#/components/responses/...`) for the problems many operations share,
/// used as `(status = 429, response = crate::openapi::TooManyRequests)`.
macro_rules! problem_responses {
    ($($(#[$doc:meta])* $name:ident => ($description:expr, $retry_after:expr);)*) => {$(
        $(#[$doc])*
        pub struct $name;

        impl<'r> ToResponse<'r> for $name {
            fn response() -> (&'r str, RefOr<Response>) {
                (stringify!($name), problem_response($description, $retry_after))
            }
        }
    )*};
}

problem_responses! {
    /// 400: a body, path, query or header value that does not parse or is out of bounds.
    BadRequest => ("Malformed request: a JSON body, path, query or header value that does not parse, has unknown fields or parameters, or is out of bounds", None);
    /// 401 of the API-key operations.
    Unauthorized => ("Missing or wrong API key", None);
    /// 408 of the operations with a JSON body.
    RequestTimeout => ("`request-timeout`: the request body did not arrive within the body read timeout (10 s)", None);
    /// 413 of the operations with a JSON body.
    PayloadTooLarge => ("The request body is larger than the configured limit", None);
    /// 415 of the operations with a JSON body.
    UnsupportedMediaType => ("The request body is not JSON (`Content-Type: application/json` or `application/*+json`)", None);
    /// 429 `too-many-requests`: a throttled source.
    TooManyRequests => (
        "`too-many-requests`: the source is throttled after too many wrong API keys or session tokens sessiond never issued",
        Some("Seconds until the source may try again")
    );
    /// 503 of the operations that touch the session store.
    StoreUnavailable => ("The session store is unavailable; retry shortly", Some("Seconds to wait before retrying"));
}

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
