//! The error classification table against real browser messages (engine/tests/data/browser_messages.json,
//! collected with `webq messages --out`): every message gets the kind of the cause that provoked it.

use webq_engine::platform::classify::{classify, ErrorKind};

#[derive(serde::Deserialize)]
struct Fixture {
    messages: Vec<Message>,
}

#[derive(serde::Deserialize)]
struct Message {
    browser: String,
    trigger: String,
    expected: ErrorKind,
    message: String,
}

fn fixture() -> Fixture {
    serde_json::from_str(include_str!("data/browser_messages.json")).expect("the fixture is valid JSON")
}

#[test]
fn real_browser_messages_get_the_kind_of_their_cause() {
    let f = fixture();
    let wrong: Vec<String> = f
        .messages
        .iter()
        .filter(|m| classify(&m.message).kind != m.expected)
        .map(|m| {
            format!(
                "{} / {}: {:?} expected, got {:?}: {}",
                m.browser,
                m.trigger,
                m.expected,
                classify(&m.message).kind,
                m.message
            )
        })
        .collect();
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn the_fixture_covers_every_kind_and_every_browser_with_an_api() {
    let f = fixture();
    for kind in ErrorKind::ALL {
        assert!(f.messages.iter().any(|m| m.expected == kind), "no real message of kind {kind:?}");
    }
    for browser in ["chromium", "chrome-shell", "firefox"] {
        assert!(f.messages.iter().any(|m| m.browser == browser), "no messages from {browser}");
    }
}

#[test]
fn every_classification_carries_a_recommendation() {
    for m in fixture().messages {
        assert!(!classify(&m.message).recommendation.is_empty());
    }
}
