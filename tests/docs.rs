//! The man pages and the README's API reference against what they describe: the options,
//! commands and exit statuses the programs print with `--help`, the interfaces in `dbus/*.xml`,
//! the errors the service returns and the polkit actions' defaults. Each check runs both ways,
//! so neither side can change alone. Also: the pages render without a single groff warning.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::Path,
    process::Command,
};

use libreswan_dbus::{bus::Error as ServiceError, client};
use zbus::DBusError;

const DAEMON: &str = env!("CARGO_BIN_EXE_libreswan-dbus");
const CTL: &str = env!("CARGO_BIN_EXE_libreswan-dbusctl");

fn read(relative: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(relative);
    fs::read_to_string(&path).unwrap_or_else(|err| panic!("cannot read {}: {err}", path.display()))
}

fn help(program: &str) -> String {
    let output = Command::new(program).arg("--help").output().unwrap();
    assert!(output.status.success(), "{program} --help failed");
    String::from_utf8(output.stdout).unwrap()
}

/// Fails, naming only the differences, unless `documented` (in `doc`) and `actual` (in
/// `source`) hold the same things.
fn assert_same<T: Ord + std::fmt::Debug>(
    doc: &str,
    documented: &BTreeSet<T>,
    source: &str,
    actual: &BTreeSet<T>,
) {
    let extra: Vec<&T> = documented.difference(actual).collect();
    let missing: Vec<&T> = actual.difference(documented).collect();
    assert!(
        extra.is_empty() && missing.is_empty(),
        "{doc} and {source} disagree.\nonly in {doc}: {extra:#?}\nonly in {source}: {missing:#?}"
    );
}

// ---- roff ----------------------------------------------------------------------------------

/// The text a roff line shows, without font changes and escapes.
fn unroff(line: &str) -> String {
    let mut text = String::new();
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            text.push(c);
            continue;
        }
        match chars.next() {
            Some('f') => {
                chars.next();
            }
            Some('(') => {
                let name: String = chars.by_ref().take(2).collect();
                text.push_str(match name.as_str() {
                    "->" => "->",
                    "em" => "—",
                    "aq" => "'",
                    _ => "?",
                });
            }
            Some('-') => text.push('-'),
            Some('e') => text.push('\\'),
            Some(' ') => text.push(' '),
            Some('&') | None => {}
            Some(other) => text.push(other),
        }
    }
    text
}

/// One `.TP` item: its tag and its body, as shown.
#[derive(Debug)]
struct Item {
    subsection: Option<String>,
    tag: String,
    body: String,
}

/// The `.TP` items of section `name` (`.SH "NAME"`), with the `.SS` each is under.
fn items(page: &str, name: &str) -> Vec<Item> {
    let heading = format!(".SH \"{name}\"");
    let start = page
        .lines()
        .position(|line| line == heading)
        .unwrap_or_else(|| panic!("no section {name}"));
    let mut items: Vec<Item> = Vec::new();
    let mut subsection = None;
    let mut lines = page.lines().skip(start + 1).peekable();
    let mut in_item = false;
    while let Some(line) = lines.next() {
        if line.starts_with(".SH") {
            break;
        } else if let Some(title) = line.strip_prefix(".SS ") {
            subsection = Some(title.trim_matches('"').to_owned());
            in_item = false;
        } else if line == ".TP" {
            let tag = unroff(lines.next().expect("a tag after .TP"));
            items.push(Item {
                subsection: subsection.clone(),
                tag,
                body: String::new(),
            });
            in_item = true;
        } else if line.starts_with(".PP") || line.starts_with(".RS") {
            in_item = false;
        } else if in_item && !line.starts_with('.') {
            let item = items.last_mut().unwrap();
            if !item.body.is_empty() {
                item.body.push(' ');
            }
            item.body.push_str(&unroff(line));
        }
    }
    items
}

// ---- options -------------------------------------------------------------------------------

/// An option as `--help` or a man page presents it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Opt {
    names: Vec<String>,
    value: Option<String>,
    default: Option<String>,
}

/// `-h, --help` or `--bus <system|session|ADDRESS>` or `--bus system|session|ADDRESS`.
fn parse_flags(flags: &str) -> (Vec<String>, Option<String>) {
    let mut names = Vec::new();
    let mut value = None;
    for word in flags.split_whitespace() {
        let word = word.trim_end_matches(',');
        if word.starts_with('-') {
            names.push(word.to_owned());
        } else {
            value = Some(
                word.trim_start_matches('<')
                    .trim_end_matches('>')
                    .to_owned(),
            );
        }
    }
    names.sort();
    (names, value)
}

