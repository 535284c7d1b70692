//! What `make install` puts where, what `make uninstall` takes away, the Debian package built
//! from the same tree, its maintainer scripts, and the names and paths that the bus, systemd
//! and the Makefile must agree on.
//!
//! make installs the binaries cargo built for these tests (`BUILD_DIR`), so nothing is
//! compiled twice. The package is installed and purged only in a throwaway root with a dpkg
//! database of its own; the host's is never touched. These tests need root: dpkg installs as
//! root, and the maintainer scripts are run against a private system bus.

mod support;

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    os::unix::fs::{PermissionsExt, symlink},
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    sync::OnceLock,
    time::{Duration, Instant},
};

use libreswan_dbus::client::{self, Verb};
use support::TestBus;
use tempfile::TempDir;

const DAEMON: &str = env!("CARGO_BIN_EXE_libreswan-dbus");
const CTL: &str = env!("CARGO_BIN_EXE_libreswan-dbusctl");

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn build_dir() -> &'static Path {
    Path::new(DAEMON).parent().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn read(path: impl AsRef<Path>) -> String {
    let path = path.as_ref();
    fs::read_to_string(path).unwrap_or_else(|err| panic!("cannot read {}: {err}", path.display()))
}

fn temp_dir() -> TempDir {
    tempfile::Builder::new()
        .prefix("lswdbus-install.")
        .tempdir_in("/tmp")
        .unwrap()
}

fn succeeded(what: &str, output: Output) -> Output {
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{}{}",
        output.status,
        text(&output.stdout),
        text(&output.stderr)
    );
    output
}

/// `make ARGS` in the repository, installing the binaries built for these tests.
fn make(args: &[&str]) -> Output {
    Command::new("make")
        .arg("--no-print-directory")
        .arg("-C")
        .arg(repo())
        .args(args)
        .arg(format!("BUILD_DIR={}", build_dir().display()))
        // Whatever make runs this test must not leak its options into ours.
        .env_remove("MAKEFLAGS")
        .env_remove("MFLAGS")
        .env_remove("MAKELEVEL")
        .stdin(Stdio::null())
        .output()
        .expect("cannot run make")
}

fn make_ok(args: &[&str]) {
    succeeded(&format!("make {}", args.join(" ")), make(args));
}

/// systemd's unit directory as the Makefile finds it when UNITDIR is not given.
fn default_unit_dir() -> String {
    let output = Command::new("pkg-config")
        .args(["--variable=systemdsystemunitdir", "systemd"])
        .output();
    match output {
        Ok(output) if output.status.success() && !output.stdout.trim_ascii().is_empty() => {
            text(output.stdout.trim_ascii())
        }
        _ => "/usr/lib/systemd/system".to_owned(),
    }
}

/// Every file the install writes, relative to DESTDIR, with its mode.
fn expected_files(prefix: &str, unit_dir: &str) -> BTreeMap<String, u32> {
    let p = prefix.trim_start_matches('/');
    let unit_dir = unit_dir.trim_start_matches('/');
    BTreeMap::from([
        (format!("{p}/libexec/libreswan-dbus"), 0o755),
        (format!("{p}/bin/libreswan-dbusctl"), 0o755),
        (
            format!("{p}/share/dbus-1/system.d/org.libreswan.conf"),
            0o644,
        ),
        (
            format!("{p}/share/dbus-1/system-services/org.libreswan.service"),
            0o644,
        ),
        (
            format!("{p}/share/dbus-1/interfaces/org.libreswan.Manager.xml"),
            0o644,
        ),
        (
            format!("{p}/share/dbus-1/interfaces/org.libreswan.Connection.xml"),
            0o644,
        ),
        (format!("{unit_dir}/libreswan-dbus.service"), 0o644),
        (
            format!("{p}/share/polkit-1/actions/org.libreswan.policy"),
            0o644,
        ),
        (
            format!("{p}/share/doc/libreswan-dbus/examples/50-libreswan-dbus.rules"),
            0o644,
        ),
        (format!("{p}/share/man/man8/libreswan-dbus.8.gz"), 0o644),
        (format!("{p}/share/man/man1/libreswan-dbusctl.1.gz"), 0o644),
    ])
}

/// One entry of a file tree: a directory, or a file with its permission bits.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    Dir,
    File(u32),
    Link(PathBuf),
}

