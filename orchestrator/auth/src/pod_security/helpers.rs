//! What every check shares: the pod under evaluation, the walk over its containers in
//! Kubernetes' order, and the message formatting (`joinQuote`, `pluralize`, Go's `%q`).

use k8s_openapi::api::core::v1::{ContainerPort, PodSpec, SecurityContext};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::{EvaluationOptions, Violation};

/// The pod a check looks at, with the options of this evaluation.
#[derive(Clone, Copy)]
pub(crate) struct PodUnderCheck<'a> {
    pub meta: &'a ObjectMeta,
    pub spec: &'a PodSpec,
    pub options: &'a EvaluationOptions,
}

impl<'a> PodUnderCheck<'a> {
    /// Whether the user-namespace relaxation applies: it is opted into and the pod sets
    /// `hostUsers: false` (Kubernetes' `relaxPolicyForUserNamespacePod`).
    pub fn relaxed_for_user_namespace(&self) -> bool {
        self.options.relax_for_user_namespace_pods && self.spec.host_users == Some(false)
    }

    /// Whether `spec.os.name` is `windows`: such pods skip the Linux-only restricted checks.
    pub fn is_windows(&self) -> bool {
        self.spec.os.as_ref().is_some_and(|os| os.name == "windows")
    }

    /// The value of the pod's annotation `key`.
    pub fn annotation(&self, key: &str) -> Option<&'a str> {
        let annotations = self.meta.annotations.as_ref()?;
        annotations.get(key).map(String::as_str)
    }

    /// The annotations of the pod, empty when it has none.
    pub fn annotations(&self) -> impl Iterator<Item = (&'a str, &'a str)> {
        self.meta
            .annotations
            .iter()
            .flatten()
            .map(|(key, value)| (key.as_str(), value.as_str()))
    }
}

/// A check: `None` when the pod passes it, the violation otherwise.
pub(crate) type CheckFn = fn(&PodUnderCheck<'_>) -> Option<Violation>;

/// What the checks read of a container, the same for init, regular and ephemeral ones.
#[derive(Clone, Copy)]
pub(crate) struct ContainerView<'a> {
    pub name: &'a str,
    pub security_context: Option<&'a SecurityContext>,
    pub ports: &'a [ContainerPort],
}

/// Every container of the pod in Kubernetes' visit order: initContainers, containers,
/// then ephemeralContainers.
pub(crate) fn containers(spec: &PodSpec) -> impl Iterator<Item = ContainerView<'_>> {
    let init = spec.init_containers.iter().flatten();
    let regular = spec.containers.iter();
    let pod_containers = init.chain(regular).map(|c| ContainerView {
        name: &c.name,
        security_context: c.security_context.as_ref(),
        ports: c.ports.as_deref().unwrap_or_default(),
    });
    let ephemeral = spec
        .ephemeral_containers
        .iter()
        .flatten()
        .map(|c| ContainerView {
            name: &c.name,
            security_context: c.security_context.as_ref(),
            ports: c.ports.as_deref().unwrap_or_default(),
        });
    pod_containers.chain(ephemeral)
}

/// The names of the containers for which `is_bad` holds, in visit order.
pub(crate) fn containers_where<'a>(
    spec: &'a PodSpec,
    mut is_bad: impl FnMut(&ContainerView<'a>) -> bool,
) -> Vec<&'a str> {
    containers(spec)
        .filter(|c| is_bad(c))
        .map(|c| c.name)
        .collect()
}

/// `"a", "b"`: each item in double quotes, comma separated; empty for no items.
pub(crate) fn join_quote<S: AsRef<str>>(items: &[S]) -> String {
    if items.is_empty() {
        return String::new();
    }
    let quoted: Vec<String> = items
        .iter()
        .map(|i| format!("\"{}\"", i.as_ref()))
        .collect();
    quoted.join(", ")
}

/// `singular` for exactly one item, `plural` otherwise (also for none).
pub(crate) fn pluralize<'a>(singular: &'a str, plural: &'a str, count: usize) -> &'a str {
    if count == 1 {
        singular
    } else {
        plural
    }
}

/// `container "a"` or `containers "a", "b"`.
pub(crate) fn containers_phrase(names: &[&str]) -> String {
    format!(
        "{} {}",
        pluralize("container", "containers", names.len()),
        join_quote(names)
    )
}

/// Who set a forbidden value, pod first: `["pod", "containers \"a\", \"b\""]`.
pub(crate) fn setter_list(pod_is_bad: bool, bad_containers: &[&str]) -> Vec<String> {
    let mut who = Vec::new();
    if pod_is_bad {
        who.push("pod".to_string());
    }
    if !bad_containers.is_empty() {
        who.push(containers_phrase(bad_containers));
    }
    who
}

/// Who set a forbidden value: `pod`, `containers "a", "b"`, `pod and container "a"`;
/// `None` when nobody did.
pub(crate) fn setters(pod_is_bad: bool, bad_containers: &[&str]) -> Option<String> {
    let who = setter_list(pod_is_bad, bad_containers);
    (!who.is_empty()).then(|| who.join(" and "))
}

