//! Golden-bytes checks of versioned formats. **Not a stable API**: hidden from the
//! documentation, shared by the format tests of this workspace's crates.
//!
//! A format test builds fixed values, encodes them, and hands the encoded sections to
//! [`Golden::check`], which compares them with the checked-in file
//! `<dir>/<stem>-v<version>.hex` of the format's *current* version. The test then decodes
//! the sections [`Golden::check`] returns (read from the file) and compares them with the
//! values. So:
//!
//! - an encoding that changes while the version constant stays put fails the test, naming
//!   the constant to bump and the command that regenerates the file;
//! - once the constant is bumped, the test fails until the new version's file is generated
//!   (the files of older versions stay, as a record of what each version wrote);
//! - regenerating (`UPDATE_GOLDEN=1`) writes only a file that does not exist yet: it refuses
//!   to overwrite the bytes of a version that is still current.
//!
//! The file is text: `#` comments, a `version: N` line, then sections, each a `[name]`
//! line followed by the section's bytes in lowercase hex, 32 bytes a line.

use std::fmt::Write as _;
use std::path::PathBuf;

/// The environment variable that lets [`Golden::check`] write a missing golden file.
pub const UPDATE_ENV: &str = "UPDATE_GOLDEN";

/// Bytes a line in a golden file.
const LINE_BYTES: usize = 32;

/// One named piece of an encoding.
pub type Section = (String, Vec<u8>);

/// A versioned format whose encoding is pinned by a golden file.
#[derive(Debug, Clone)]
pub struct Golden {
    /// What the file pins, for messages ("the log directory (segments and snapshot files)").
    pub format: &'static str,
    /// The version constant and where it is declared ("FORMAT_VERSION in src/format.rs").
    pub constant: &'static str,
    /// The constant's current value.
    pub version: u32,
    /// The directory holding the golden files.
    pub dir: PathBuf,
    /// The files' name before `-v<version>.hex`.
    pub stem: &'static str,
    /// The command that regenerates the file.
    pub regenerate: &'static str,
}

impl Golden {
    /// The golden file of the current version.
    pub fn path(&self) -> PathBuf {
        self.dir.join(format!("{}-v{}.hex", self.stem, self.version))
    }

    /// Compares `encoded` with the golden file of the current version and returns the
    /// file's sections, for the caller to decode. Panics with what to do when they differ
    /// or the file is missing; writes the file instead when it is missing and
    /// [`UPDATE_ENV`] is set.
    pub fn check(&self, encoded: &[Section]) -> Vec<Section> {
        let update = std::env::var_os(UPDATE_ENV).is_some_and(|v| !v.is_empty() && v != "0");
        self.check_with(encoded, update)
    }

    /// The sections of this version's golden file, as checked in: for a format that still
    /// reads the files of an older version, construct the older version's `Golden` and
    /// decode these. Panics if the file is missing or malformed.
    pub fn read(&self) -> Vec<Section> {
        let path = self.path();
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        self.parse(&text)
    }

    /// [`Golden::check`], told whether it may write a missing file.
    fn check_with(&self, encoded: &[Section], update: bool) -> Vec<Section> {
        let path = self.path();
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if !update {
                    panic!(
                        "no golden bytes for version {} of {} ({} is missing). If {} was just \
                         bumped, generate them with `{}`",
                        self.version,
                        self.format,
                        path.display(),
                        self.constant,
                        self.regenerate
                    );
                }
                std::fs::create_dir_all(&self.dir)
                    .unwrap_or_else(|e| panic!("cannot create {}: {e}", self.dir.display()));
                std::fs::write(&path, self.render(encoded))
                    .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
                eprintln!("wrote {}", path.display());
                return encoded.to_vec();
            }
            Err(e) => panic!("cannot read {}: {e}", path.display()),
        };
        let golden = self.parse(&text);
        if let Some(difference) = difference(&golden, encoded) {
            if update {
                panic!(
                    "refusing to overwrite {}: {} changed ({difference}) but {} is still {}. \
                     Bump it first; the new version gets a file of its own",
                    path.display(),
                    self.format,
                    self.constant,
                    self.version
                );
            }
            panic!(
                "the encoding of {} changed ({difference}) but {} is still {}: bump {} and \
                 regenerate the golden bytes with `{}`",
                self.format, self.constant, self.version, self.constant, self.regenerate
            );
        }
        golden
    }

    /// The text of a golden file holding `sections`.
    fn render(&self, sections: &[Section]) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# Golden bytes of {}, version {} ({}).",
            self.format, self.version, self.constant
        );
        let _ = writeln!(out, "# Written by `{}`; never edit by hand.", self.regenerate);
        let _ = writeln!(out, "version: {}", self.version);
        for (name, bytes) in sections {
            assert!(
                !name.contains(['[', ']', '\n']),
                "section name {name:?} cannot be written"
            );
            let _ = writeln!(out, "[{name}]");
            for line in bytes.chunks(LINE_BYTES) {
                for b in line {
                    let _ = write!(out, "{b:02x}");
                }
                out.push('\n');
            }
        }
        out
    }

    /// Parses a golden file, panicking on anything malformed (the files are checked in).
    fn parse(&self, text: &str) -> Vec<Section> {
        let path = self.path();
        let bad = |line: usize, what: &str| -> ! { panic!("{}:{line}: {what}", path.display()) };
        let mut version = None;
        let mut sections: Vec<Section> = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let n = i + 1;
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if let Some(v) = line.strip_prefix("version:") {
                let v: u32 = v.trim().parse().unwrap_or_else(|_| bad(n, "unreadable version"));
                if version.replace(v).is_some() {
                    bad(n, "a second version line");
                }
                if v != self.version {
                    bad(
                        n,
                        &format!("says version {v}, but the file name says {}", self.version),
                    );
                }
            } else if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                if version.is_none() {
                    bad(n, "a section before the version line");
                }
                sections.push((name.to_string(), Vec::new()));
            } else {
                let Some((_, bytes)) = sections.last_mut() else {
                    bad(n, "bytes outside a section")
                };
                if line.len() % 2 != 0 {
                    bad(n, "an odd number of hex digits");
                }
                for pair in line.as_bytes().chunks(2) {
                    let pair = std::str::from_utf8(pair).unwrap_or_else(|_| bad(n, "not hex"));
                    bytes.push(u8::from_str_radix(pair, 16).unwrap_or_else(|_| bad(n, "not hex")));
                }
            }
        }
        if version.is_none() {
            bad(0, "no version line");
        }
        sections
    }
}