/// Everything below `root`, by path relative to it (`usr/bin/x`).
fn tree(root: &Path) -> BTreeMap<String, Entry> {
    fn walk(root: &Path, dir: &Path, entries: &mut BTreeMap<String, Entry>) {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let relative = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let meta = fs::symlink_metadata(&path).unwrap();
            if meta.file_type().is_symlink() {
                entries.insert(relative, Entry::Link(fs::read_link(&path).unwrap()));
            } else if meta.is_dir() {
                entries.insert(relative, Entry::Dir);
                walk(root, &path, entries);
            } else {
                entries.insert(relative, Entry::File(meta.permissions().mode() & 0o7777));
            }
        }
    }
    let mut entries = BTreeMap::new();
    walk(root, root, &mut entries);
    entries
}

fn files(tree: &BTreeMap<String, Entry>) -> BTreeMap<String, u32> {
    tree.iter()
        .filter_map(|(path, entry)| match entry {
            Entry::File(mode) => Some((path.clone(), *mode)),
            _ => None,
        })
        .collect()
}

fn gunzip(path: &Path) -> String {
    let output = Command::new("gzip").arg("-dc").arg(path).output().unwrap();
    text(&succeeded("gzip -dc", output).stdout)
}

/// `KEY=value` of an INI-style file (systemd unit, D-Bus activation file); the first one.
fn ini_value(contents: &str, key: &str) -> Option<String> {
    contents.lines().find_map(|line| {
        let (k, v) = line.split_once('=')?;
        (k.trim() == key).then(|| v.trim().to_owned())
    })
}

#[test]
fn install_puts_exactly_the_listed_files_and_uninstall_removes_them() {
    let dest = temp_dir();
    let destdir = format!("DESTDIR={}", dest.path().display());
    make_ok(&["install", &destdir, "PREFIX=/usr"]);

    let installed = tree(dest.path());
    assert_eq!(
        files(&installed),
        expected_files("/usr", &default_unit_dir())
    );
    let root = dest.path();
    for (installed, source) in [
        ("usr/libexec/libreswan-dbus", DAEMON),
        ("usr/bin/libreswan-dbusctl", CTL),
    ] {
        assert!(
            fs::read(root.join(installed)).unwrap() == fs::read(source).unwrap(),
            "{installed} is not {source}"
        );
    }
    for (installed, source) in [
        (
            "usr/share/dbus-1/system.d/org.libreswan.conf",
            "dbus/org.libreswan.conf",
        ),
        (
            "usr/share/dbus-1/interfaces/org.libreswan.Manager.xml",
            "dbus/org.libreswan.Manager.xml",
        ),
        (
            "usr/share/dbus-1/interfaces/org.libreswan.Connection.xml",
            "dbus/org.libreswan.Connection.xml",
        ),
        (
            "usr/share/polkit-1/actions/org.libreswan.policy",
            "polkit/org.libreswan.policy",
        ),
        (
            "usr/share/doc/libreswan-dbus/examples/50-libreswan-dbus.rules",
            "polkit/examples/50-libreswan-dbus.rules",
        ),
        // With PREFIX=/usr the daemon's path in these is already right.
        (
            "usr/share/dbus-1/system-services/org.libreswan.service",
            "dbus/org.libreswan.service",
        ),
    ] {
        assert_eq!(
            read(root.join(installed)),
            read(repo().join(source)),
            "{installed}"
        );
    }
    assert_eq!(
        gunzip(&root.join("usr/share/man/man8/libreswan-dbus.8.gz")),
        read(repo().join("man/libreswan-dbus.8"))
    );
    assert_eq!(
        gunzip(&root.join("usr/share/man/man1/libreswan-dbusctl.1.gz")),
        read(repo().join("man/libreswan-dbusctl.1"))
    );

    make_ok(&["uninstall", &destdir, "PREFIX=/usr"]);
    let left = tree(dest.path());
    assert_eq!(files(&left), BTreeMap::new(), "uninstall left files");
    assert!(
        !left.contains_key("usr/share/doc/libreswan-dbus"),
        "uninstall left its documentation directory"
    );
}