/// A string quoted as Go's `%q` (`strconv.Quote`) writes it, as Kubernetes' messages do.
pub(crate) fn go_quote(text: &str) -> String {
    let mut quoted = String::with_capacity(text.len() + 2);
    quoted.push('"');
    for ch in text.chars() {
        match ch {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            '\u{7}' => quoted.push_str("\\a"),
            '\u{8}' => quoted.push_str("\\b"),
            '\u{c}' => quoted.push_str("\\f"),
            '\n' => quoted.push_str("\\n"),
            '\r' => quoted.push_str("\\r"),
            '\t' => quoted.push_str("\\t"),
            '\u{b}' => quoted.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                quoted.push_str(&format!("\\x{:02x}", c as u32))
            }
            c if c.is_control() || (c.is_whitespace() && c != ' ') => {
                push_unicode_escape(&mut quoted, c)
            }
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

fn push_unicode_escape(quoted: &mut String, ch: char) {
    let code = ch as u32;
    if code < 0x10000 {
        quoted.push_str(&format!("\\u{code:04x}"));
    } else {
        quoted.push_str(&format!("\\U{code:08x}"));
    }
}

/// Building pods from JSON and running single checks on them, for the checks' tests.
#[cfg(test)]
pub(crate) mod test_support {
    use super::*;
    use serde_json::Value;

    /// The metadata and spec of a pod written as `{"metadata": {..}, "spec": {..}}`;
    /// either may be left out.
    pub fn parse_pod(pod: Value) -> (ObjectMeta, PodSpec) {
        let part = |name: &str| {
            pod.get(name)
                .cloned()
                .unwrap_or_else(|| Value::Object(Default::default()))
        };
        let meta = serde_json::from_value(part("metadata")).expect("pod metadata");
        let spec = serde_json::from_value(part("spec")).expect("pod spec");
        (meta, spec)
    }

    /// Runs one check on the pod, with or without the user-namespace relaxation.
    pub fn check_pod(check: CheckFn, pod: Value, relax: bool) -> Option<Violation> {
        let (meta, spec) = parse_pod(pod);
        let options = EvaluationOptions {
            relax_for_user_namespace_pods: relax,
        };
        check(&PodUnderCheck {
            meta: &meta,
            spec: &spec,
            options: &options,
        })
    }

    pub fn expect_allowed(check: CheckFn, pod: Value) {
        let shown = pod.to_string();
        assert_eq!(check_pod(check, pod, false), None, "pod {shown}");
    }

    pub fn expect_forbidden(check: CheckFn, pod: Value, reason: &str, detail: &str) {
        let shown = pod.to_string();
        let expected = Violation::new(reason, detail);
        assert_eq!(check_pod(check, pod, false), Some(expected), "pod {shown}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn join_quote_quotes_each_item() {
        assert_eq!(join_quote::<&str>(&[]), "");
        assert_eq!(join_quote(&["a"]), r#""a""#);
        assert_eq!(join_quote(&["a", "b"]), r#""a", "b""#);
    }

    #[test]
    fn pluralize_uses_singular_only_for_one() {
        assert_eq!(pluralize("container", "containers", 0), "containers");
        assert_eq!(pluralize("container", "containers", 1), "container");
        assert_eq!(pluralize("container", "containers", 2), "containers");
    }

    #[test]
    fn setters_name_pod_then_containers() {
        assert_eq!(setters(false, &[]), None);
        assert_eq!(setters(true, &[]).as_deref(), Some("pod"));
        assert_eq!(setters(false, &["a"]).as_deref(), Some(r#"container "a""#));
        assert_eq!(
            setters(true, &["e", "f"]).as_deref(),
            Some(r#"pod and containers "e", "f""#)
        );
    }

    #[test]
    fn go_quote_escapes_like_strconv_quote() {
        assert_eq!(go_quote("unconfined"), r#""unconfined""#);
        assert_eq!(go_quote(""), r#""""#);
        assert_eq!(go_quote("a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(go_quote("a\nb\tc\u{1}"), r#""a\nb\tc\x01""#);
        assert_eq!(go_quote("héllo wörld"), "\"héllo wörld\"");
        assert_eq!(go_quote("a\u{a0}b"), r#""a\u00a0b""#);
    }

    #[test]
    fn containers_are_visited_init_regular_ephemeral() {
        let spec: PodSpec = serde_json::from_value(json!({
            "ephemeralContainers": [{"name": "debug", "ports": [{"containerPort": 1, "hostPort": 2}]}],
            "containers": [{"name": "app"}, {"name": "sidecar"}],
            "initContainers": [{"name": "init"}],
        }))
        .unwrap();
        let names: Vec<&str> = containers(&spec).map(|c| c.name).collect();
        assert_eq!(names, ["init", "app", "sidecar", "debug"]);
        let debug = containers(&spec).last().unwrap();
        assert_eq!(debug.ports.len(), 1);
    }
}