/// The options of a clap `--help`, in its one-line or its long layout.
fn help_options(help: &str) -> BTreeSet<Opt> {
    let mut options = Vec::new();
    let mut description: Vec<String> = Vec::new();
    let mut in_options = false;
    let mut flush = |flags: Option<(Vec<String>, Option<String>)>, text: &[String]| {
        if let Some((names, value)) = flags {
            let text = text.join(" ");
            let default = text
                .split_once("[default: ")
                .map(|(_, rest)| rest.split(']').next().unwrap().to_owned());
            options.push(Opt {
                names,
                value,
                default,
            });
        }
    };
    let mut current = None;
    for line in help.lines() {
        if line == "Options:" {
            in_options = true;
            continue;
        }
        if !in_options {
            continue;
        }
        if !line.starts_with(' ') && !line.is_empty() {
            break;
        }
        let trimmed = line.trim_start();
        if trimmed.starts_with('-') {
            flush(current.take(), &description);
            description.clear();
            let (flags, rest) = trimmed.split_once("  ").unwrap_or((trimmed, ""));
            current = Some(parse_flags(flags));
            description.push(rest.trim().to_owned());
        } else {
            description.push(trimmed.to_owned());
        }
    }
    flush(current.take(), &description);
    options.into_iter().collect()
}

/// The options of a man page's OPTIONS section: tag `--name VALUE`, default "Default: VALUE."
fn man_options(page: &str) -> BTreeSet<Opt> {
    items(page, "OPTIONS")
        .into_iter()
        .map(|item| {
            let (names, value) = parse_flags(&item.tag);
            let default = item.body.split_once("Default: ").map(|(_, rest)| {
                let word = rest.split_whitespace().next().unwrap_or_default();
                word.strip_suffix('.').unwrap_or(word).to_owned()
            });
            Opt {
                names,
                value,
                default,
            }
        })
        .collect()
}

#[test]
fn the_daemons_page_lists_exactly_its_options_with_their_defaults() {
    let from_help = help_options(&help(DAEMON));
    assert!(
        from_help
            .iter()
            .any(|o| o.names == ["--ctlsocket"]
                && o.default.as_deref() == Some("/run/pluto/pluto.ctl")),
        "cannot read --help: {from_help:?}"
    );
    assert_same(
        "man/libreswan-dbus.8",
        &man_options(&read("man/libreswan-dbus.8")),
        "libreswan-dbus --help",
        &from_help,
    );
}

#[test]
fn the_clients_page_lists_exactly_its_options_commands_and_exit_statuses() {
    let help = help(CTL);
    let page = read("man/libreswan-dbusctl.1");
    assert_same(
        "man/libreswan-dbusctl.1",
        &man_options(&page),
        "libreswan-dbusctl --help",
        &help_options(&help),
    );

    let section = |title: &str| -> BTreeSet<String> {
        help.lines()
            .skip_while(|line| *line != title)
            .skip(1)
            .take_while(|line| line.starts_with(' '))
            .map(|line| line.split_whitespace().next().unwrap().to_owned())
            .collect()
    };
    let tags = |name: &str| -> BTreeSet<String> {
        items(&page, name)
            .into_iter()
            .map(|item| item.tag.split_whitespace().next().unwrap().to_owned())
            .collect()
    };
    let commands = section("Commands:");
    assert!(commands.contains("watch"), "{commands:?}");
    assert_same("COMMANDS", &tags("COMMANDS"), "--help", &commands);
    let statuses = section("Exit status:");
    assert!(statuses.contains("4"), "{statuses:?}");
    assert_same("EXIT STATUS", &tags("EXIT STATUS"), "--help", &statuses);
}

#[test]
fn the_readme_lists_every_option_of_the_daemon() {
    let readme = read("README.md");
    let listed: BTreeSet<String> = readme
        .lines()
        .filter_map(|line| line.strip_prefix("| `--"))
        .map(|rest| format!("--{}", rest.split([' ', '`']).next().unwrap()))
        .collect();
    let options: BTreeSet<String> = help_options(&help(DAEMON))
        .into_iter()
        .flat_map(|option| option.names)
        .filter(|name| name.starts_with("--") && name != "--help" && name != "--version")
        .collect();
    assert_same("README.md", &listed, "libreswan-dbus --help", &options);
}

