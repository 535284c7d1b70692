//! `parse_trafficstatus` on arbitrary text.

#![no_main]

use libfuzzer_sys::fuzz_target;
use libreswan_dbus::parse::parse_trafficstatus;

fuzz_target!(|text: &str| {
    parse_trafficstatus(text);
});