#[test]
fn prefix_and_unitdir_move_the_files_and_the_daemons_path_inside_them() {
    let dest = temp_dir();
    let args = [
        "install",
        &format!("DESTDIR={}", dest.path().display()),
        "PREFIX=/opt/lsw",
        "UNITDIR=/etc/systemd/system",
    ];
    make_ok(&args);
    assert_eq!(
        files(&tree(dest.path())),
        expected_files("/opt/lsw", "/etc/systemd/system")
    );

    // The two files that start the daemon name it where it now is, and nothing else changed.
    for (installed, source, key) in [
        (
            "etc/systemd/system/libreswan-dbus.service",
            "systemd/libreswan-dbus.service",
            "ExecStart",
        ),
        (
            "opt/lsw/share/dbus-1/system-services/org.libreswan.service",
            "dbus/org.libreswan.service",
            "Exec",
        ),
    ] {
        let installed = read(dest.path().join(installed));
        let source = read(repo().join(source));
        assert_eq!(
            ini_value(&installed, key).as_deref(),
            Some("/opt/lsw/libexec/libreswan-dbus")
        );
        assert_eq!(
            installed,
            source.replace(
                "/usr/libexec/libreswan-dbus",
                "/opt/lsw/libexec/libreswan-dbus"
            )
        );
    }

    let mut uninstall = args;
    uninstall[0] = "uninstall";
    make_ok(&uninstall);
    assert_eq!(files(&tree(dest.path())), BTreeMap::new());
}

#[test]
fn install_without_built_binaries_asks_for_make_first_and_installs_nothing() {
    let dest = temp_dir();
    let output = Command::new("make")
        .arg("--no-print-directory")
        .arg("-C")
        .arg(repo())
        .arg("install")
        .arg(format!("DESTDIR={}", dest.path().display()))
        .arg("BUILD_DIR=/nonexistent")
        .env_remove("MAKEFLAGS")
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(
        text(&output.stderr).contains("run make first"),
        "{}",
        text(&output.stderr)
    );
    assert_eq!(tree(dest.path()), BTreeMap::new());
}

/// The package, built once for every test of this file.
fn deb() -> &'static Path {
    static DEB: OnceLock<PathBuf> = OnceLock::new();
    DEB.get_or_init(|| {
        // One directory per test process, so that runs at the same time keep apart; those of
        // processes that are gone are removed.
        let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
        for entry in fs::read_dir(tmp).unwrap() {
            let entry = entry.unwrap();
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(pid) = name.strip_prefix("install-test-deb-")
                && !Path::new("/proc").join(pid).exists()
            {
                let _ = fs::remove_dir_all(entry.path());
            }
        }
        let out = tmp.join(format!("install-test-deb-{}", std::process::id()));
        fs::create_dir_all(&out).unwrap();
        // gzip: the stripped test binaries are larger than release ones, and xz is slow.
        make_ok(&[
            "package",
            &format!("TARGET_DIR={}", out.display()),
            "DEB_COMPRESSION=gzip",
        ]);
        let arch = text(
            &succeeded(
                "dpkg --print-architecture",
                Command::new("dpkg")
                    .arg("--print-architecture")
                    .output()
                    .unwrap(),
            )
            .stdout,
        );
        let deb = out.join(format!(
            "libreswan-dbus_{}_{}.deb",
            env!("CARGO_PKG_VERSION"),
            arch.trim()
        ));
        assert!(deb.is_file(), "make package wrote no {}", deb.display());
        deb
    })
}

/// `dpkg-deb -c`: every path in the package (`usr/bin/x`, no `./`) with its mode and owner.
fn deb_contents(deb: &Path) -> BTreeMap<String, (String, String)> {
    let output = Command::new("dpkg-deb")
        .arg("-c")
        .arg(deb)
        .output()
        .unwrap();
    text(&succeeded("dpkg-deb -c", output).stdout)
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let path = fields[5].trim_start_matches("./").trim_end_matches('/');
            (!path.is_empty()).then(|| {
                (
                    path.to_owned(),
                    (fields[0].to_owned(), fields[1].to_owned()),
                )
            })
        })
        .collect()
}

