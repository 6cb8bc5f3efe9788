//! Error classification: a browser's or driver's error message mapped to one of five kinds, each with
//! a recommendation. The mapping is data (`error_classes.json`), tested against real messages the
//! browsers gave (`engine/tests/data/browser_messages.json`, collected by `webq messages`).

use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorKind {
    PrecisionNotSupported,
    ResourceLimit,
    GraphBuildingError,
    DeviceLost,
    Unknown,
}

impl ErrorKind {
    pub const ALL: [ErrorKind; 5] = [
        ErrorKind::PrecisionNotSupported,
        ErrorKind::ResourceLimit,
        ErrorKind::GraphBuildingError,
        ErrorKind::DeviceLost,
        ErrorKind::Unknown,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::PrecisionNotSupported => "PRECISION_NOT_SUPPORTED",
            ErrorKind::ResourceLimit => "RESOURCE_LIMIT",
            ErrorKind::GraphBuildingError => "GRAPH_BUILDING_ERROR",
            ErrorKind::DeviceLost => "DEVICE_LOST",
            ErrorKind::Unknown => "UNKNOWN",
        }
    }

    /// What a user should try next.
    pub fn recommendation(self) -> &'static str {
        table().kinds.iter().find(|(k, _)| *k == self).map_or("", |(_, r)| r.as_str())
    }
}

/// A classified error: the kind, the recommendation and the message it came from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Classified {
    pub kind: ErrorKind,
    pub recommendation: String,
    pub message: String,
}

#[derive(Deserialize)]
struct RawTable {
    kinds: std::collections::BTreeMap<String, String>,
    rules: Vec<RawRule>,
}

#[derive(Deserialize)]
struct RawRule {
    kind: ErrorKind,
    phrases: Vec<String>,
}

struct Table {
    kinds: Vec<(ErrorKind, String)>,
    /// (kind, lower-case phrases), in order.
    rules: Vec<(ErrorKind, Vec<String>)>,
}

fn table() -> &'static Table {
    static TABLE: OnceLock<Table> = OnceLock::new();
    TABLE.get_or_init(|| {
        let raw: RawTable =
            serde_json::from_str(include_str!("error_classes.json")).expect("error_classes.json is valid (tested)");
        let kinds = ErrorKind::ALL.iter().map(|k| (*k, raw.kinds.get(k.name()).cloned().unwrap_or_default())).collect();
        let rules =
            raw.rules.into_iter().map(|r| (r.kind, r.phrases.iter().map(|p| p.to_lowercase()).collect())).collect();
        Table { kinds, rules }
    })
}

/// The kind of an error message: the first rule with a phrase the message contains.
pub fn kind_of(message: &str) -> ErrorKind {
    let lower = message.to_lowercase();
    table()
        .rules
        .iter()
        .find(|(_, phrases)| phrases.iter().any(|p| lower.contains(p.as_str())))
        .map_or(ErrorKind::Unknown, |(k, _)| *k)
}

pub fn classify(message: &str) -> Classified {
    let kind = kind_of(message);
    Classified { kind, recommendation: kind.recommendation().to_string(), message: message.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_a_recommendation() {
        for k in ErrorKind::ALL {
            assert!(!k.recommendation().is_empty(), "{k:?}");
        }
    }

    #[test]
    fn unmatched_messages_are_unknown() {
        assert_eq!(kind_of("something else entirely"), ErrorKind::Unknown);
    }
}
