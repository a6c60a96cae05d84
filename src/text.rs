//! Peer text made safe for people: the one escaping function every human-facing string built
//! from peer bytes goes through (errors, greetings, capabilities, names, transcripts, logs).

use std::borrow::Cow;

/// The one escaping function for text that came from a peer and may reach a person: every
/// control character (C0, DEL and C1) becomes a Rust-style escape (`\u{1b}`), so a hostile peer
/// cannot drive a terminal or forge log lines. Text without controls comes back borrowed;
/// escaping twice changes nothing more.
pub fn escape_controls(text: &str) -> Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}