#[test]
fn the_package_holds_exactly_the_install_tree() {
    let dest = temp_dir();
    make_ok(&[
        "install",
        &format!("DESTDIR={}", dest.path().display()),
        "PREFIX=/usr",
    ]);
    let installed = tree(dest.path());
    let packaged = deb_contents(deb());

    assert_eq!(
        packaged.keys().collect::<BTreeSet<_>>(),
        installed.keys().collect::<BTreeSet<_>>()
    );
    for (path, (mode, owner)) in &packaged {
        assert_eq!(owner, "root/root", "{path}");
        let expected = match &installed[path] {
            Entry::Dir => "drwxr-xr-x",
            Entry::File(0o755) => "-rwxr-xr-x",
            Entry::File(0o644) => "-rw-r--r--",
            other => panic!("{path}: unexpected {other:?}"),
        };
        assert_eq!(mode, expected, "{path}");
    }

    let field = |name: &str| {
        let output = Command::new("dpkg-deb")
            .arg("-f")
            .arg(deb())
            .arg(name)
            .output()
            .unwrap();
        text(&succeeded("dpkg-deb -f", output).stdout)
            .trim()
            .to_owned()
    };
    assert_eq!(field("Package"), "libreswan-dbus");
    assert_eq!(field("Version"), env!("CARGO_PKG_VERSION"));
    let depends: Vec<String> = field("Depends")
        .split(',')
        .map(|d| d.trim().to_owned())
        .collect();
    assert_eq!(depends[..2], ["dbus", "polkitd"]);
    assert!(depends[2].starts_with("libc6 (>= 2."), "{depends:?}");
    assert_eq!(field("Recommends"), "libreswan");

    let control = temp_dir();
    succeeded(
        "dpkg-deb -e",
        Command::new("dpkg-deb")
            .arg("-e")
            .arg(deb())
            .arg(control.path().join("DEBIAN"))
            .output()
            .unwrap(),
    );
    for script in ["postinst", "prerm", "postrm"] {
        let path = control.path().join("DEBIAN").join(script);
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o755,
            "{script}"
        );
        assert_eq!(
            read(&path),
            read(repo().join("packaging/debian").join(script))
        );
    }
}

/// Copies `program` and the shared libraries it loads into `root`, at the same paths.
fn copy_with_libraries(root: &Path, program: &str) {
    let output = Command::new("ldd").arg(program).output().unwrap();
    let ldd = text(&succeeded("ldd", output).stdout);
    let libraries = ldd
        .split_whitespace()
        .filter(|word| word.starts_with('/'))
        .map(str::to_owned);
    for file in std::iter::once(program.to_owned()).chain(libraries) {
        let target = root.join(file.trim_start_matches('/'));
        fs::create_dir_all(target.parent().unwrap()).unwrap();
        fs::copy(&file, &target).unwrap_or_else(|err| panic!("cannot copy {file}: {err}"));
    }
}

/// A root with just a shell, rm (both Essential in Debian), dbus-send and /dev/null: the
/// maintainer scripts run there as in a chroot or an image build, with neither systemd nor a
/// bus.
fn throwaway_root() -> TempDir {
    let root = temp_dir();
    let r = root.path();
    copy_with_libraries(r, "/bin/dash");
    fs::copy(r.join("bin/dash"), r.join("bin/sh")).unwrap();
    for program in ["rm", "dbus-send"] {
        copy_with_libraries(r, &which(program));
    }
    fs::create_dir_all(r.join("dev")).unwrap();
    succeeded(
        "mknod",
        Command::new("mknod")
            .arg(r.join("dev/null"))
            .args(["c", "1", "3"])
            .output()
            .unwrap(),
    );
    fs::set_permissions(r.join("dev/null"), fs::Permissions::from_mode(0o666)).unwrap();
    for dir in [
        "var/lib/dpkg/info",
        "var/lib/dpkg/updates",
        "etc/systemd/system",
    ] {
        fs::create_dir_all(r.join(dir)).unwrap();
    }
    fs::write(r.join("var/lib/dpkg/status"), "").unwrap();
    root
}

fn which(program: &str) -> String {
    let output = Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .unwrap();
    text(&succeeded(program, output).stdout).trim().to_owned()
}

/// dpkg on the throwaway root only: its database is `ROOT/var/lib/dpkg`; no log is kept.
fn dpkg(root: &Path, args: &[&str]) -> Output {
    Command::new("dpkg")
        .arg(format!("--root={}", root.display()))
        .arg("--log=/dev/null")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("cannot run dpkg")
}

/// The tree without dpkg's own database, which records what happened.
fn outside_dpkg_database(tree: BTreeMap<String, Entry>) -> BTreeMap<String, Entry> {
    tree.into_iter()
        .filter(|(path, _)| !path.starts_with("var/lib/dpkg/"))
        .collect()
}

