//! The `X-Inngest-*` header names (protocol §1.4). HTTP header names are case-insensitive;
//! these are the spellings the Go server and the SDKs use.

pub const SDK: &str = "X-Inngest-SDK";
pub const REQ_VERSION: &str = "X-Inngest-Req-Version";
pub const FRAMEWORK: &str = "X-Inngest-Framework";
pub const PLATFORM: &str = "X-Inngest-Platform";
pub const ENV: &str = "X-Inngest-Env";
pub const NO_RETRY: &str = "X-Inngest-No-Retry";
pub const RETRY_AFTER: &str = "Retry-After";
pub const SIGNATURE: &str = "X-Inngest-Signature";
pub const SYNC_KIND: &str = "X-Inngest-Sync-Kind";
pub const SERVER_KIND: &str = "X-Inngest-Server-Kind";
pub const EXPECTED_SERVER_KIND: &str = "X-Inngest-Expected-Server-Kind";
pub const SDK_HANDLED: &str = "X-Inngest-SDK-Handled";
pub const EVENT_ID_SEED: &str = "X-Inngest-Event-Id-Seed";
pub const RUN_ID: &str = "X-Run-ID";
pub const STEP_ID: &str = "X-Inngest-Step-ID";
