//! `parse_showstates` on arbitrary text.

#![no_main]

use libfuzzer_sys::fuzz_target;
use libreswan_dbus::parse::parse_showstates;

fuzz_target!(|text: &str| {
    parse_showstates(text);
});