#[test]
fn installing_then_purging_the_package_in_a_throwaway_root_leaves_nothing() {
    support::require_root();
    let root = throwaway_root();
    let r = root.path();
    let before = outside_dpkg_database(tree(r));

    // Dependencies are not in this root's database; every path is wanted, whatever the
    // host's dpkg.cfg.d excludes.
    let deb = deb().to_string_lossy().into_owned();
    let output = dpkg(
        r,
        &["--force-depends", "--path-include=*", "--install", &deb],
    );
    let log = text(&output.stderr);
    succeeded("dpkg --install", output);
    assert!(
        !log.contains("postinst"),
        "postinst complained without a bus:\n{log}"
    );

    let installed = files(&tree(r));
    for (path, mode) in expected_files("/usr", &default_unit_dir()) {
        assert_eq!(installed.get(&path), Some(&mode), "{path}");
    }
    assert!(read(r.join("var/lib/dpkg/status")).contains("Status: install ok installed"));

    // An administrator enabled the service; purging must not leave the link dangling.
    let wants = r.join("etc/systemd/system/multi-user.target.wants");
    fs::create_dir_all(&wants).unwrap();
    symlink(
        "/lib/systemd/system/libreswan-dbus.service",
        wants.join("libreswan-dbus.service"),
    )
    .unwrap();

    let output = dpkg(r, &["--purge", "libreswan-dbus"]);
    succeeded("dpkg --purge", output);
    // Removing the link left the directory systemctl enable had made.
    fs::remove_dir(&wants).unwrap();

    assert_eq!(outside_dpkg_database(tree(r)), before);
    assert!(!read(r.join("var/lib/dpkg/status")).contains("libreswan-dbus"));
    let records: Vec<String> = fs::read_dir(r.join("var/lib/dpkg/info"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("libreswan-dbus"))
        .collect();
    assert!(records.is_empty(), "dpkg kept {records:?}");
}

/// Runs a maintainer script of packaging/debian on this host with the system bus at
/// `bus_address`. Where systemd runs, /run/systemd is hidden in a mount namespace of the
/// script's own, so the host's systemd is never reloaded.
fn maintainer_script(script: &str, args: &[&str], bus_address: &str) -> (Output, Duration) {
    let path = repo().join("packaging/debian").join(script);
    let mut command = if Path::new("/run/systemd/system").exists() {
        let mut command = Command::new("unshare");
        command
            .args(["--mount", "--propagation", "private", "--", "sh", "-c"])
            .arg("mount -t tmpfs tmpfs /run/systemd && exec \"$@\"")
            .arg("sh");
        command
    } else {
        Command::new("env")
    };
    command
        .arg(&path)
        .args(args)
        .env("DBUS_SYSTEM_BUS_ADDRESS", bus_address)
        .stdin(Stdio::null());
    let started = Instant::now();
    let output = command.output().expect("cannot run a maintainer script");
    (output, started.elapsed())
}

fn reloads(bus: &TestBus) -> usize {
    bus.dbus_daemon_log()
        .matches("Reloaded configuration")
        .count()
}

#[test]
fn maintainer_scripts_reload_the_bus_and_need_none_and_leave_pluto_alone() {
    support::require_root();
    let bus = TestBus::start();

    for (script, args) in [
        ("postinst", &["configure", ""][..]),
        ("postrm", &["remove"][..]),
    ] {
        let before = reloads(&bus);
        let (output, _) = maintainer_script(script, args, bus.address());
        succeeded(script, output);
        let reloaded = support::wait_until(support::TIMEOUT, || reloads(&bus) > before);
        assert!(
            reloaded,
            "{script} did not reload the bus:\n{}",
            bus.dbus_daemon_log()
        );
    }

    // No bus, as in a chroot: every script succeeds at once, silently.
    for (script, args) in [
        ("postinst", &["configure", ""][..]),
        ("postinst", &["configure", "0.0.1"][..]),
        ("prerm", &["remove"][..]),
        ("prerm", &["upgrade", "0.2.0"][..]),
        ("postrm", &["remove"][..]),
        ("postrm", &["purge"][..]),
    ] {
        let (output, took) = maintainer_script(script, args, "unix:path=/nonexistent/bus");
        let output = succeeded(&format!("{script} {args:?}"), output);
        assert_eq!(text(&output.stderr), "", "{script} {args:?}");
        assert!(took < Duration::from_secs(5), "{script} took {took:?}");
    }

    // The scripts concern the bus and this service only.
    for script in ["postinst", "prerm", "postrm"] {
        let code: String = read(repo().join("packaging/debian").join(script))
            .lines()
            .filter(|line| !line.trim_start().starts_with('#'))
            .collect::<Vec<_>>()
            .join("\n");
        for word in ["ipsec", "pluto", "whack", "strongswan"] {
            assert!(!code.contains(word), "{script} mentions {word}");
        }
    }
}

#[test]
fn bus_name_unit_activation_file_and_daemon_path_agree_everywhere() {
    let activation = read(repo().join("dbus/org.libreswan.service"));
    let unit = read(repo().join("systemd/libreswan-dbus.service"));
    let policy = read(repo().join("dbus/org.libreswan.conf"));

    // One bus name: the service's, the client's, the activation file's, the unit's and the
    // one the bus policy lets root own.
    let name = ini_value(&activation, "Name").expect("Name= in the activation file");
    assert_eq!(name, libreswan_dbus::bus::BUS_NAME);
    assert_eq!(name, client::SERVICE);
    assert_eq!(ini_value(&unit, "BusName").as_deref(), Some(name.as_str()));
    assert_eq!(ini_value(&unit, "Type").as_deref(), Some("dbus"));
    let root_policy = policy
        .split("<policy ")
        .find(|block| block.starts_with("user=\"root\""))
        .expect("a policy for root");
    assert!(
        root_policy.contains(&format!("<allow own=\"{name}\"/>")),
        "{root_policy}"
    );
    assert_eq!(
        policy.matches("<allow own=").count(),
        1,
        "only root may own the name"
    );
    assert_eq!(ini_value(&activation, "User").as_deref(), Some("root"));

    // Installed anywhere, the activation file is named after the bus name, names the unit
    // that is installed, and both start the daemon that is installed.
    let dest = temp_dir();
    make_ok(&[
        "install",
        &format!("DESTDIR={}", dest.path().display()),
        "PREFIX=/opt/lsw",
        "UNITDIR=/opt/lsw/units",
    ]);
    let d = dest.path();
    let activation = read(d.join(format!(
        "opt/lsw/share/dbus-1/system-services/{name}.service"
    )));
    let unit_name = ini_value(&activation, "SystemdService").expect("SystemdService=");
    let unit = read(d.join("opt/lsw/units").join(&unit_name));
    let exec = ini_value(&activation, "Exec").unwrap();
    assert_eq!(ini_value(&unit, "ExecStart"), Some(exec.clone()));
    let daemon = d.join(exec.trim_start_matches('/'));
    let version = Command::new(&daemon).arg("--version").output().unwrap();
    assert_eq!(
        text(&succeeded("the installed daemon", version).stdout).trim(),
        format!("libreswan-dbus {}", env!("CARGO_PKG_VERSION"))
    );

    // The unit's documentation is the page that is installed.
    assert_eq!(
        ini_value(&unit, "Documentation").as_deref(),
        Some("man:libreswan-dbus(8)")
    );
    assert!(
        d.join("opt/lsw/share/man/man8/libreswan-dbus.8.gz")
            .is_file()
    );

    // The polkit actions are those the verbs are checked against.
    let actions: BTreeSet<String> = read(repo().join("polkit/org.libreswan.policy"))
        .split("<action id=\"")
        .skip(1)
        .map(|rest| rest.split('"').next().unwrap().to_owned())
        .collect();
    let checked: BTreeSet<String> = Verb::ALL
        .iter()
        .map(|verb| verb.action().to_owned())
        .collect();
    assert_eq!(actions, checked);
}

#[test]
fn systemd_analyze_verifies_the_installed_unit() {
    // Installed for real (no DESTDIR) into a directory of its own, so that the unit's
    // ExecStart and its man page exist where it says they are.
    let prefix = temp_dir();
    let usr = prefix.path().join("usr");
    let units = prefix.path().join("units");
    make_ok(&[
        "install",
        &format!("PREFIX={}", usr.display()),
        &format!("UNITDIR={}", units.display()),
    ]);
    let unit = units.join("libreswan-dbus.service");
    let verify = || {
        Command::new("systemd-analyze")
            .arg("verify")
            .arg(&unit)
            .env("MANPATH", usr.join("share/man"))
            .current_dir(prefix.path())
            .output()
            .expect("cannot run systemd-analyze (apt-get install systemd)")
    };

    let output = verify();
    let output = succeeded("systemd-analyze verify", output);
    assert_eq!(text(&output.stderr), "", "systemd-analyze warned");

    // The check is real: without the binary the same unit fails.
    fs::remove_file(usr.join("libexec/libreswan-dbus")).unwrap();
    let output = verify();
    assert!(!output.status.success());
    assert!(
        text(&output.stderr).contains("is not executable"),
        "{}",
        text(&output.stderr)
    );
}
