//! The engine's statuses and kinds as types, in one casing for the API (PascalCase, which
//! is also Inngest's `/v1` casing for run statuses), and the one place that maps each to
//! what the database stores.
//!
//! The database keeps the spellings it always had (`Running` for runs; `completed`,
//! `sleeping`, `wait_for_event` ... for steps), so existing files need no migration and
//! components that query the tables directly keep working.

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};
use serde::{Deserialize, Serialize};

/// Declares an enum with its API spelling (the variant name) and its stored spelling.
macro_rules! stored_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident ($what:literal) { $( $(#[$vmeta:meta])* $variant:ident = $db:literal ),+ $(,)? }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ts_rs::TS)]
        pub enum $name {
            $( $(#[$vmeta])* $variant ),+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The API spelling (as serialized).
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => stringify!($variant)),+ }
            }

            /// The spelling the database stores.
            pub fn as_db(self) -> &'static str {
                match self { $($name::$variant => $db),+ }
            }

            /// Reads the database's spelling.
            pub fn from_db(text: &str) -> Option<$name> {
                match text { $($db => Some($name::$variant),)+ _ => None }
            }

            /// Reads the API spelling (exactly, as serialized).
            pub fn parse(text: &str) -> Option<$name> {
                $name::ALL.iter().copied().find(|v| v.as_str() == text)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<$name, String> {
                $name::parse(s).ok_or_else(|| {
                    let all: Vec<&str> = $name::ALL.iter().map(|v| v.as_str()).collect();
                    format!("unknown {} `{s}`; expected one of {}", $what, all.join(", "))
                })
            }
        }

        /// Compares with the API spelling (`status == "Completed"`).
        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.as_str() == *other
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.as_str() == other
            }
        }

        impl ToSql for $name {
            fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
                Ok(ToSqlOutput::from(self.as_db()))
            }
        }

        impl FromSql for $name {
            fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
                let text = value.as_str()?;
                $name::from_db(text).ok_or_else(|| {
                    FromSqlError::Other(
                        format!("unknown {} `{text}` in the database", $what).into(),
                    )
                })
            }
        }
    };
}

stored_enum! {
    /// A run's status.
    pub enum RunStatus ("status") {
        Running = "Running",
        Completed = "Completed",
        Failed = "Failed",
        Cancelled = "Cancelled",
    }
}

stored_enum! {
    /// A step's status.
    pub enum StepStatus ("step status") {
        /// A `run` step whose code is executing now.
        Running = "running",
        Completed = "completed",
        Failed = "failed",
        /// Failed, and tried again at `wake_at`.
        Retrying = "retrying",
        Sleeping = "sleeping",
        Waiting = "waiting",
        Invoking = "invoking",
        /// A `run` step that was executing when Stepdesk stopped: it runs again when the run
        /// resumes (see `RunDetail::interruptions`).
        Interrupted = "interrupted",
    }
}

stored_enum! {
    /// What a step does.
    pub enum StepKind ("step kind") {
        Run = "run",
        Sleep = "sleep",
        WaitForEvent = "wait_for_event",
        Invoke = "invoke",
        SendEvent = "send_event",
    }
}

stored_enum! {
    /// What started a run (and, for a function, what can start it: `Event` or `Cron`).
    pub enum TriggerKind ("trigger kind") {
        Event = "event",
        Cron = "cron",
        /// `step.invoke` from another run, or the admin's "Test function".
        Invoke = "invoke",
        /// The admin's "Rerun" or "Rerun from step" (`rerun_of` names the original run).
        Rerun = "rerun",
    }
}

impl RunStatus {
    /// The run has ended (it will not execute again).
    pub fn is_finished(self) -> bool {
        self != RunStatus::Running
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_and_stored_spellings_round_trip() {
        for s in RunStatus::ALL {
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
            assert_eq!(RunStatus::from_db(s.as_db()), Some(*s));
            assert_eq!(s.as_str(), s.as_db(), "runs store Inngest's casing");
        }
        for s in StepStatus::ALL {
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
            assert_eq!(StepStatus::from_db(s.as_db()), Some(*s));
        }
        assert_eq!(
            serde_json::to_value(StepKind::WaitForEvent).unwrap(),
            "WaitForEvent"
        );
        assert_eq!(StepKind::WaitForEvent.as_db(), "wait_for_event");
        assert_eq!(TriggerKind::from_db("cron"), Some(TriggerKind::Cron));
        assert!("Done".parse::<RunStatus>().unwrap_err().contains("Running"));
        assert!(
            "running".parse::<RunStatus>().is_err(),
            "the API spelling is exact"
        );
        assert_eq!(RunStatus::Failed, "Failed");
    }

    #[test]
    fn an_unknown_stored_value_is_an_error_not_a_panic() {
        let c = rusqlite::Connection::open_in_memory().unwrap();
        let r: rusqlite::Result<StepStatus> = c.query_row("SELECT 'exploded'", [], |r| r.get(0));
        assert!(r.unwrap_err().to_string().contains("exploded"));
        let ok: StepStatus = c
            .query_row("SELECT ?1", [StepStatus::Sleeping], |r| r.get(0))
            .unwrap();
        assert_eq!(ok, StepStatus::Sleeping);
    }
}

#[cfg(test)]
mod ts_tests {
    use ts_rs::{Config, TS};

    use super::*;
    use crate::admin::{RunDetail, RunQuery, StepView, TriggerView};

    /// The generated TypeScript uses the enums, in their API spelling. Times are `i64`
    /// milliseconds, which JSON carries as numbers: generate with `large_int = number`.
    #[test]
    fn typescript_declarations_name_the_enums() {
        let cfg = Config::default().with_large_int("number");
        assert_eq!(
            RunStatus::decl(&cfg),
            r#"type RunStatus = "Running" | "Completed" | "Failed" | "Cancelled";"#
        );
        assert!(StepKind::decl(&cfg).contains(r#""WaitForEvent""#));
        let step = StepView::decl(&cfg);
        assert!(step.contains("status: StepStatus"), "{step}");
        assert!(step.contains("output: JsonValue | null"), "{step}");
        let detail = RunDetail::decl(&cfg);
        assert!(detail.contains("status: RunStatus"), "{detail}");
        assert!(detail.contains("trigger_kind: TriggerKind"), "{detail}");
        // Query fields may be left out.
        assert!(RunQuery::decl(&cfg).contains("function_id?: string"));
        let trigger = TriggerView::decl(&cfg);
        assert!(trigger.contains("next_fire_at?: number"), "{trigger}");
    }
}