#[test]
fn the_pages_carry_the_crates_version_and_render_without_warnings() {
    for page in ["man/libreswan-dbus.8", "man/libreswan-dbusctl.1"] {
        let th = read(page)
            .lines()
            .find(|line| line.starts_with(".TH "))
            .map(unroff)
            .expect(".TH");
        assert!(
            th.contains(&format!("\"libreswan-dbus {}\"", env!("CARGO_PKG_VERSION"))),
            "{page}: {th}"
        );

        let output = Command::new("groff")
            .args(["-man", "-Tutf8", "-ww", "-z"])
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join(page))
            .output()
            .expect("cannot run groff (apt-get install groff-base)");
        assert!(output.status.success(), "{page}");
        assert_eq!(String::from_utf8_lossy(&output.stderr), "", "{page}");
    }
}

// ---- D-Bus interface -----------------------------------------------------------------------

/// One XML tag (or text between tags), without comments and declarations.
#[derive(Debug)]
enum Token {
    Open {
        name: String,
        attributes: BTreeMap<String, String>,
        empty: bool,
    },
    Close(String),
    Text(String),
}

fn tokens(xml: &str) -> Vec<Token> {
    let mut tokens = Vec::new();
    let mut rest = xml;
    while let Some(start) = rest.find('<') {
        let text = rest[..start].trim();
        if !text.is_empty() {
            tokens.push(Token::Text(text.to_owned()));
        }
        rest = &rest[start..];
        if let Some(comment) = rest.strip_prefix("<!--") {
            rest = &comment[comment.find("-->").expect("an unclosed comment") + 3..];
            continue;
        }
        let end = rest.find('>').expect("an unclosed tag");
        let tag = &rest[1..end];
        rest = &rest[end + 1..];
        if tag.starts_with('!') || tag.starts_with('?') {
            continue;
        }
        if let Some(name) = tag.strip_prefix('/') {
            tokens.push(Token::Close(name.trim().to_owned()));
            continue;
        }
        let empty = tag.ends_with('/');
        let tag = tag.trim_end_matches('/');
        let (name, mut attrs) = tag.split_once(char::is_whitespace).unwrap_or((tag, ""));
        let mut attributes = BTreeMap::new();
        while let Some((key, after)) = attrs.split_once("=\"") {
            let (value, after) = after.split_once('"').expect("an unclosed attribute");
            attributes.insert(key.trim().to_owned(), value.to_owned());
            attrs = after;
        }
        tokens.push(Token::Open {
            name: name.to_owned(),
            attributes,
            empty,
        });
    }
    tokens
}

/// A member of an interface, described the way the README and the man page describe it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Member {
    Method {
        interface: String,
        name: String,
        inputs: String,
        outputs: String,
    },
    Property {
        interface: String,
        name: String,
        signature: String,
        signals: String,
    },
}

fn xml_members() -> BTreeSet<Member> {
    let mut members = BTreeSet::new();
    for file in [
        "dbus/org.libreswan.Manager.xml",
        "dbus/org.libreswan.Connection.xml",
    ] {
        let mut interface = String::new();
        let mut open: Option<Member> = None;
        for token in tokens(&read(file)) {
            match token {
                Token::Open {
                    name,
                    attributes,
                    empty,
                } => {
                    let attr = |key: &str| attributes.get(key).cloned().unwrap_or_default();
                    match name.as_str() {
                        "interface" => interface = attr("name"),
                        "method" => {
                            let method = Member::Method {
                                interface: interface.clone(),
                                name: attr("name"),
                                inputs: String::new(),
                                outputs: String::new(),
                            };
                            if empty {
                                members.insert(method);
                            } else {
                                open = Some(method);
                            }
                        }
                        "arg" => {
                            if let Some(Member::Method {
                                inputs, outputs, ..
                            }) = &mut open
                            {
                                let list = if attr("direction") == "out" {
                                    outputs
                                } else {
                                    inputs
                                };
                                let arg = format!("{} {}", attr("type"), attr("name"));
                                if !list.is_empty() {
                                    list.push_str(", ");
                                }
                                list.push_str(arg.trim());
                            }
                        }
                        "property" => {
                            let property = Member::Property {
                                interface: interface.clone(),
                                name: attr("name"),
                                signature: attr("type"),
                                signals: "yes".to_owned(),
                            };
                            if empty {
                                members.insert(property);
                            } else {
                                open = Some(property);
                            }
                        }
                        "annotation"
                            if attr("name")
                                == "org.freedesktop.DBus.Property.EmitsChangedSignal" =>
                        {
                            if let Some(Member::Property { signals, .. }) = &mut open {
                                *signals = match attr("value").as_str() {
                                    "false" => "no".to_owned(),
                                    "true" => "yes".to_owned(),
                                    other => other.to_owned(),
                                };
                            }
                        }
                        _ => {}
                    }
                }
                Token::Close(name) if name == "method" || name == "property" => {
                    members.extend(open.take());
                }
                _ => {}
            }
        }
    }
    members
}

