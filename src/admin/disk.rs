//! Disk figures for the dashboard: what a folder holds, and the free space of its file system.
//! Blocking (a walk of the folder): call it off the async threads.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// The file system that holds a folder.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Space {
    /// Bytes an unprivileged program may still write.
    pub free_bytes: u64,
    pub total_bytes: u64,
}

/// The bytes of every file under `dir` (following no symbolic link); 0 for a missing folder.
/// Files that vanish during the walk (a recording being finished) are skipped.
pub fn folder_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .map(|entry| match entry.file_type() {
            Ok(kind) if kind.is_dir() => folder_bytes(&entry.path()),
            Ok(kind) if kind.is_file() => entry.metadata().map_or(0, |m| m.len()),
            _ => 0,
        })
        .sum()
}

/// The free and total space of the file system holding `path` (`statvfs`).
// statvfs's counts are u64 on 64-bit Linux, narrower elsewhere.
#[allow(clippy::useless_conversion)]
pub fn space(path: &Path) -> std::io::Result<Space> {
    let name = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::other("the data dir's path holds a NUL byte"))?;
    // SAFETY: `name` is a valid NUL-terminated string and `stat` a buffer statvfs fills in; it
    // is read only after statvfs reported success.
    let stat = unsafe {
        let mut stat = std::mem::zeroed::<libc::statvfs>();
        if libc::statvfs(name.as_ptr(), &mut stat) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        stat
    };
    let block = u64::from(stat.f_frsize);
    Ok(Space {
        free_bytes: u64::from(stat.f_bavail).saturating_mul(block),
        total_bytes: u64::from(stat.f_blocks).saturating_mul(block),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_counts_its_files_at_every_depth() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), [0u8; 100]).unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub").join("b"), [0u8; 23]).unwrap();
        assert_eq!(folder_bytes(dir.path()), 123);
        assert_eq!(folder_bytes(&dir.path().join("missing")), 0);
        let space = space(dir.path()).unwrap();
        assert!(space.total_bytes >= space.free_bytes && space.total_bytes > 0);
    }
}
