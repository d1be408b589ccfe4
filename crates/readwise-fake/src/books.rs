//! The fake's book data: either generated lazily from a seed (cheap enough for 10,000 users
//! with thousands of books each, because nothing is materialised until a page is served) or
//! an explicit list given by a test.

use std::collections::HashMap;
use std::fmt::Write as _;

use chrono::{DateTime, TimeZone, Utc};
use serde::Serialize;
use serde_json::{Map, Value};

/// Every generated `updated` lies in the two years after this instant.
fn generated_epoch() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2023, 1, 1, 0, 0, 0).unwrap()
}

const SPAN_SECS: i64 = 2 * 365 * 24 * 3600;

/// A book given explicitly (`set_books`), kept as its JSON object plus the two fields the
/// server needs: `id` for ordering and `updated` for filtering.
#[derive(Debug, Clone)]
pub(crate) struct StoredBook {
    pub id: i64,
    pub updated: DateTime<Utc>,
    pub json: Map<String, Value>,
}

/// One user's books.
#[derive(Debug, Clone)]
pub(crate) enum Books {
    /// `n` books with ids `first_id..first_id + n`, generated from `seed`; `touched` overrides
    /// the `updated` time of some of them (by index).
    Generated {
        n: usize,
        seed: u64,
        first_id: i64,
        touched: HashMap<usize, DateTime<Utc>>,
    },
    /// Books given by a test, sorted by id.
    Explicit(Vec<StoredBook>),
}

impl Books {
    pub fn len(&self) -> usize {
        match self {
            Books::Generated { n, .. } => *n,
            Books::Explicit(v) => v.len(),
        }
    }

    /// `updated` of the book at position `i` (positions are in id order).
    pub fn updated_at(&self, i: usize) -> DateTime<Utc> {
        match self {
            Books::Generated {
                n, seed, touched, ..
            } => touched
                .get(&i)
                .copied()
                .unwrap_or_else(|| generated_updated(*seed, i, *n)),
            Books::Explicit(v) => v[i].updated,
        }
    }

    /// Positions of the books matching the filters, in id order.
    pub fn filter(
        &self,
        updated_gt: Option<DateTime<Utc>>,
        updated_lt: Option<DateTime<Utc>>,
    ) -> Vec<usize> {
        (0..self.len())
            .filter(|&i| {
                let u = self.updated_at(i);
                updated_gt.is_none_or(|gt| u > gt) && updated_lt.is_none_or(|lt| u < lt)
            })
            .collect()
    }

    /// Marks the `n` least recently updated books as updated at `now`; returns their ids.
    pub fn touch(&mut self, n: usize, now: DateTime<Utc>) -> Vec<i64> {
        let mut order: Vec<(DateTime<Utc>, usize)> =
            (0..self.len()).map(|i| (self.updated_at(i), i)).collect();
        order.sort();
        let chosen: Vec<usize> = order.into_iter().take(n).map(|(_, i)| i).collect();
        let mut ids = Vec::with_capacity(chosen.len());
        match self {
            Books::Generated {
                touched, first_id, ..
            } => {
                for i in chosen {
                    touched.insert(i, now);
                    ids.push(*first_id + i as i64);
                }
            }
            Books::Explicit(v) => {
                for i in chosen {
                    v[i].updated = now;
                    ids.push(v[i].id);
                }
            }
        }
        ids.sort_unstable();
        ids
    }

    /// Appends the JSON of the book at position `i` to `out`.
    pub fn write_json(&self, i: usize, out: &mut Vec<u8>) {
        match self {
            Books::Generated {
                n,
                seed,
                first_id,
                touched,
            } => {
                let book = generate(*seed, *first_id, i, *n, touched.get(&i).copied());
                serde_json::to_writer(out, &book).expect("serialising a generated book");
            }
            Books::Explicit(v) => {
                let b = &v[i];
                let mut json = b.json.clone();
                json.insert("id".into(), Value::from(b.id));
                json.insert("updated".into(), Value::from(format_updated(b.updated)));
                serde_json::to_writer(out, &json).expect("serialising a book");
            }
        }
    }

    /// JSON objects of all books (for tests inspecting the fake's data).
    pub fn to_json(&self) -> Vec<Value> {
        (0..self.len())
            .map(|i| {
                let mut buf = Vec::new();
                self.write_json(i, &mut buf);
                serde_json::from_slice(&buf).expect("book JSON")
            })
            .collect()
    }
}

/// Builds the explicit book list of `set_books`: ids and `updated` are read from the
/// objects (missing ids are assigned from `next_id`, a missing or invalid `updated` becomes
/// `now`), then the list is sorted by id.
pub(crate) fn explicit_books(
    values: Vec<Value>,
    mut next_id: impl FnMut() -> i64,
    now: DateTime<Utc>,
) -> Books {
    let mut books: Vec<StoredBook> = values
        .into_iter()
        .map(|v| {
            let json = match v {
                Value::Object(m) => m,
                other => panic!("set_books expects JSON objects, got {other}"),
            };
            let id = json
                .get("id")
                .and_then(Value::as_i64)
                .unwrap_or_else(&mut next_id);
            let updated = json
                .get("updated")
                .and_then(Value::as_str)
                .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
                .map(|d| d.with_timezone(&Utc))
                .unwrap_or(now);
            StoredBook { id, updated, json }
        })
        .collect();
    books.sort_by_key(|b| b.id);
    Books::Explicit(books)
}

