//! Serde types for Inngest's JSON bodies, tolerant on input: unknown fields are ignored and
//! nulls are accepted wherever an SDK may send one (Python strips nulls, JS sends some).
//!
//! - [`register`]: `POST /fn/register` request (§1.6) and reply, and the error body.
//! - [`function`]: the function config inside it (§1.7), with its validation.
//! - [`call`]: the call request body Stepdesk POSTs to an SDK (§1.8), and receives as one.
//! - [`op`]: the ops of a 206 answer (§1.10).
//! - [`memo`]: how each kind of step result is kept in the call request's `steps` (§7.3).

pub mod call;
pub mod function;
pub mod memo;
pub mod op;
pub mod register;

pub use call::{CallCtx, CallRequest, CallStack};
pub use function::{CancelRule, FunctionConfig, StepConfig, StepRetries, StepRuntime, Trigger};
pub use memo::StepMemo;
pub use op::{InvokeSpec, Op, Opcode, Userland, WaitSpec};
pub use register::{ApiError, RegisterError, RegisterReply, RegisterRequest};

use serde::{Deserialize, Deserializer};

/// Deserializes `null` as the type's default (an SDK sending `"triggers": null`, say).
pub(crate) fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}
