//! Object path labels for connection names.
//!
//! A D-Bus object path element may hold only `[A-Za-z0-9_]`, while pluto accepts almost any
//! connection name. Names are escaped the way systemd escapes bus labels, so tools that already
//! know that scheme (`busctl`, sd-bus) decode our paths for free: every byte outside
//! `[A-Za-z0-9]`, and a leading digit, becomes `_` and two lower-case hex digits; the empty name
//! is `_`.

use std::fmt::Write;

/// Escapes `name` into one object path element.
pub fn escape(name: &str) -> String {
    if name.is_empty() {
        return "_".to_owned();
    }

    let mut label = String::with_capacity(name.len());
    for (i, byte) in name.bytes().enumerate() {
        let plain = byte.is_ascii_alphabetic() || (byte.is_ascii_digit() && i > 0);
        if plain {
            label.push(char::from(byte));
        } else {
            // Writing to a String cannot fail.
            let _ = write!(label, "_{byte:02x}");
        }
    }
    label
}

/// Reverses [`escape`]. Returns `None` for a label that [`escape`] cannot have produced.
pub fn unescape(label: &str) -> Option<String> {
    if label == "_" {
        return Some(String::new());
    }

    let bytes = label.as_bytes();
    let mut name = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'_' => {
                let hex = label.get(i + 1..i + 3)?;
                if hex.bytes().any(|b| b.is_ascii_uppercase()) {
                    return None;
                }
                name.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b if b.is_ascii_alphabetic() || (b.is_ascii_digit() && i > 0) => {
                name.push(b);
                i += 1;
            }
            _ => return None,
        }
    }
    let name = String::from_utf8(name).ok()?;

    // Only the canonical spelling decodes, so each name has exactly one path.
    (escape(&name) == label).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn escapes_like_systemd() {
        assert_eq!(escape("westnet-eastnet"), "westnet_2deastnet");
        assert_eq!(escape(""), "_");
        assert_eq!(escape("1st"), "_31st");
        assert_eq!(escape("a1"), "a1");
        assert_eq!(escape("-lab.vpn"), "_2dlab_2evpn");
        assert_eq!(escape("rw[3]"), "rw_5b3_5d");
        assert_eq!(escape("ü"), "_c3_bc");
        assert_eq!(escape("a_b"), "a_5fb");
    }

    #[test]
    fn rejects_labels_escape_cannot_produce() {
        assert_eq!(unescape("a_2"), None);
        assert_eq!(unescape("a_zz"), None);
        assert_eq!(unescape("_2D"), None);
        assert_eq!(unescape("1a"), None);
        assert_eq!(unescape("_61"), None, "'a' is never escaped");
        assert_eq!(unescape("_ff"), None, "not UTF-8");
    }

    proptest! {
        #[test]
        fn round_trips_any_name(name in any::<String>()) {
            let label = escape(&name);
            prop_assert!(label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'));
            prop_assert!(!label.as_bytes()[0].is_ascii_digit());
            prop_assert_eq!(unescape(&label), Some(name));
        }

        #[test]
        fn is_a_valid_object_path_element(name in "\\PC*") {
            let path = format!("/org/libreswan/Connection/{}", escape(&name));
            prop_assert!(zbus::ObjectPath::try_from(path.as_str()).is_ok());
        }
    }
}
