//! Atomic updates of a volume directory, as Kubernetes' AtomicWriter does them: the files
//! live in a timestamped directory `..<time>.<n>`, the symlink `..data` points at it, and
//! every user-visible top-level name is a symlink `name -> ..data/name`. An update writes a
//! new timestamped directory, points a fresh `..data_tmp` symlink at it and renames that over
//! `..data` (rename(2) is atomic), so a reader sees either all old or all new files, never a
//! mix. Then the stale user-visible links and the old directory are removed.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// The symlink to the current data directory.
pub const DATA_DIR: &str = "..data";
const DATA_DIR_TMP: &str = "..data_tmp";

/// One file of a volume's payload: its bytes and permission bits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileProjection {
    pub data: Vec<u8>,
    pub mode: u32,
}

/// The files of a volume by relative path (`key`, `dir/key`).
pub type Payload = BTreeMap<String, FileProjection>;

/// Why a payload could not be written.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("invalid path {path:?}: {reason}")]
    Path { path: String, reason: &'static str },
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
}

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> WriteError + 'a {
    move |source| WriteError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// A payload path must be relative, without `..` components, and must not start with `..`
/// (those names are the writer's own).
pub fn validate_path(path: &str) -> Result<(), WriteError> {
    let bad = |reason| {
        Err(WriteError::Path {
            path: path.into(),
            reason,
        })
    };
    if path.is_empty() {
        return bad("must not be empty");
    }
    if path.starts_with("..") {
        return bad("must not start with '..'");
    }
    let p = Path::new(path);
    if p.is_absolute() {
        return bad("must be relative");
    }
    let odd = |c: &str| c.is_empty() || c == "." || c == "..";
    if path.split('/').any(odd) || p.components().any(|c| !matches!(c, Component::Normal(_))) {
        return bad("must not contain '..', '.' or empty components");
    }
    Ok(())
}

/// The first component of each payload path: the user-visible names.
fn top_level_names(payload: &Payload) -> BTreeSet<String> {
    payload
        .keys()
        .filter_map(|p| p.split('/').next().map(str::to_string))
        .collect()
}

/// The payload currently in `data_dir`, read back (files and modes), or None when it cannot
/// be read completely.
fn read_payload(data_dir: &Path) -> Option<Payload> {
    let mut out = Payload::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        for entry in fs::read_dir(data_dir.join(&rel)).ok()? {
            let entry = entry.ok()?;
            let rel_path = rel.join(entry.file_name());
            let meta = entry.metadata().ok()?;
            if meta.is_dir() {
                stack.push(rel_path);
            } else {
                let data = fs::read(entry.path()).ok()?;
                let mode = meta.permissions().mode() & 0o7777;
                out.insert(
                    rel_path.to_str()?.to_string(),
                    FileProjection { data, mode },
                );
            }
        }
    }
    Some(out)
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A fresh `..YYYY_MM_DD_HH_MM_SS.<nanos><n>`-style directory under `target`.
fn new_timestamped_dir(target: &Path) -> Result<PathBuf, WriteError> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    loop {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("..{}.{:09}{n}", now.as_secs(), now.subsec_nanos());
        let dir = target.join(name);
        match fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(io_err("creating", &dir)(e)),
        }
    }
}

fn write_files(dir: &Path, payload: &Payload) -> Result<(), WriteError> {
    for (rel, file) in payload {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(io_err("creating", parent))?;
        }
        fs::write(&path, &file.data).map_err(io_err("writing", &path))?;
        fs::set_permissions(&path, fs::Permissions::from_mode(file.mode))
            .map_err(io_err("setting the mode of", &path))?;
    }
    Ok(())
}

/// Points `..data` at `ts_dir` atomically (a new symlink renamed over the old one).
fn swap_data_link(target: &Path, ts_dir: &Path) -> Result<(), WriteError> {
    let tmp = target.join(DATA_DIR_TMP);
    match fs::remove_file(&tmp) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(io_err("removing", &tmp)(e)),
        _ => {}
    }
    let name = ts_dir.file_name().unwrap_or_default();
    symlink(name, &tmp).map_err(io_err("linking", &tmp))?;
    let data = target.join(DATA_DIR);
    fs::rename(&tmp, &data).map_err(io_err("renaming over", &data))
}

/// Creates missing `name -> ..data/name` links and removes those no longer in `names`.
fn update_user_links(target: &Path, names: &BTreeSet<String>) -> Result<(), WriteError> {
    for name in names {
        let link = target.join(name);
        if fs::symlink_metadata(&link).is_err() {
            symlink(Path::new(DATA_DIR).join(name), &link).map_err(io_err("linking", &link))?;
        }
    }
    for entry in fs::read_dir(target).map_err(io_err("listing", target))? {
        let entry = entry.map_err(io_err("listing", target))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("..") || names.contains(&name) {
            continue;
        }
        let path = entry.path();
        let is_link = fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink());
        if is_link {
            fs::remove_file(&path).map_err(io_err("removing", &path))?;
        }
    }
    Ok(())
}