/// `2020-10-01T17:47:31.234826Z`, the format of Readwise's `updated`.
pub(crate) fn format_updated(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A stable seed from a token (FNV-1a), so a user's generated library is reproducible.
pub(crate) fn seed_for(token: &str) -> u64 {
    token.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn hash(seed: u64, i: usize, salt: u64) -> u64 {
    splitmix64(seed ^ splitmix64(i as u64 ^ salt.rotate_left(17)))
}

/// Generated `updated` times increase with the position, spread over two years.
fn generated_updated(seed: u64, i: usize, n: usize) -> DateTime<Utc> {
    let n = n.max(1) as i64;
    let base = (i as i64) * SPAN_SECS / n;
    let micros = (hash(seed, i, 1) % 1_000_000) as i64;
    generated_epoch() + chrono::Duration::seconds(base) + chrono::Duration::microseconds(micros)
}

#[derive(Serialize)]
struct GenTag {
    id: i64,
    name: &'static str,
}

#[derive(Serialize)]
struct GenBook {
    id: i64,
    title: String,
    author: Option<&'static str>,
    category: &'static str,
    source: &'static str,
    num_highlights: u64,
    last_highlight_at: Option<String>,
    updated: String,
    cover_image_url: String,
    highlights_url: String,
    source_url: Option<String>,
    asin: Option<String>,
    tags: Vec<GenTag>,
    document_note: &'static str,
}

const ADJECTIVES: &[&str] = &[
    "Deep",
    "Quiet",
    "Practical",
    "Hidden",
    "Early",
    "Slow",
    "Essential",
    "Curious",
    "Lasting",
    "Simple",
    "Radical",
    "Patient",
    "Open",
    "Careful",
    "Unfinished",
    "Small",
];
const NOUNS: &[&str] = &[
    "Work",
    "Habits",
    "Attention",
    "Retirement",
    "Systems",
    "Memory",
    "Cities",
    "Writing",
    "Income",
    "Leverage",
    "Craft",
    "Forests",
    "Markets",
    "Sleep",
    "Mathematics",
    "Stories",
];
const AUTHORS: &[&str] = &[
    "Jacob Lund Fisker",
    "David Perell",
    "Cal Newport",
    "Annie Dillard",
    "Ursula K. Le Guin",
    "Paul Graham",
    "Mary Oliver",
    "Nassim Nicholas Taleb",
    "Oliver Burkeman",
    "Jane Jacobs",
    "Ted Chiang",
    "Robin Wall Kimmerer",
];
const HANDLES: &[&str] = &["naval", "patio11", "visakanv", "david_perell", "paulg"];

fn generate(
    seed: u64,
    first_id: i64,
    i: usize,
    n: usize,
    touched: Option<DateTime<Utc>>,
) -> GenBook {
    let id = first_id + i as i64;
    let h = hash(seed, i, 7);
    let updated = touched.unwrap_or_else(|| generated_updated(seed, i, n));
    let (category, source) = match i % 10 {
        0..=3 => ("books", "kindle"),
        4 => ("books", "api_book"),
        5 | 6 => ("articles", "reader"),
        7 => ("articles", "api_article"),
        8 => ("tweets", "twitter"),
        _ => ("podcasts", "airr"),
    };
    let quotes = i % 23 == 22;
    let title = if quotes {
        "Quotes".to_string()
    } else {
        let adj = ADJECTIVES[(h % ADJECTIVES.len() as u64) as usize];
        let noun = NOUNS[((h >> 8) % NOUNS.len() as u64) as usize];
        match category {
            "tweets" => format!(
                "Tweets From {}",
                HANDLES[(h >> 16) as usize % HANDLES.len()]
            ),
            "podcasts" => format!("Episode {}: {adj} {noun}", (h >> 20) % 400 + 1),
            _ => format!("{adj} {noun}"),
        }
    };
    let author = if quotes {
        None
    } else if category == "tweets" {
        Some(HANDLES[(h >> 16) as usize % HANDLES.len()])
    } else {
        Some(AUTHORS[((h >> 24) % AUTHORS.len() as u64) as usize])
    };
    let num_highlights = (h >> 32) % 120 + 1;
    let last_highlight_at = (!i.is_multiple_of(11)).then(|| {
        (updated - chrono::Duration::hours(((h >> 40) % 72) as i64))
            .format("%Y-%m-%dT%H:%M:%SZ")
            .to_string()
    });
    let cover_image_url = match category {
        "articles" => format!("https://readwise.io/static/images/article{}.png", i % 5),
        _ => format!(
            "https://readwise.io/static/images/default-book-icon-{}.png",
            i % 9
        ),
    };
    let source_url = match category {
        "articles" => Some(format!("https://example.com/essays/{id}")),
        "tweets" => Some(format!(
            "https://twitter.com/{}/status/{}",
            HANDLES[(h >> 16) as usize % HANDLES.len()],
            1_000_000_000_000_000_000u64 + (h >> 4) % 1_000_000_000
        )),
        _ => None,
    };
    let asin = (source == "kindle").then(|| {
        let mut s = String::from("B0");
        let mut x = h;
        for _ in 0..8 {
            let c = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"[(x % 36) as usize] as char;
            let _ = write!(s, "{c}");
            x /= 36;
        }
        s
    });
    let tags = if i.is_multiple_of(7) {
        vec![GenTag {
            id: 40_000 + (h % 1000) as i64,
            name: "favorite",
        }]
    } else {
        Vec::new()
    };
    GenBook {
        id,
        title,
        author,
        category,
        source,
        num_highlights,
        last_highlight_at,
        updated: format_updated(updated),
        cover_image_url,
        highlights_url: format!("https://readwise.io/bookreview/{id}"),
        source_url,
        asin,
        tags,
        document_note: if i.is_multiple_of(13) {
            "Reread chapter 3."
        } else {
            ""
        },
    }
}
