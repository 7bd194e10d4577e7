//! Small kernel-facing helpers: bpffs, cgroup2 discovery, interface indexes.

use std::{
    ffi::CString,
    fs,
    path::{Path, PathBuf},
};

use crate::{Error, Result};

const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

fn fs_magic(path: &Path) -> Option<i64> {
    let c = CString::new(path.as_os_str().as_encoded_bytes()).ok()?;
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: valid NUL-terminated path and out pointer.
    let rc = unsafe { libc::statfs(c.as_ptr(), &mut st) };
    (rc == 0).then_some(st.f_type as i64)
}

/// Makes sure `/sys/fs/bpf` is a bpffs (mounting one when it is not) when
/// `pin_root` lives below it, then creates `pin_root`.
pub fn ensure_bpffs(pin_root: &Path) -> Result<()> {
    let bpffs = Path::new("/sys/fs/bpf");
    if pin_root.starts_with(bpffs) && fs_magic(bpffs) != Some(BPF_FS_MAGIC) {
        fs::create_dir_all(bpffs).map_err(|e| Error::io("creating", bpffs, e))?;
        let src = CString::new("bpffs").unwrap_or_default();
        let target = CString::new("/sys/fs/bpf").unwrap_or_default();
        let fstype = CString::new("bpf").unwrap_or_default();
        // SAFETY: valid NUL-terminated strings, no data argument.
        let rc = unsafe {
            libc::mount(
                src.as_ptr(),
                target.as_ptr(),
                fstype.as_ptr(),
                0,
                std::ptr::null(),
            )
        };
        if rc != 0 {
            return Err(Error::io(
                "mounting bpffs on",
                bpffs,
                std::io::Error::last_os_error(),
            ));
        }
        tracing::info!("mounted bpffs on /sys/fs/bpf");
    }
    fs::create_dir_all(pin_root).map_err(|e| Error::io("creating pin directory", pin_root, e))?;
    Ok(())
}

/// Finds the cgroup v2 mount point in `/proc/self/mountinfo`.
pub fn cgroup2_mount() -> Result<PathBuf> {
    let info = fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| Error::io("reading", "/proc/self/mountinfo", e))?;
    parse_cgroup2_mount(&info).ok_or(Error::NoCgroup2)
}

pub(crate) fn parse_cgroup2_mount(mountinfo: &str) -> Option<PathBuf> {
    mountinfo.lines().find_map(|line| {
        // "<id> <parent> <maj:min> <root> <mount point> <opts> [optional...] - <fstype> <src> <opts>"
        let (left, right) = line.split_once(" - ")?;
        let fstype = right.split_whitespace().next()?;
        if fstype != "cgroup2" {
            return None;
        }
        let mount_point = left.split_whitespace().nth(4)?;
        Some(PathBuf::from(unescape_mount(mount_point)))
    })
}

fn unescape_mount(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

/// The index of a network interface in the current network namespace.
pub fn ifindex(name: &str) -> Result<u32> {
    let c = CString::new(name).map_err(|_| Error::Interface {
        name: name.to_string(),
        reason: "name contains NUL".into(),
    })?;
    // SAFETY: valid NUL-terminated string.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if idx == 0 {
        return Err(Error::Interface {
            name: name.to_string(),
            reason: std::io::Error::last_os_error().to_string(),
        });
    }
    Ok(idx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_cgroup2_in_hybrid_layout() {
        let info = "\
25 30 0:23 / /sys/fs/cgroup ro,nosuid shared:9 - tmpfs tmpfs ro,mode=755
26 25 0:24 / /sys/fs/cgroup/unified rw,nosuid shared:10 - cgroup2 cgroup2 rw
27 25 0:25 / /sys/fs/cgroup/cpu rw shared:11 - cgroup cgroup rw,cpu
";
        assert_eq!(
            parse_cgroup2_mount(info),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        assert_eq!(
            parse_cgroup2_mount("1 2 0:1 / / rw - ext4 /dev/sda rw"),
            None
        );
    }
}
