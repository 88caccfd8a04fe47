//! Signing in and out, and the session every other page needs. A session is opened with an API
//! token (checked in constant time and throttled, as the API checks it), kept in the database
//! (any instance knows it) with a fingerprint of that token, and named by an HttpOnly,
//! SameSite=Strict cookie (Secure behind HTTPS). It ends once its token leaves `API_TOKENS`,
//! after `CONSOLE_IDLE_TIMEOUT` unused, and after 12 hours in any case. Every form
//! carries the session's CSRF token; one without it changes nothing (403). The sign-in form,
//! before any session, carries a token that must match a cookie of its own.

use std::future::Future;
use std::pin::Pin;

use actix_web::cookie::{time::Duration as CookieAge, Cookie, SameSite};
use actix_web::http::StatusCode;
use actix_web::{web, FromRequest, HttpRequest, HttpResponse};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use maud::html;
use serde::Deserialize;
use subtle::ConstantTimeEq;

use super::layout::{redirect, respond, shell};
use crate::state::AppState;

const SESSION_COOKIE: &str = "console_session";
const SIGN_IN_COOKIE: &str = "console_sign_in";
/// How long a session lasts without signing in again.
const SESSION_HOURS: i64 = 12;

/// A signed-in operator, for every page but the sign-in page. Without a session: to the
/// sign-in page, showing nothing.
pub struct Operator {
    pub csrf: String,
}

impl Operator {
    /// The 403 to answer when a form did not carry this session's CSRF token.
    fn refuse(&self, form_token: Option<&str>) -> Option<HttpResponse> {
        let given = form_token.unwrap_or_default();
        let carried = !given.is_empty() && bool::from(given.as_bytes().ct_eq(self.csrf.as_bytes()));
        (!carried).then(forbidden)
    }
}

fn forbidden() -> HttpResponse {
    respond(
        StatusCode::FORBIDDEN,
        shell(
            "Refused",
            html! {
                main {
                    h1 { "Refused" }
                    p { "This form did not carry the session's token, so nothing was done. \
                         Go back, reload the page and try again." }
                    p { a href="/console/overview" { "Overview" } }
                }
            },
        ),
    )
}

/// Either a signed-in operator, or the way to sign in.
pub struct SignedIn(pub Result<Operator, HttpResponse>);

impl FromRequest for SignedIn {
    type Error = actix_web::Error;
    type Future = Pin<Box<dyn Future<Output = Result<SignedIn, actix_web::Error>>>>;

    fn from_request(request: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let state = request.app_data::<web::Data<AppState>>().cloned();
        let cookie = request.cookie(SESSION_COOKIE).map(|c| c.value().to_owned());
        Box::pin(async move {
            let to_sign_in = || redirect("/console/sign-in");
            let (Some(state), Some(id)) = (state, cookie) else {
                return Ok(SignedIn(Err(to_sign_in())));
            };
            let failed = |error| {
                Ok(SignedIn(Err(actix_web::ResponseError::error_response(
                    &crate::problem::ApiError::from(error),
                ))))
            };
            let session = match state.store.session(&id).await {
                Ok(Some(session)) => session,
                Ok(None) => return Ok(SignedIn(Err(to_sign_in()))),
                Err(error) => return failed(error),
            };
            let now = chrono::Utc::now();
            match session_state(&session, &state, now) {
                SessionState::Ended => {
                    if let Err(error) = state.store.close_session(&id).await {
                        return failed(error);
                    }
                    return Ok(SignedIn(Err(to_sign_in())));
                }
                SessionState::Stale => {
                    if let Err(error) = state.store.touch_session(&id).await {
                        return failed(error);
                    }
                }
                SessionState::Fresh => {}
            }
            Ok(SignedIn(Ok(Operator {
                csrf: session.csrf_token,
            })))
        })
    }
}