/// Every error name the service can return. The match below stops compiling when a variant
/// is added, so the list cannot fall behind.
fn service_errors() -> BTreeSet<String> {
    let all = [
        ServiceError::NotAuthorized(String::new()),
        ServiceError::InteractiveAuthorizationRequired(String::new()),
        ServiceError::UnknownConnection(String::new()),
        ServiceError::PlutoUnavailable(String::new()),
        ServiceError::Timeout(String::new()),
        ServiceError::Failed(String::new()),
        ServiceError::Busy(String::new()),
    ];
    for error in &all {
        match error {
            ServiceError::NotAuthorized(_)
            | ServiceError::InteractiveAuthorizationRequired(_)
            | ServiceError::UnknownConnection(_)
            | ServiceError::PlutoUnavailable(_)
            | ServiceError::Timeout(_)
            | ServiceError::Failed(_)
            | ServiceError::Busy(_) => {}
        }
    }
    all.iter().map(|error| error.name().to_string()).collect()
}

#[test]
fn the_client_has_a_variant_for_every_error_of_the_service() {
    for name in service_errors() {
        let error = client::Error::from_reply(&name, "message");
        assert!(
            !matches!(error, client::Error::Other { .. }),
            "{name} has no variant"
        );
        assert_eq!(error.name(), Some(name.as_str()));
    }
}

/// The README's API reference: its members, and its error names.
fn readme_reference() -> (BTreeSet<Member>, BTreeSet<String>) {
    let readme = read("README.md");
    let (_, section) = readme
        .split_once("\n## API reference\n")
        .expect("an API reference section");
    let section = section.split("\n## ").next().unwrap();

    let mut members = BTreeSet::new();
    let mut errors = BTreeSet::new();
    let mut interface = String::new();
    let mut kind = String::new();
    for line in section.lines() {
        if let Some(heading) = line.strip_prefix("### ") {
            interface = heading
                .split('`')
                .nth(1)
                .filter(|name| name.starts_with("org."))
                .unwrap_or_default()
                .to_owned();
            continue;
        }
        let Some(row) = line.strip_prefix('|') else {
            continue;
        };
        let cells: Vec<String> = row
            .split('|')
            .map(|cell| cell.trim().trim_matches('`').to_owned())
            .collect();
        if cells[0].starts_with("---") {
            continue;
        }
        if ["method", "property", "error"].contains(&cells[0].as_str()) {
            kind = cells[0].clone();
            continue;
        }
        match kind.as_str() {
            "method" => members.insert(Member::Method {
                interface: interface.clone(),
                name: cells[0].clone(),
                inputs: cells[1].clone(),
                outputs: cells[2].clone(),
            }),
            "property" => members.insert(Member::Property {
                interface: interface.clone(),
                name: cells[0].clone(),
                signature: cells[1].clone(),
                signals: cells[2].clone(),
            }),
            "error" => errors.insert(cells[0].clone()),
            _ => panic!("a table row before any table header: {line}"),
        };
    }
    (members, errors)
}

#[test]
fn the_readme_api_reference_matches_the_interfaces_and_errors() {
    let xml = xml_members();
    assert_eq!(xml.len(), 25, "cannot read dbus/*.xml: {xml:#?}");
    let (members, errors) = readme_reference();
    assert_same("README.md", &members, "dbus/*.xml", &xml);
    assert_same("README.md", &errors, "the service", &service_errors());
}

