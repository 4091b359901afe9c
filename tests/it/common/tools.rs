//! The outside programs some tests drive, and what happens when one is missing.
//!
//! A missing tool fails the test with the package to install. A developer without them may opt
//! in to skipping with `RM_SKIP_MISSING_TOOLS=1`; the skipped tests are then counted and named
//! in one line when the test binary exits. Under CI (`CI` set to anything but `false` or `0`)
//! the opt-in is ignored: a missing install step must show.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Mutex;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tool {
    Nginx,
    RtmpModule,
    Ffmpeg,
    Ffprobe,
    Chromium,
    Chromedriver,
    Aiosmtpd,
    Openssl,
}

impl Tool {
    /// What to install to get it.
    fn package(self) -> &'static str {
        match self {
            Tool::Nginx => "Debian package `nginx`",
            Tool::RtmpModule => "Debian package `libnginx-mod-rtmp`",
            Tool::Ffmpeg | Tool::Ffprobe => "Debian package `ffmpeg`",
            Tool::Chromium => "Debian package `chromium`",
            Tool::Chromedriver => "Debian package `chromium-driver`",
            Tool::Aiosmtpd => "PyPI package `aiosmtpd` (pip install aiosmtpd)",
            Tool::Openssl => "Debian package `openssl`",
        }
    }

    fn is_present(self) -> bool {
        match self {
            Tool::Nginx => Path::new("/usr/sbin/nginx").exists(),
            Tool::RtmpModule => Path::new("/usr/lib/nginx/modules/ngx_rtmp_module.so").exists(),
            Tool::Ffmpeg => runs("ffmpeg", &["-version"]),
            Tool::Ffprobe => runs("ffprobe", &["-version"]),
            Tool::Chromium => Path::new(super::webdriver::CHROMIUM).exists(),
            Tool::Chromedriver => Path::new(super::webdriver::CHROMEDRIVER).exists(),
            Tool::Aiosmtpd => runs("python3", &["-c", "import aiosmtpd"]),
            Tool::Openssl => runs("openssl", &["version"]),
        }
    }
}

fn runs(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Whether this run is CI's: `CI` set to anything but empty, `false` or `0`.
pub fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !matches!(v.trim(), "" | "false" | "0"))
}

fn skipping_allowed() -> bool {
    !under_ci() && std::env::var("RM_SKIP_MISSING_TOOLS").is_ok_and(|v| v == "1")
}

/// Tests skipped for a missing tool, reported when the test binary exits.
static SKIPPED: Mutex<Vec<String>> = Mutex::new(Vec::new());

extern "C" fn report_skipped() {
    let skipped = SKIPPED.lock().map(|s| s.clone()).unwrap_or_default();
    eprintln!(
        "missing tools (RM_SKIP_MISSING_TOOLS=1): {} tests skipped{}{}",
        skipped.len(),
        if skipped.is_empty() { "" } else { ": " },
        skipped.join(", ")
    );
}

/// Whether every one of `tools` is here. A missing one fails the calling test with the package
/// to install, unless skipping was opted in; then the test is counted as skipped and should
/// return at once.
pub fn require(tools: &[Tool]) -> bool {
    let missing: Vec<Tool> = tools.iter().copied().filter(|t| !t.is_present()).collect();
    if missing.is_empty() {
        return true;
    }
    let needs: Vec<String> = missing
        .iter()
        .map(|t| format!("{t:?} ({})", t.package()))
        .collect();
    let message = format!(
        "this test needs {}; .ci/run installs them. To skip such tests instead, set \
         RM_SKIP_MISSING_TOOLS=1 (ignored under CI)",
        needs.join(", ")
    );
    assert!(skipping_allowed(), "{message}");
    let test = std::thread::current().name().unwrap_or("a test").to_owned();
    eprintln!("skipping {test}: {message}");
    let mut skipped = SKIPPED.lock().expect("the skip list is never poisoned");
    if skipped.is_empty() {
        // SAFETY: `report_skipped` is a plain function that lives as long as the process.
        unsafe {
            libc::atexit(report_skipped);
        }
    }
    skipped.push(test);
    false
}