/// Whether a session still holds, and whether its last use needs recording.
enum SessionState {
    /// Its token left `API_TOKENS`, it has none, or it was unused for the idle timeout.
    Ended,
    /// Holds; its last use was recorded over a minute ago.
    Stale,
    Fresh,
}

/// The last use is recorded at most this often (a write per page would be a write per click).
const TOUCH_EVERY: chrono::Duration = chrono::Duration::minutes(1);

fn session_state(
    session: &crate::store::ConsoleSession,
    state: &AppState,
    now: chrono::DateTime<chrono::Utc>,
) -> SessionState {
    let token_accepted = session
        .token_fingerprint
        .as_deref()
        .is_some_and(|fingerprint| state.api_tokens.accepts_fingerprint(fingerprint));
    let idle =
        chrono::Duration::from_std(state.console_idle_timeout).unwrap_or(chrono::Duration::MAX);
    let last_used = session.last_used_at.unwrap_or(chrono::DateTime::UNIX_EPOCH);
    if !token_accepted || now - last_used > idle {
        SessionState::Ended
    } else if now - last_used > TOUCH_EVERY {
        SessionState::Stale
    } else {
        SessionState::Fresh
    }
}

/// The signed-in operator, or the answer to give instead: `let operator = signed_in!(x);`.
macro_rules! signed_in {
    ($signed_in:expr) => {
        match $signed_in.0 {
            Ok(operator) => operator,
            Err(response) => return Ok(response),
        }
    };
}
pub(super) use signed_in;

fn random_token() -> String {
    URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
}

/// Secure as `CONSOLE_SECURE_COOKIE` says: always, never, or (`auto`) where the request came
/// over HTTPS (directly or, as the proxy says, to it).
fn cookie<'c>(
    request: &HttpRequest,
    name: &'c str,
    value: String,
    max_age: CookieAge,
) -> Cookie<'c> {
    let secure = request
        .app_data::<web::Data<AppState>>()
        .and_then(|state| state.console_secure_cookie)
        .unwrap_or_else(|| request.connection_info().scheme() == "https");
    Cookie::build(name, value)
        .path("/console")
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(secure)
        .max_age(max_age)
        .finish()
}

pub async fn home(signed_in: SignedIn) -> HttpResponse {
    match signed_in.0 {
        Ok(_) => redirect("/console/overview"),
        Err(to_sign_in) => to_sign_in,
    }
}

pub async fn sign_in_page(request: HttpRequest) -> HttpResponse {
    sign_in_form(&request, StatusCode::OK, None)
}

fn sign_in_form(request: &HttpRequest, status: StatusCode, problem: Option<&str>) -> HttpResponse {
    let token = random_token();
    let mut response = respond(
        status,
        shell(
            "Sign in",
            html! {
                main class="sign-in" {
                    h1 { "shipping-service console" }
                    @if let Some(problem) = problem {
                        p class="notice notice-problem" role="alert" { (problem) }
                    }
                    form method="post" action="/console/sign-in" {
                        input type="hidden" name="csrf" value=(token);
                        label for="token" { "API token" }
                        input id="token" name="token" type="password" required
                              autocomplete="current-password" autofocus;
                        button type="submit" { "Sign in" }
                    }
                }
            },
        ),
    );
    let _ = response.add_cookie(&cookie(
        request,
        SIGN_IN_COOKIE,
        token,
        CookieAge::minutes(30),
    ));
    response
}

#[derive(Deserialize)]
pub struct SignIn {
    token: Option<String>,
    csrf: Option<String>,
}

