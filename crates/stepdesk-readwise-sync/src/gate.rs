//! Validates Readwise events before they are stored, and moves a sender's `apiKey` into the
//! keychain so no token is ever stored in an event.

use std::sync::Arc;

use serde_json::Value;
use stepdesk_engine::function::BoxFuture;
use stepdesk_engine::time::{now_ms, to_rfc3339};
use stepdesk_engine::{EventGate, GateError, NewEvent};

use crate::events::{
    parse_daily_sync, parse_fetch_books, DAILY_SYNC, DAILY_SYNC_FN, FETCH_BOOKS, FETCH_BOOKS_FN,
};
use crate::users::{self, token_status};
use crate::ReadwiseSync;

pub(crate) struct ReadwiseGate {
    pub sync: ReadwiseSync,
}

impl EventGate for ReadwiseGate {
    fn admit(
        self: Arc<Self>,
        event: NewEvent,
        invoked: Option<String>,
    ) -> BoxFuture<Result<NewEvent, GateError>> {
        Box::pin(async move {
            let invoked = invoked.as_deref();
            if event.name == FETCH_BOOKS || invoked == Some(FETCH_BOOKS_FN) {
                self.admit_fetch_books(event).await
            } else if event.name == DAILY_SYNC || invoked == Some(DAILY_SYNC_FN) {
                admit_daily_sync(event, invoked.is_some()).map_err(GateError::Refused)
            } else {
                Ok(event)
            }
        })
    }
}

impl ReadwiseGate {
    async fn admit_fetch_books(&self, mut event: NewEvent) -> Result<NewEvent, GateError> {
        let request = parse_fetch_books(&event.data).map_err(GateError::Refused)?;
        // The token leaves the event before anything else can see it.
        event.data.remove("apiKey");
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
        if let Some(token) = request.api_key {
            self.sync
                .save_token(&request.user_id, &token)
                .await
                .map_err(|e| {
                    GateError::Unavailable(format!(
                        "cannot save the token of user `{}`: {e}",
                        request.user_id
                    ))
                })?;
            let user = request.user_id.clone();
            self.sync
                .store()
                .write(move |c| users::set_token_status(c, &user, token_status::CONNECTED, None))
                .await
                .map_err(|e| GateError::Unavailable(e.to_string()))?;
            tracing::info!(user = %request.user_id, "saved a Readwise token from an event to the keychain");
        }
        Ok(event)
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
