//! A client for the Readwise API v2, as Stepdesk's Readwise sync needs it:
//!
//! - [`ReadwiseClient::check_token`]: `GET auth/` (`204` = valid).
//! - [`ReadwiseClient::books_page`]: one page of `GET books/` per call (so a caller can make
//!   one durable step per page), the first page built from `page_size` (≤ 1000) and an
//!   optional `updated__gt`, the next ones following `next` verbatim.
//! - `Authorization: Token <token>` (never `Bearer`); the [`Token`] type prints redacted.
//! - Faults as [`ReadwiseError`] with [`ReadwiseError::is_retriable`] and
//!   [`ReadwiseError::retry_after`].
//! - A client-side limiter keeping each token under Readwise's documented budgets (20/min
//!   for list endpoints, 240/min otherwise) and a global cap on concurrent requests.
//!
//! It has no dependency on the Stepdesk engine.

mod client;
mod config;
mod error;
mod limiter;
mod model;
mod token;

pub use client::ReadwiseClient;
pub use config::{ClientConfig, BASE_URL_ENV, DEFAULT_BASE_URL};
pub use error::{Endpoint, ReadwiseError, MAX_RETRY_AFTER, MIN_RETRY_AFTER};
pub use model::{format_updated_gt, Book, BooksPage, BooksRequest, Tag, MAX_PAGE_SIZE};
pub use token::Token;
