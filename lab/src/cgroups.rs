//! Cgroups a lab leaves behind: the directories named after a node or a containerd's cgroup
//! parent, in every hierarchy of a v1+v2 hybrid host, their processes, and their removal. (The
//! cgroup2 mount itself is found by `bpfk_datapath::sys::cgroup2_mount`, the datapath's own.)

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The mount points of every cgroup hierarchy (v1 controllers and the v2 one).
fn cgroup_mounts() -> Vec<PathBuf> {
    fs::read_to_string("/proc/self/mounts")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (_, mnt, fstype) = (f.next()?, f.next()?, f.next()?);
            (fstype == "cgroup" || fstype == "cgroup2").then(|| PathBuf::from(mnt))
        })
        .collect()
}

/// Every cgroup directory under `parent` in every hierarchy, deepest first.
fn cgroup_dirs(parent: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for mount in cgroup_mounts() {
        let top = mount.join(parent.trim_start_matches('/'));
        collect_dirs(&top, &mut out);
    }
    out.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    out
}

fn collect_dirs(dir: &Path, out: &mut Vec<PathBuf>) {
    if !dir.is_dir() {
        return;
    }
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                collect_dirs(&e.path(), out);
            }
        }
    }
    out.push(dir.to_path_buf());
}

/// The processes in `parent` and below, in every hierarchy.
pub fn cgroup_processes(parent: &str) -> Vec<u32> {
    let mut pids = Vec::new();
    for dir in cgroup_dirs(parent) {
        for p in fs::read_to_string(dir.join("cgroup.procs"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
        {
            if !pids.contains(&p) {
                pids.push(p);
            }
        }
    }
    pids
}

/// Removes `parent` and the cgroups below it, in every hierarchy (empty ones only).
pub fn remove_cgroups(parent: &str) {
    for dir in cgroup_dirs(parent) {
        let _ = fs::remove_dir(&dir);
    }
}

/// Kills the processes in `parent` and below (every hierarchy) and removes those cgroups,
/// waiting up to 5 s for the kernel to let go of them.
pub fn kill_and_remove(parent: &str) {
    for pid in cgroup_processes(parent) {
        if let Ok(pid) = i32::try_from(pid) {
            // SAFETY: kill(2) of a process found in a lab's own cgroup.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
    }
    for dir in cgroup_dirs(parent) {
        remove_dir_waiting(&dir);
    }
}

/// Removes the (empty) directory `dir`, waiting up to 5 s for the kernel to let go of a cgroup
/// whose last processes just died.
pub fn remove_dir_waiting(dir: &Path) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while dir.exists() && fs::remove_dir(dir).is_err() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
}
