//! Image garbage collection by disk usage, as Kubernetes' image GC manager: when the image
//! filesystem (CRI `ImageFsInfo`, measured with statvfs) is at least `high` percent full,
//! images no container uses are removed, least recently used first, until usage is back
//! at `low` percent. Pinned images, images any container (running or exited) was created
//! from, the sandbox image and images first seen less than `min_age` ago stay.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::cri::{proto, CriClient};

/// GC settings.
#[derive(Debug, Clone)]
pub struct GcPolicy {
    pub high_percent: u8,
    pub low_percent: u8,
    pub min_age: Duration,
    pub period: Duration,
    /// Never removed (the sandbox image, whose containers are not listed).
    pub keep: Vec<String>,
}

/// Bytes to free so that usage falls to `low` percent, when usage reached `high` percent.
pub fn bytes_to_free(capacity: u64, available: u64, high: u8, low: u8) -> Option<u64> {
    if capacity == 0 {
        return None;
    }
    let used = capacity.saturating_sub(available);
    let percent = used.saturating_mul(100) / capacity;
    if percent < u64::from(high) {
        return None;
    }
    let target_available = capacity / 100 * u64::from(100 - low.min(100));
    Some(target_available.saturating_sub(available))
}

/// One image as GC sees it.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub id: String,
    pub size: u64,
    pub pinned: bool,
    pub first_seen: Instant,
    pub last_used: Instant,
}

/// Which images to remove, oldest last use first, to free `needed` bytes.
pub fn choose(
    images: &[Candidate],
    in_use: &HashSet<String>,
    needed: u64,
    now: Instant,
    min_age: Duration,
) -> Vec<String> {
    let mut list: Vec<&Candidate> = images
        .iter()
        .filter(|i| !i.pinned && !in_use.contains(&i.id))
        .filter(|i| now.duration_since(i.first_seen) >= min_age)
        .collect();
    list.sort_by_key(|i| i.last_used);
    let mut freed = 0;
    let mut out = Vec::new();
    for i in list {
        if freed >= needed {
            break;
        }
        freed += i.size;
        out.push(i.id.clone());
    }
    out
}

/// (capacity, available) bytes of the filesystem holding `path`.
fn statvfs(path: &Path) -> Option<(u64, u64)> {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).ok()?;
    // SAFETY: statvfs(3) fills the zeroed struct for a valid path.
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut s) } != 0 {
        return None;
    }
    let frsize = s.f_frsize as u64;
    Some((s.f_blocks as u64 * frsize, s.f_bavail as u64 * frsize))
}

/// Images in use: those of every container the runtime has, and the kept names.
async fn images_in_use(
    cri: &CriClient,
    images: &[proto::Image],
    keep: &[String],
) -> Option<HashSet<String>> {
    let containers = cri.list_containers(None).await.ok()?;
    let mut used: HashSet<String> = containers.iter().map(|c| c.image_ref.clone()).collect();
    used.extend(
        containers
            .iter()
            .filter_map(|c| c.image.as_ref().map(|i| i.image.clone())),
    );
    for i in images {
        let named = i
            .repo_tags
            .iter()
            .chain(&i.repo_digests)
            .any(|t| used.contains(t) || keep.contains(t));
        if named {
            used.insert(i.id.clone());
        }
    }
    Some(used)
}

/// Runs GC every `policy.period` until dropped.
pub async fn run(cri: CriClient, policy: GcPolicy) {
    let mut seen: HashMap<String, (Instant, Instant)> = HashMap::new();
    let mut tick = tokio::time::interval(policy.period);
    loop {
        tick.tick().await;
        if let Err(e) = collect_once(&cri, &policy, &mut seen).await {
            tracing::warn!(error = %e, "image garbage collection failed");
        }
    }
}

async fn collect_once(
    cri: &CriClient,
    policy: &GcPolicy,
    seen: &mut HashMap<String, (Instant, Instant)>,
) -> Result<(), crate::cri::CriError> {
    let images = cri.list_images().await?;
    let now = Instant::now();
    let in_use = images_in_use(cri, &images, &policy.keep)
        .await
        .unwrap_or_default();
    seen.retain(|id, _| images.iter().any(|i| &i.id == id));
    for i in &images {
        let entry = seen.entry(i.id.clone()).or_insert((now, now));
        if in_use.contains(&i.id) {
            entry.1 = now;
        }
    }
    let Some(fs) = cri.image_fs_info().await?.into_iter().next() else {
        return Ok(());
    };
    let mountpoint = fs.fs_id.map(|f| f.mountpoint).unwrap_or_default();
    let Some((capacity, available)) = statvfs(Path::new(&mountpoint)) else {
        return Ok(());
    };
    let Some(needed) = bytes_to_free(capacity, available, policy.high_percent, policy.low_percent)
    else {
        return Ok(());
    };
    let candidates: Vec<Candidate> = images
        .iter()
        .map(|i| {
            let (first_seen, last_used) = seen.get(&i.id).copied().unwrap_or((now, now));
            Candidate {
                id: i.id.clone(),
                size: i.size,
                pinned: i.pinned,
                first_seen,
                last_used,
            }
        })
        .collect();
    let remove = choose(&candidates, &in_use, needed, now, policy.min_age);
    tracing::info!(%mountpoint, needed, images = remove.len(), "image filesystem above its high threshold; removing unused images");
    for id in remove {
        match cri.remove_image(&id).await {
            Ok(()) => tracing::info!(image = %id, "unused image removed"),
            Err(e) => tracing::warn!(image = %id, error = %e, "removing an unused image failed"),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds() {
        assert_eq!(bytes_to_free(1000, 500, 85, 80), None);
        assert_eq!(
            bytes_to_free(1000, 100, 85, 80),
            Some(100),
            "90% used, to 80%"
        );
        assert_eq!(
            bytes_to_free(1000, 150, 85, 80),
            Some(50),
            "exactly at high"
        );
        assert_eq!(bytes_to_free(0, 0, 85, 80), None);
    }

    #[test]
    fn oldest_unused_first_never_in_use_pinned_or_young() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let img = |id: &str, size, pinned, first, last| Candidate {
            id: id.into(),
            size,
            pinned,
            first_seen: at(first),
            last_used: at(last),
        };
        let images = vec![
            img("recent", 100, false, 0, 500),
            img("old", 100, false, 0, 100),
            img("used", 1000, false, 0, 0),
            img("pinned", 1000, true, 0, 0),
            img("young", 1000, false, 590, 590),
            img("older", 50, false, 0, 50),
        ];
        let in_use = HashSet::from(["used".to_string()]);
        let min_age = Duration::from_secs(120);
        assert_eq!(
            choose(&images, &in_use, 120, at(600), min_age),
            ["older", "old"]
        );
        assert_eq!(
            choose(&images, &in_use, 10_000, at(600), min_age),
            ["older", "old", "recent"]
        );
        assert!(choose(&images, &in_use, 0, at(600), min_age).is_empty());
    }
}