/// Writes `payload` into `target` (which must exist) atomically; returns whether anything
/// changed (an identical payload is left alone).
pub fn write(target: &Path, payload: &Payload) -> Result<bool, WriteError> {
    for path in payload.keys() {
        validate_path(path)?;
    }
    let data_link = target.join(DATA_DIR);
    let old_dir = fs::read_link(&data_link).ok().map(|p| target.join(p));
    if let Some(old) = &old_dir {
        if read_payload(old).as_ref() == Some(payload) {
            return Ok(false);
        }
    }
    let ts_dir = new_timestamped_dir(target)?;
    if let Err(e) = write_files(&ts_dir, payload) {
        let _ = fs::remove_dir_all(&ts_dir);
        return Err(e);
    }
    fs::set_permissions(&ts_dir, fs::Permissions::from_mode(0o755))
        .map_err(io_err("setting the mode of", &ts_dir))?;
    swap_data_link(target, &ts_dir)?;
    update_user_links(target, &top_level_names(payload))?;
    if let Some(old) = old_dir.filter(|o| o != &ts_dir) {
        fs::remove_dir_all(&old).map_err(io_err("removing", &old))?;
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(data: &str, mode: u32) -> FileProjection {
        FileProjection {
            data: data.as_bytes().to_vec(),
            mode,
        }
    }

    fn names(dir: &Path) -> BTreeSet<String> {
        fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn paths_are_checked() {
        for bad in ["", "/etc/x", "../x", "a/../../x", "..data", "a/./b"] {
            assert!(validate_path(bad).is_err(), "{bad}");
        }
        for good in ["key", "dir/key", "a.b", ".hidden"] {
            assert!(validate_path(good).is_ok(), "{good}");
        }
        let dir = tempfile::tempdir().unwrap();
        let payload = Payload::from([("../escape".to_string(), file("x", 0o644))]);
        assert!(matches!(
            write(dir.path(), &payload),
            Err(WriteError::Path { .. })
        ));
        assert!(names(dir.path()).is_empty(), "nothing half-written");
    }

    #[test]
    fn first_write_links_names_into_data() {
        let dir = tempfile::tempdir().unwrap();
        let payload = Payload::from([
            ("a".to_string(), file("1", 0o644)),
            ("sub/b".to_string(), file("2", 0o400)),
        ]);
        assert!(write(dir.path(), &payload).unwrap());
        let t = dir.path();
        assert_eq!(fs::read_link(t.join("a")).unwrap(), Path::new("..data/a"));
        assert_eq!(
            fs::read_link(t.join("sub")).unwrap(),
            Path::new("..data/sub")
        );
        assert_eq!(fs::read_to_string(t.join("sub/b")).unwrap(), "2");
        let mode = fs::metadata(t.join("sub/b")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o400);
        let ts = fs::read_link(t.join(DATA_DIR)).unwrap();
        assert!(ts.to_string_lossy().starts_with(".."), "{ts:?}");
        assert!(!write(t, &payload).unwrap(), "same payload: no change");
    }

    #[test]
    fn update_swaps_data_and_removes_stale_names() {
        let dir = tempfile::tempdir().unwrap();
        let t = dir.path();
        let v1 = Payload::from([
            ("keep".to_string(), file("old", 0o644)),
            ("gone".to_string(), file("x", 0o644)),
        ]);
        write(t, &v1).unwrap();
        let first = fs::read_link(t.join(DATA_DIR)).unwrap();
        let v2 = Payload::from([
            ("keep".to_string(), file("new", 0o644)),
            ("added".to_string(), file("y", 0o600)),
        ]);
        assert!(write(t, &v2).unwrap());
        let second = fs::read_link(t.join(DATA_DIR)).unwrap();
        assert_ne!(first, second);
        assert!(!t.join(&first).exists(), "old data directory removed");
        assert_eq!(fs::read_to_string(t.join("keep")).unwrap(), "new");
        assert_eq!(fs::read_to_string(t.join("added")).unwrap(), "y");
        assert!(fs::symlink_metadata(t.join("gone")).is_err());
        let visible: BTreeSet<String> = names(t)
            .into_iter()
            .filter(|n| !n.starts_with(".."))
            .collect();
        assert_eq!(visible, BTreeSet::from(["added".into(), "keep".into()]));
        // a mode change alone is an update
        let v3 = Payload::from([
            ("keep".to_string(), file("new", 0o640)),
            ("added".to_string(), file("y", 0o600)),
        ]);
        assert!(write(t, &v3).unwrap());
    }

    #[test]
    fn an_empty_payload_leaves_only_the_data_link() {
        let dir = tempfile::tempdir().unwrap();
        let t = dir.path();
        write(t, &Payload::from([("a".to_string(), file("1", 0o644))])).unwrap();
        write(t, &Payload::new()).unwrap();
        let left: Vec<String> = names(t).into_iter().collect();
        assert_eq!(left.len(), 2, "{left:?}"); // ..data and its directory
        assert!(left.contains(&DATA_DIR.to_string()));
    }
}