pub async fn sign_in(
    request: HttpRequest,
    form: web::Form<SignIn>,
    state: web::Data<AppState>,
) -> actix_web::Result<HttpResponse> {
    let expected = request.cookie(SIGN_IN_COOKIE).map(|c| c.value().to_owned());
    let given = form.csrf.as_deref().unwrap_or_default();
    let fresh_form = expected.is_some_and(|expected| {
        !given.is_empty() && bool::from(expected.as_bytes().ct_eq(given.as_bytes()))
    });
    if !fresh_form {
        return Ok(forbidden());
    }
    let token = form.token.as_deref().unwrap_or_default();
    match state.check_token(&request, token, "console") {
        Ok(()) => {}
        Err(crate::problem::ApiError::TooManyFailures { retry_after }) => {
            let mut response = sign_in_form(
                &request,
                StatusCode::TOO_MANY_REQUESTS,
                Some(&format!(
                    "Too many wrong tokens from this address: try again in {retry_after} s."
                )),
            );
            response.headers_mut().insert(
                actix_web::http::header::RETRY_AFTER,
                actix_web::http::header::HeaderValue::from(retry_after),
            );
            return Ok(response);
        }
        Err(_) => {
            return Ok(sign_in_form(
                &request,
                StatusCode::UNAUTHORIZED,
                Some("That is not one of the service's API tokens."),
            ))
        }
    }
    let id = random_token();
    let expires_at = chrono::Utc::now() + chrono::Duration::hours(SESSION_HOURS);
    state
        .store
        .open_session(
            &id,
            &random_token(),
            &crate::config::ApiTokens::fingerprint(token),
            expires_at,
        )
        .await
        .map_err(crate::problem::ApiError::from)?;
    let mut response = redirect("/console/overview");
    let age = CookieAge::hours(SESSION_HOURS);
    let _ = response.add_cookie(&cookie(&request, SESSION_COOKIE, id, age));
    let _ = response.add_removal_cookie(&cookie(
        &request,
        SIGN_IN_COOKIE,
        String::new(),
        CookieAge::ZERO,
    ));
    Ok(response)
}

/// A console form that changed nothing yet: its fields `T`, from a signed-in operator, whose
/// CSRF token it carried. Every POST handler takes one, so none can run without the check:
/// without a session the answer is the way to sign in, without the session's token a 403,
/// and nothing is done.
pub struct Checked<T> {
    pub operator: Operator,
    pub form: T,
}

/// The fields of a form that has none but its CSRF token (sign out, retry, discard, delete).
#[derive(Deserialize)]
pub struct NoFields {}

/// The CSRF token of a form, read beside its fields.
#[derive(Deserialize)]
struct CsrfField {
    csrf: Option<String>,
}

impl<T: serde::de::DeserializeOwned + 'static> FromRequest for Checked<T> {
    type Error = actix_web::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Checked<T>, actix_web::Error>>>>;

    fn from_request(request: &HttpRequest, payload: &mut actix_web::dev::Payload) -> Self::Future {
        let signed_in = SignedIn::from_request(request, payload);
        let body = web::Bytes::from_request(request, payload);
        Box::pin(async move {
            let answer = |response| actix_web::error::InternalError::from_response("", response);
            let operator = signed_in.await?.0.map_err(answer)?;
            let body = body.await?;
            let unreadable = |_| actix_web::error::ErrorBadRequest("an unreadable form");
            let token: CsrfField = serde_urlencoded::from_bytes(&body).map_err(unreadable)?;
            if let Some(refused) = operator.refuse(token.csrf.as_deref()) {
                return Err(answer(refused).into());
            }
            let form = serde_urlencoded::from_bytes(&body).map_err(unreadable)?;
            Ok(Checked { operator, form })
        })
    }
}

pub async fn sign_out(
    request: HttpRequest,
    _: Checked<NoFields>,
    state: web::Data<AppState>,
) -> actix_web::Result<HttpResponse> {
    if let Some(id) = request.cookie(SESSION_COOKIE) {
        state
            .store
            .close_session(id.value())
            .await
            .map_err(crate::problem::ApiError::from)?;
    }
    let mut response = redirect("/console/sign-in");
    let _ = response.add_removal_cookie(&cookie(
        &request,
        SESSION_COOKIE,
        String::new(),
        CookieAge::ZERO,
    ));
    Ok(response)
}