/// Where `now` first differs from `golden`, in words; `None` if they are the same.
fn difference(golden: &[Section], now: &[Section]) -> Option<String> {
    for (i, ((g_name, g), (name, n))) in golden.iter().zip(now).enumerate() {
        if g_name != name {
            return Some(format!("section {i} is [{name}], the golden file has [{g_name}]"));
        }
        if g != n {
            let at = g
                .iter()
                .zip(n)
                .position(|(a, b)| a != b)
                .unwrap_or(g.len().min(n.len()));
            return Some(format!(
                "section [{name}] differs from byte {at}: {} bytes, the golden file has {}",
                n.len(),
                g.len()
            ));
        }
    }
    match golden.len().cmp(&now.len()) {
        std::cmp::Ordering::Equal => None,
        std::cmp::Ordering::Less => Some(format!(
            "new section [{}] not in the golden file",
            now[golden.len()].0
        )),
        std::cmp::Ordering::Greater => Some(format!(
            "section [{}] of the golden file is gone",
            golden[now.len()].0
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn golden(dir: &std::path::Path) -> Golden {
        Golden {
            format: "a test format",
            constant: "TEST_VERSION",
            version: 3,
            dir: dir.to_path_buf(),
            stem: "test",
            regenerate: "UPDATE_GOLDEN=1 cargo test",
        }
    }

    fn sections() -> Vec<Section> {
        vec![
            ("first".into(), (0..=70).collect()),
            ("second".into(), vec![]),
            ("third".into(), vec![0xff]),
        ]
    }

    fn panic_message(f: impl FnOnce() + std::panic::UnwindSafe) -> String {
        let err = std::panic::catch_unwind(f).expect_err("it panics");
        err.downcast_ref::<String>().cloned().unwrap_or_default()
    }

    #[test]
    fn render_and_parse_round_trip() {
        let dir = std::env::temp_dir().join(format!("golden-{}", std::process::id()));
        let g = golden(&dir);
        let text = g.render(&sections());
        assert!(text.contains("\nversion: 3\n[first]\n"), "{text}");
        assert_eq!(g.parse(&text), sections());
        assert_eq!(difference(&sections(), &sections()), None);
    }

    #[test]
    fn differences_are_named() {
        let mut changed = sections();
        changed[0].1[5] = 0;
        let what = difference(&sections(), &changed).unwrap();
        assert!(what.contains("[first] differs from byte 5"), "{what}");
        let mut longer = sections();
        longer[2].1.push(1);
        let what = difference(&sections(), &longer).unwrap();
        assert!(what.contains("[third] differs from byte 1: 2 bytes"), "{what}");
        let mut more = sections();
        more.push(("fourth".into(), vec![]));
        assert!(difference(&sections(), &more).unwrap().contains("[fourth]"));
        assert!(difference(&more, &sections()).unwrap().contains("gone"));
    }

    #[test]
    fn a_changed_encoding_with_the_same_version_fails() {
        let dir = std::env::temp_dir().join(format!("golden-check-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let g = golden(&dir);
        std::fs::write(g.path(), g.render(&sections())).unwrap();
        assert_eq!(g.check_with(&sections(), false), sections());
        let mut changed = sections();
        changed[1].1.push(7);
        let g2 = g.clone();
        let message = panic_message(move || {
            g2.check_with(&changed, false);
        });
        assert!(
            message.contains("bump TEST_VERSION") && message.contains("UPDATE_GOLDEN=1 cargo test"),
            "{message}"
        );
        let mut bumped = g.clone();
        bumped.version = 4;
        let b = bumped.clone();
        let message = panic_message(move || {
            b.check_with(&sections(), false);
        });
        assert!(message.contains("no golden bytes for version 4"), "{message}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn regenerating_writes_a_new_version_and_never_overwrites() {
        let dir = std::env::temp_dir().join(format!("golden-update-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let g = golden(&dir);
        assert_eq!(g.check_with(&sections(), true), sections());
        assert_eq!(g.parse(&std::fs::read_to_string(g.path()).unwrap()), sections());
        // Unchanged: nothing to do, with or without the variable.
        assert_eq!(g.check_with(&sections(), true), sections());
        let mut changed = sections();
        changed[0].1.pop();
        let g2 = g.clone();
        let message = panic_message(move || {
            g2.check_with(&changed, true);
        });
        assert!(message.contains("refusing to overwrite"), "{message}");
        assert_eq!(g.parse(&std::fs::read_to_string(g.path()).unwrap()), sections());
        let _ = std::fs::remove_dir_all(&dir);
    }
}

pub mod samples;
