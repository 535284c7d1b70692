//! `parse_status` and `parse_brief_connection_status` on arbitrary text.

#![no_main]

use libfuzzer_sys::fuzz_target;
use libreswan_dbus::parse::{parse_brief_connection_status, parse_status};

fuzz_target!(|text: &str| {
    let status = parse_status(text);
    for connection in &status.connections {
        connection.routed();
    }
    parse_brief_connection_status(text);
});