/// The man page's D-BUS INTERFACE section, described as `Member`s and error names.
fn man_reference() -> (BTreeSet<Member>, BTreeSet<String>) {
    let mut members = BTreeSet::new();
    let mut errors = BTreeSet::new();
    for item in items(&read("man/libreswan-dbus.8"), "D-BUS INTERFACE") {
        let Some(subsection) = item.subsection else {
            continue;
        };
        if subsection == "Errors" {
            errors.insert(item.tag);
            continue;
        }
        if !subsection.starts_with("org.") {
            continue;
        }
        // `GetConnection(s name) -> o`, `Refresh()`, `Version s, constant`, `State s`
        if let Some((name, rest)) = item.tag.split_once('(') {
            let (inputs, outputs) = rest.split_once(')').unwrap();
            members.insert(Member::Method {
                interface: subsection,
                name: name.to_owned(),
                inputs: inputs.to_owned(),
                outputs: outputs.trim().trim_start_matches("->").trim().to_owned(),
            });
        } else {
            let (head, signals) = item.tag.split_once(", ").unwrap_or((&item.tag, ""));
            let (name, signature) = head.split_once(' ').unwrap();
            members.insert(Member::Property {
                interface: subsection,
                name: name.to_owned(),
                signature: signature.to_owned(),
                signals: match signals {
                    "" => "yes",
                    "constant" => "const",
                    "not signalled" => "no",
                    other => panic!("{name}: unknown {other:?}"),
                }
                .to_owned(),
            });
        }
    }
    (members, errors)
}

#[test]
fn the_man_page_interface_section_matches_the_interfaces_and_errors() {
    let (members, errors) = man_reference();
    assert_same(
        "man/libreswan-dbus.8",
        &members,
        "dbus/*.xml",
        &xml_members(),
    );
    assert_same(
        "man/libreswan-dbus.8",
        &errors,
        "the service",
        &service_errors(),
    );
}

// ---- polkit --------------------------------------------------------------------------------

/// Each action of polkit/org.libreswan.policy with its defaults (any, inactive, active).
fn policy_defaults() -> BTreeMap<String, [String; 3]> {
    let mut actions = BTreeMap::new();
    let mut action = String::new();
    let mut field = String::new();
    let mut defaults: [String; 3] = Default::default();
    for token in tokens(&read("polkit/org.libreswan.policy")) {
        match token {
            Token::Open {
                name, attributes, ..
            } => {
                if name == "action" {
                    action = attributes["id"].clone();
                }
                field = name;
            }
            Token::Text(text) => {
                let slot = ["allow_any", "allow_inactive", "allow_active"]
                    .iter()
                    .position(|name| *name == field);
                if let Some(slot) = slot {
                    defaults[slot] = text;
                }
            }
            Token::Close(name) if name == "action" => {
                actions.insert(action.clone(), std::mem::take(&mut defaults));
            }
            Token::Close(_) => field.clear(),
        }
    }
    actions
}

#[test]
fn the_man_page_and_readme_give_the_policys_defaults() {
    let policy = policy_defaults();
    assert_eq!(policy.len(), 4, "cannot read the policy: {policy:?}");

    let page: BTreeMap<String, String> = items(&read("man/libreswan-dbus.8"), "AUTHORIZATION")
        .into_iter()
        .filter(|item| item.tag.starts_with("org.libreswan."))
        .map(|item| (item.tag, item.body))
        .collect();
    assert_eq!(
        page.keys().collect::<Vec<_>>(),
        policy.keys().collect::<Vec<_>>()
    );
    for (action, [any, inactive, active]) in &policy {
        let said = format!("Defaults: any {any}, inactive {inactive}, active {active}.");
        assert!(page[action].contains(&said), "{action}: {}", page[action]);
    }

    // The README's table: `| `ACTION` | verbs | any / inactive / active |`, or one value for
    // all three.
    let readme = read("README.md");
    for (action, defaults) in &policy {
        let row = readme
            .lines()
            .find(|line| line.starts_with(&format!("| `{action}` |")))
            .unwrap_or_else(|| panic!("no README row for {action}"));
        let said: Vec<&str> = row
            .split('|')
            .nth(3)
            .unwrap()
            .split('/')
            .map(str::trim)
            .collect();
        let said = match said[..] {
            [all] => vec![all; 3],
            _ => said,
        };
        assert_eq!(
            said,
            defaults.iter().map(String::as_str).collect::<Vec<_>>(),
            "{action}"
        );
    }
}
