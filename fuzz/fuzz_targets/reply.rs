//! `parse_reply` and `classify_whack_failure` on arbitrary text.

#![no_main]

use libfuzzer_sys::fuzz_target;
use libreswan_dbus::parse::{classify_whack_failure, parse_reply};

fuzz_target!(|text: &str| {
    parse_reply(text);
    classify_whack_failure(text);
});
