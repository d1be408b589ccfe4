//! Inngest's wire protocol, as a pure library: no I/O, no engine, no HTTP client or server.
//!
//! This crate is the one place where Inngest's wire formats live. The HTTP driver (Stepdesk
//! calling SDK apps), the app registry (`POST /fn/register`) and the `/api/inngest` serve
//! route (Stepdesk's own functions driven by an Inngest server) are built on top of it.
//!
//! - [`wire`]: serde types for the register request and reply, function configs, call
//!   requests, ops and step memos; tolerant on input (unknown fields ignored, nulls accepted).
//! - [`jcs`]: RFC 8785 canonical JSON, the bytes every call request body is sent as.
//! - [`sign`]: `X-Inngest-Signature` (HMAC-SHA256) and the hashed-key Bearer token.
//! - [`duration`]: Inngest durations (`1h30m`, `2d`, `1w`) and when a `Sleep` op wakes.
//! - [`response`]: what an SDK's answer to a call request means (complete, ops, error).
//! - [`stepid`]: hashed step ids and the `:N` suffix of repeated ids.
//! - [`headers`]: the `X-Inngest-*` header names.
//! - [`serve`]: the bodies and headers Stepdesk answers with when it serves its own
//!   functions to an Inngest server (introspection, sync).
//!
//! The protocol is described in `inngest-protocol.md` (the research notes); the tests use
//! captures of real SDK traffic (`tests/fixtures/`, copied from `sdk-captures/`).
//! Retry backoff is not here: `stepdesk_engine::backoff` already has Inngest's table.

pub mod duration;
pub mod headers;
pub mod jcs;
pub mod response;
pub mod serve;
pub mod sign;
pub mod stepid;
pub mod wire;
