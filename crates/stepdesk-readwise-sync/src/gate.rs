//! Validates Readwise events before they are stored, and moves a sender's `apiKey` into the
//! keychain so no token is ever stored in an event.
//!
//! Two rules protect users' tokens:
//! - only a sender who proved its right ([`Sender::Trusted`]: the admin token or the
//!   configured event key) may hand over an `apiKey`. Without that, anyone who can reach the
//!   event API (another local process, another OS account, a web page) could replace a
//!   user's token with their own, import their own library and prune the user's books;
//! - nothing is saved while deciding: saving the token is the admitted event's effect, which
//!   the engine runs only once every event of the request has been admitted.

use std::sync::Arc;

use serde_json::Value;
use stepdesk_engine::function::BoxFuture;
use stepdesk_engine::time::{now_ms, to_rfc3339};
use stepdesk_engine::{Admission, Admitted, EventGate, GateError, NewEvent, Sender};

use crate::events::{
    parse_daily_sync, parse_fetch_books, DAILY_SYNC, DAILY_SYNC_FN, FETCH_BOOKS, FETCH_BOOKS_FN,
};
use crate::users::{self, TokenStatus};
use crate::ReadwiseSync;

/// What an anonymous sender of an `apiKey` is told.
pub(crate) const API_KEY_NEEDS_AUTH: &str = "`data.apiKey`: an event may hand Stepdesk a Readwise token only from an authorized sender. Send it with `Authorization: Bearer <admin token>` (`stepdesk admin-token` prints it), or set an event key (`stepdesk keys set event-key`) and send to /e/<that key>; or store the token with `stepdesk users add ID --token-stdin` and send the event without `apiKey`";

pub(crate) struct ReadwiseGate {
    pub sync: ReadwiseSync,
}

impl EventGate for ReadwiseGate {
    fn admit(
        self: Arc<Self>,
        event: NewEvent,
        admission: Admission,
    ) -> BoxFuture<Result<Admitted, GateError>> {
        Box::pin(async move {
            let invoked = admission.invoked_function.as_deref();
            if event.name == FETCH_BOOKS || invoked == Some(FETCH_BOOKS_FN) {
                self.admit_fetch_books(event, admission.sender).await
            } else if event.name == DAILY_SYNC || invoked == Some(DAILY_SYNC_FN) {
                admit_daily_sync(event, invoked.is_some())
                    .map(Admitted::new)
                    .map_err(GateError::Refused)
            } else {
                Ok(Admitted::new(event))
            }
        })
    }
}

impl ReadwiseGate {
    async fn admit_fetch_books(
        &self,
        mut event: NewEvent,
        sender: Sender,
    ) -> Result<Admitted, GateError> {
        let request = parse_fetch_books(&event.data).map_err(GateError::Refused)?;
        // The token leaves the event before anything else can see it.
        event.data.remove("apiKey");
        if request.api_key.is_some() && sender != Sender::Trusted {
            return Err(GateError::Unauthorized(API_KEY_NEEDS_AUTH.into()));
        }
        let user = request.user_id.clone();
        let known = self
            .sync
            .store()
            .read(move |c| users::exists(c, &user))
            .await
            .map_err(|e| GateError::Unavailable(e.to_string()))?;
        if !known {
            return Err(GateError::Refused(format!(
                "`data.userId`: no user `{}`; add it first with `stepdesk users add {} --token-stdin`",
                request.user_id, request.user_id
            )));
        }
        let Some(token) = request.api_key else {
            return Ok(Admitted::new(event));
        };
        let sync = self.sync.clone();
        let user = request.user_id;
        // Saving the token is the effect; its undo puts back the token it replaced (or
        // removes it), so a request that ends up not stored leaves the keychain as it was.
        let save = {
            let user = user.clone();
            async move {
                // The user may have been removed since the event was admitted.
                let u = user.clone();
                let still_there = sync
                    .store()
                    .read(move |c| users::exists(c, &u))
                    .await
                    .map_err(|e| GateError::Unavailable(e.to_string()))?;
                if !still_there {
                    return Err(GateError::Refused(format!(
                        "`data.userId`: no user `{user}`"
                    )));
                }
                let previous = sync.token(&user).await.map_err(|e| {
                    GateError::Unavailable(format!("cannot read the token of user `{user}`: {e}"))
                })?;
                sync.save_token(&user, &token).await.map_err(|e| {
                    GateError::Unavailable(format!("cannot save the token of user `{user}`: {e}"))
                })?;
                tracing::info!(%user, "saved a Readwise token from an event to the keychain");
                let undo = async move {
                    let restored = match previous {
                        Some(old) => sync.save_token(&user, old.expose_secret()).await,
                        None => sync.delete_token(&user).await.map(|_| ()),
                    };
                    match restored {
                        Ok(()) => {
                            tracing::info!(%user, "the request failed; the user's previous token is back")
                        }
                        Err(e) => {
                            tracing::error!(%user, error = %e, "the request failed and the user's previous token could not be put back")
                        }
                    }
                };
                Ok(Some(Box::pin(undo) as stepdesk_engine::GateUndo))
            }
        };
        // A new token is unchecked until a check or a sync says otherwise; recorded together
        // with the event.
        let mark = move |c: &rusqlite::Connection| {
            users::set_token_status(c, &user, TokenStatus::Unchecked, None)
        };
        Ok(Admitted::new(event)
            .with_effect(Box::pin(save))
            .with_write(Box::new(mark)))
    }
}

fn admit_daily_sync(mut event: NewEvent, invoked: bool) -> Result<NewEvent, String> {
    // "Test function" on the daily sync needs no payload: it means "now".
    if invoked && !event.data.contains_key("timestamp") {
        event
            .data
            .insert("timestamp".into(), Value::String(to_rfc3339(now_ms())));
    }
    parse_daily_sync(&event.data)?;
    Ok(event)
}
