//! One entry point for the admin API by method name, for transports that are not HTTP
//! routes (the desktop window's `admin` command). Same methods, same JSON as the routes.

use serde::Deserialize;
use serde_json::{json, Map, Value};
use stepdesk_engine::admin::{AdminError, EventQuery, RunQuery};
use stepdesk_engine::AdminApi;

#[derive(Deserialize)]
struct Id {
    id: String,
}

#[derive(Deserialize, Default)]
struct InvokeParams {
    id: String,
    #[serde(default)]
    data: Map<String, Value>,
    #[serde(default)]
    user: Map<String, Value>,
}

fn params<T: serde::de::DeserializeOwned>(method: &str, v: Value) -> Result<T, AdminError> {
    let v = if v.is_null() { json!({}) } else { v };
    serde_json::from_value(v)
        .map_err(|e| AdminError::BadRequest(format!("`{method}`: bad parameters: {e}")))
}

/// Calls an admin method: `functions`, `runs`, `run`, `invoke`, `cancel`, `rerun`,
/// `events`, `event`, `event_runs`.
pub async fn dispatch(admin: &AdminApi, method: &str, p: Value) -> Result<Value, AdminError> {
    Ok(match method {
        "functions" => json!(admin.functions()),
        "runs" => json!(admin.runs(params::<RunQuery>(method, p)?).await?),
        "run" => json!(admin.run(&params::<Id>(method, p)?.id).await?),
        "invoke" => {
            let p: InvokeParams = params(method, p)?;
            json!(admin.invoke(&p.id, p.data, p.user).await?)
        }
        "cancel" => json!(admin.cancel(&params::<Id>(method, p)?.id).await?),
        "rerun" => json!(admin.rerun(&params::<Id>(method, p)?.id).await?),
        "events" => json!(admin.events(params::<EventQuery>(method, p)?).await?),
        "event" => json!(admin.event(&params::<Id>(method, p)?.id).await?),
        "event_runs" => json!(admin.event_runs(&params::<Id>(method, p)?.id).await?),
        other => {
            return Err(AdminError::BadRequest(format!(
                "unknown admin method `{other}`"
            )))
        }
    })
}
