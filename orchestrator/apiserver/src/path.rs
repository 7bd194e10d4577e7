//! Parsing of API request paths into what they address.

/// What a request path addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `/version`
    Version,
    /// `/api`
    CoreVersions,
    /// `/apis`
    GroupList,
    /// `/apis/<group>`
    Group { group: String },
    /// `/api/v1` or `/apis/<group>/<version>`
    GroupVersion { group: String, version: String },
    /// Anything under a group-version naming a resource.
    Resource(ResourcePath),
}

/// A resource path: `/api/v1/[watch/][namespaces/<ns>/]<resource>[/<name>[/<sub>]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourcePath {
    pub group: String,
    pub version: String,
    pub namespace: Option<String>,
    pub resource: String,
    pub name: Option<String>,
    pub subresource: Option<String>,
    /// The legacy `/watch/` path prefix was used.
    pub watch: bool,
}

/// Parse a request path; None when it addresses nothing this server serves. The path is
/// percent-decoded first, as Go's HTTP server hands kube-apiserver its decoded path
/// (`/pods/%70od1` names the pod `pod1`).
pub fn parse(path: &str) -> Option<Target> {
    let path = percent_decoded(path)?;
    let segs: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    match segs.as_slice() {
        ["version"] => Some(Target::Version),
        ["api"] => Some(Target::CoreVersions),
        ["apis"] => Some(Target::GroupList),
        ["apis", group] => Some(Target::Group {
            group: group.to_string(),
        }),
        ["api", version, rest @ ..] => resource_target("", version, rest),
        ["apis", group, version, rest @ ..] => resource_target(group, version, rest),
        _ => None,
    }
}

/// `path` with its `%XX` escapes decoded; None for a malformed escape or a result that is not
/// UTF-8.
fn percent_decoded(path: &str) -> Option<String> {
    if !path.contains('%') {
        return Some(path.to_string());
    }
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn resource_target(group: &str, version: &str, rest: &[&str]) -> Option<Target> {
    if rest.is_empty() {
        return Some(Target::GroupVersion {
            group: group.into(),
            version: version.into(),
        });
    }
    let (watch, rest) = match rest {
        ["watch", tail @ ..] if !tail.is_empty() => (true, tail),
        _ => (false, rest),
    };
    let mk = |namespace: Option<&str>, resource: &str, name: Option<&str>, sub: Option<&str>| {
        Some(Target::Resource(ResourcePath {
            group: group.into(),
            version: version.into(),
            namespace: namespace.map(String::from),
            resource: resource.into(),
            name: name.map(String::from),
            subresource: sub.map(String::from),
            watch,
        }))
    };
    let core = group.is_empty();
    match rest {
        [res] => mk(None, res, None, None),
        // namespaces/<name>/{status,finalize} are subresources of a namespace
        ["namespaces", ns, sub @ ("status" | "finalize")] if core => {
            mk(None, "namespaces", Some(ns), Some(sub))
        }
        ["namespaces", ns, res] => mk(Some(ns), res, None, None),
        ["namespaces", ns, res, name] => mk(Some(ns), res, Some(name), None),
        ["namespaces", ns, res, name, sub] => mk(Some(ns), res, Some(name), Some(sub)),
        [res, name] => mk(None, res, Some(name), None),
        [res, name, sub] => mk(None, res, Some(name), Some(sub)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(t: Option<Target>) -> ResourcePath {
        match t {
            Some(Target::Resource(r)) => r,
            other => panic!("not a resource: {other:?}"),
        }
    }

    #[test]
    fn parses_core_and_group_paths() {
        assert_eq!(parse("/version"), Some(Target::Version));
        assert_eq!(parse("/api"), Some(Target::CoreVersions));
        assert_eq!(parse("/apis"), Some(Target::GroupList));
        assert_eq!(
            parse("/apis/apps/v1"),
            Some(Target::GroupVersion {
                group: "apps".into(),
                version: "v1".into()
            })
        );
        let r = res(parse("/api/v1/namespaces/default/pods/nginx/status"));
        assert_eq!(r.namespace.as_deref(), Some("default"));
        assert_eq!(r.resource, "pods");
        assert_eq!(r.name.as_deref(), Some("nginx"));
        assert_eq!(r.subresource.as_deref(), Some("status"));
        let r = res(parse("/apis/apps/v1/namespaces/x/deployments"));
        assert_eq!(
            (r.group.as_str(), r.resource.as_str(), r.name),
            ("apps", "deployments", None)
        );
    }

    #[test]
    fn decodes_percent_escapes() {
        let r = res(parse("/api/v1/namespaces/%64efault/pods/%70od1"));
        assert_eq!(r.namespace.as_deref(), Some("default"));
        assert_eq!(r.name.as_deref(), Some("pod1"));
        let r = res(parse("/apis/apps/v1/namespaces/x/deployments/web%2Dapp"));
        assert_eq!(r.name.as_deref(), Some("web-app"));
        assert_eq!(parse("/api/v1/pods/%zz"), None);
        assert_eq!(parse("/api/v1/pods/%7"), None);
        assert_eq!(parse("/api/v1/pods/%ff"), None);
    }

    #[test]
    fn namespace_subresources_and_cluster_scoped() {
        let r = res(parse("/api/v1/namespaces/foo/finalize"));
        assert_eq!(
            (
                r.resource.as_str(),
                r.name.as_deref(),
                r.subresource.as_deref()
            ),
            ("namespaces", Some("foo"), Some("finalize"))
        );
        let r = res(parse("/api/v1/namespaces/foo"));
        assert_eq!(
            (r.resource.as_str(), r.name.as_deref(), r.namespace),
            ("namespaces", Some("foo"), None)
        );
        let r = res(parse("/api/v1/nodes/n1/status"));
        assert_eq!(
            (r.resource.as_str(), r.subresource.as_deref()),
            ("nodes", Some("status"))
        );
        let r = res(parse("/api/v1/watch/namespaces/default/pods"));
        assert!(r.watch);
        assert_eq!(r.namespace.as_deref(), Some("default"));
        let r = res(parse("/api/v1/pods"));
        assert_eq!((r.resource.as_str(), r.namespace), ("pods", None));
    }
}
