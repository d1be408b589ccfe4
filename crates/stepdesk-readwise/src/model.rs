//! Request and response types of `GET books/`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize};

/// Readwise's largest `page_size`.
pub const MAX_PAGE_SIZE: u32 = 1000;

/// Which page of `GET books/` to fetch. Serializable, so a durable step can record where a
/// sync stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum BooksRequest {
    /// The first page: `books/?page_size=N[&updated__gt=T]`.
    First {
        /// 1..=1000.
        page_size: u32,
        /// Only books updated strictly after this time (incremental sync). Sent as
        /// `updated__gt=YYYY-MM-DDTHH:MM:SSZ`, truncated to the whole second (the format of
        /// Readwise's docs), so the filter can only include more, never fewer, books.
        updated_after: Option<DateTime<Utc>>,
    },
    /// A `next` link from a previous page, followed verbatim. It must be on the base URL's
    /// origin.
    Next { url: String },
}

impl BooksRequest {
    /// The first page with the largest page size and no filter (a full sync).
    pub fn first() -> Self {
        BooksRequest::First {
            page_size: MAX_PAGE_SIZE,
            updated_after: None,
        }
    }

    /// The first page of books updated after `t`, with the largest page size.
    pub fn updated_after(t: DateTime<Utc>) -> Self {
        BooksRequest::First {
            page_size: MAX_PAGE_SIZE,
            updated_after: Some(t),
        }
    }

    /// One book per page: the cheapest way to read the total `count`.
    pub fn count_only() -> Self {
        BooksRequest::First {
            page_size: 1,
            updated_after: None,
        }
    }

    /// Follow a `next` link.
    pub fn next(url: impl Into<String>) -> Self {
        BooksRequest::Next { url: url.into() }
    }
}

/// `updated__gt`'s value for `t`.
pub fn format_updated_gt(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// One page of `GET books/`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BooksPage {
    /// Total books matching the request's filters, across all pages.
    pub count: u64,
    /// The next page's absolute URL; `None` on the last page.
    #[serde(default)]
    pub next: Option<String>,
    /// This page's books.
    #[serde(default, deserialize_with = "null_as_default")]
    pub results: Vec<Book>,
}

impl BooksPage {
    /// The request for the next page, if any.
    pub fn next_request(&self) -> Option<BooksRequest> {
        self.next.clone().map(BooksRequest::next)
    }
}

/// A Readwise book (a source of highlights: book, article, tweet thread, podcast...). Unknown
/// fields are ignored; `null` in a non-optional string, number or list field reads as empty
/// or zero.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Book {
    pub id: i64,
    #[serde(default, deserialize_with = "null_as_default")]
    pub title: String,
    #[serde(default)]
    pub author: Option<String>,
    /// `books`, `articles`, `tweets`, `supplementals` or `podcasts`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub category: String,
    /// e.g. `kindle`, `api_article`, `reader`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub source: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub num_highlights: u64,
    /// ISO-8601, `null` when the highlights have no dates.
    #[serde(default)]
    pub last_highlight_at: Option<String>,
    /// ISO-8601 with microseconds; changes whenever the book or its highlights change.
    #[serde(default, deserialize_with = "null_as_default")]
    pub updated: String,
    #[serde(default)]
    pub cover_image_url: Option<String>,
    #[serde(default)]
    pub highlights_url: Option<String>,
    #[serde(default)]
    pub source_url: Option<String>,
    #[serde(default)]
    pub asin: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub tags: Vec<Tag>,
    #[serde(default)]
    pub document_note: Option<String>,
}

impl Book {
    /// `updated` parsed, when it is valid ISO-8601.
    pub fn updated_at(&self) -> Option<DateTime<Utc>> {
        DateTime::parse_from_rfc3339(&self.updated)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }
}

/// A book tag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tag {
    pub id: i64,
    #[serde(default, deserialize_with = "null_as_default")]
    pub name: String,
}

fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn documented_example_parses() {
        let page: BooksPage = serde_json::from_str(
            r#"{
  "count": 9,
  "next": "https://readwise.io/api/v2/books/?page=2",
  "previous": null,
  "results": [
    {
      "id": 1776,
      "title": "Early Retirement Extreme",
      "author": "Jacob Lund Fisker",
      "category": "books",
      "source": "kindle",
      "num_highlights": 68,
      "last_highlight_at": "2019-03-19T03:49:23Z",
      "updated": "2020-10-01T17:47:31.234826Z",
      "cover_image_url": "https://readwise.io/static/images/default-book-icon-2.png",
      "highlights_url": "https://readwise.io/bookreview/1776",
      "source_url": null,
      "asin": "B0046LU7H0",
      "tags": [],
      "document_note": ""
    }
  ]
}"#,
        )
        .unwrap();
        assert_eq!(page.count, 9);
        assert_eq!(
            page.next.as_deref(),
            Some("https://readwise.io/api/v2/books/?page=2")
        );
        let b = &page.results[0];
        assert_eq!(b.id, 1776);
        assert_eq!(b.author.as_deref(), Some("Jacob Lund Fisker"));
        assert_eq!(b.num_highlights, 68);
        assert_eq!(b.asin.as_deref(), Some("B0046LU7H0"));
        assert_eq!(b.source_url, None);
        assert_eq!(b.document_note.as_deref(), Some(""));
        assert_eq!(
            b.updated_at().unwrap(),
            Utc.with_ymd_and_hms(2020, 10, 1, 17, 47, 31).unwrap()
                + chrono::Duration::microseconds(234_826)
        );
    }

    #[test]
    fn nulls_and_unknown_fields_are_tolerated() {
        let b: Book = serde_json::from_str(
            r#"{"id": 5, "title": null, "author": null, "category": null, "num_highlights": null,
                "tags": null, "updated": null, "brand_new_field": {"x": 1},
                "tags_extra": [1,2]}"#,
        )
        .unwrap();
        assert_eq!(b.id, 5);
        assert_eq!(b.title, "");
        assert_eq!(b.num_highlights, 0);
        assert!(b.tags.is_empty());
        assert_eq!(b.updated_at(), None);
        let p: BooksPage =
            serde_json::from_str(r#"{"count": 0, "next": null, "results": null}"#).unwrap();
        assert!(p.results.is_empty());
        assert!(p.next_request().is_none());
    }

    #[test]
    fn a_book_without_id_is_an_error() {
        assert!(serde_json::from_str::<Book>(r#"{"title": "x"}"#).is_err());
    }

    #[test]
    fn updated_gt_is_whole_seconds_utc() {
        let t = Utc.with_ymd_and_hms(2024, 5, 6, 7, 8, 9).unwrap()
            + chrono::Duration::milliseconds(987);
        assert_eq!(format_updated_gt(t), "2024-05-06T07:08:09Z");
    }

    #[test]
    fn requests_round_trip_through_json() {
        for r in [
            BooksRequest::first(),
            BooksRequest::count_only(),
            BooksRequest::updated_after(Utc.with_ymd_and_hms(2024, 1, 2, 3, 4, 5).unwrap()),
            BooksRequest::next("https://readwise.io/api/v2/books/?page=2"),
        ] {
            let json = serde_json::to_string(&r).unwrap();
            assert_eq!(serde_json::from_str::<BooksRequest>(&json).unwrap(), r);
        }
    }
}
