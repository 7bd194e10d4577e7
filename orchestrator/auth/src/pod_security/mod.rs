//! Pod Security Standards as Kubernetes' pod-security-admission (v1.33) evaluates them:
//! the levels and versions a namespace's `pod-security.kubernetes.io/*` labels ask for
//! ([`policy_from_labels`]), and the checks a pod must pass at a level and version
//! ([`evaluate`]), with Kubernetes' check order and message text.
//!
//! The checks live in `baseline` and `restricted`; `registry` picks, for a
//! requested version, the newest version of each check not newer than it, and leaves out
//! at the restricted level the baseline checks a restricted check replaces.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use k8s_openapi::api::core::v1::PodSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

mod baseline;
mod helpers;
mod registry;
mod restricted;

/// The newest policy minor version this evaluator knows (Kubernetes v1.33): `latest` and
/// newer versions are evaluated as this one.
pub const LATEST_MINOR: u32 = 33;

const LABEL_PREFIX: &str = "pod-security.kubernetes.io/";
pub const ENFORCE_LEVEL_LABEL: &str = "pod-security.kubernetes.io/enforce";
pub const ENFORCE_VERSION_LABEL: &str = "pod-security.kubernetes.io/enforce-version";
pub const AUDIT_LEVEL_LABEL: &str = "pod-security.kubernetes.io/audit";
pub const AUDIT_VERSION_LABEL: &str = "pod-security.kubernetes.io/audit-version";
pub const WARN_LEVEL_LABEL: &str = "pod-security.kubernetes.io/warn";
pub const WARN_VERSION_LABEL: &str = "pod-security.kubernetes.io/warn-version";

/// A Pod Security Standards level, least strict first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Level {
    #[default]
    Privileged,
    Baseline,
    Restricted,
}

impl Level {
    pub fn as_str(&self) -> &'static str {
        match self {
            Level::Privileged => "privileged",
            Level::Baseline => "baseline",
            Level::Restricted => "restricted",
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a level or version label value does not parse, in Kubernetes' words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("must be one of privileged, baseline, restricted")]
    Level,
    #[error(r#"must be "latest" or "v1.x""#)]
    Version,
}

impl FromStr for Level {
    type Err = ParseError;

    /// `privileged`, `baseline` or `restricted`, exactly.
    fn from_str(text: &str) -> Result<Level, ParseError> {
        match text {
            "privileged" => Ok(Level::Privileged),
            "baseline" => Ok(Level::Baseline),
            "restricted" => Ok(Level::Restricted),
            _ => Err(ParseError::Level),
        }
    }
}

/// A policy version: `latest`, or `v1.N` (the checks as of Kubernetes 1.N).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Version {
    #[default]
    Latest,
    Minor(u32),
}

impl Version {
    /// The minor version whose checks apply: `latest` and versions newer than this
    /// evaluator are [`LATEST_MINOR`].
    pub fn policy_minor(&self) -> u32 {
        match self {
            Version::Latest => LATEST_MINOR,
            Version::Minor(minor) => (*minor).min(LATEST_MINOR),
        }
    }
}

impl Ord for Version {
    /// `latest` is newer than every `v1.N`.
    fn cmp(&self, other: &Version) -> std::cmp::Ordering {
        match (self, other) {
            (Version::Latest, Version::Latest) => std::cmp::Ordering::Equal,
            (Version::Latest, Version::Minor(_)) => std::cmp::Ordering::Greater,
            (Version::Minor(_), Version::Latest) => std::cmp::Ordering::Less,
            (Version::Minor(a), Version::Minor(b)) => a.cmp(b),
        }
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Version) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Version::Latest => f.write_str("latest"),
            Version::Minor(minor) => write!(f, "v1.{minor}"),
        }
    }
}

impl FromStr for Version {
    type Err = ParseError;

    /// `latest`, or `v1.N` with N a decimal without leading zeros.
    fn from_str(text: &str) -> Result<Version, ParseError> {
        if text == "latest" {
            return Ok(Version::Latest);
        }
        let minor = text.strip_prefix("v1.").ok_or(ParseError::Version)?;
        let digits_only = !minor.is_empty() && minor.bytes().all(|b| b.is_ascii_digit());
        let leading_zero = minor.len() > 1 && minor.starts_with('0');
        if !digits_only || leading_zero {
            return Err(ParseError::Version);
        }
        minor
            .parse()
            .map(Version::Minor)
            .map_err(|_| ParseError::Version)
    }
}

/// A level at a version; displayed `baseline:latest`, `restricted:v1.30`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct LevelVersion {
    pub level: Level,
    pub version: Version,
}

impl LevelVersion {
    pub fn new(level: Level, version: Version) -> LevelVersion {
        LevelVersion { level, version }
    }
}

impl fmt::Display for LevelVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.level, self.version)
    }
}

/// The level and version of each mode of a namespace's policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct NamespacePolicy {
    pub enforce: LevelVersion,
    pub audit: LevelVersion,
    pub warn: LevelVersion,
}

/// A `pod-security.kubernetes.io/*` label whose value does not parse. Displayed as
/// Kubernetes' field error: `metadata.labels[pod-security.kubernetes.io/enforce]:
/// Invalid value: "foo": must be one of privileged, baseline, restricted`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("metadata.labels[{label}]: Invalid value: {}: {reason}", helpers::go_quote(.value))]
pub struct LabelError {
    /// The label key.
    pub label: String,
    /// Its value as given.
    pub value: String,
    /// Why the value is refused.
    pub reason: String,
}

/// What a namespace's label says for one setting.
enum LabelValue<T> {
    Absent,
    Valid(T),
    Invalid,
}

fn read_label<T: FromStr<Err = ParseError>>(
    labels: &BTreeMap<String, String>,
    label: &str,
    errors: &mut Vec<LabelError>,
) -> LabelValue<T> {
    let Some(value) = labels.get(label) else {
        return LabelValue::Absent;
    };
    match value.parse() {
        Ok(parsed) => LabelValue::Valid(parsed),
        Err(error) => {
            errors.push(LabelError {
                label: label.to_string(),
                value: value.clone(),
                reason: ParseError::to_string(&error),
            });
            LabelValue::Invalid
        }
    }
}

/// Stores a label's value in `slot` (`on_error` when it does not parse); whether the label
/// is present.
fn apply_label<T>(slot: &mut T, value: LabelValue<T>, on_error: T) -> bool {
    match value {
        LabelValue::Absent => return false,
        LabelValue::Valid(parsed) => *slot = parsed,
        LabelValue::Invalid => *slot = on_error,
    }
    true
}

/// The policy a namespace's labels ask for, over `defaults` for the labels it lacks, as
/// Kubernetes' `PolicyToEvaluate`: always a usable policy, plus the label errors. A bad
/// enforce level fails closed (restricted), bad audit and warn levels fail open
/// (privileged), bad versions become `latest`. When enforce is set (validly) stricter than
/// warn and warn is not labelled, warn follows enforce (with its version unless
/// `warn-version` is labelled).
pub fn policy_to_evaluate(
    labels: &BTreeMap<String, String>,
    defaults: &NamespacePolicy,
) -> (NamespacePolicy, Vec<LabelError>) {
    let mut errors = Vec::new();
    let mut policy = *defaults;
    let enforce_level = read_label(labels, ENFORCE_LEVEL_LABEL, &mut errors);
    let has_enforce_level = matches!(enforce_level, LabelValue::Valid(_));
    apply_label(&mut policy.enforce.level, enforce_level, Level::Restricted);
    let enforce_version = read_label(labels, ENFORCE_VERSION_LABEL, &mut errors);
    apply_label(
        &mut policy.enforce.version,
        enforce_version,
        Version::Latest,
    );
    let audit_level = read_label(labels, AUDIT_LEVEL_LABEL, &mut errors);
    apply_label(&mut policy.audit.level, audit_level, Level::Privileged);
    let audit_version = read_label(labels, AUDIT_VERSION_LABEL, &mut errors);
    apply_label(&mut policy.audit.version, audit_version, Version::Latest);
    let warn_level = read_label(labels, WARN_LEVEL_LABEL, &mut errors);
    let has_warn_level = apply_label(&mut policy.warn.level, warn_level, Level::Privileged);
    let warn_version = read_label(labels, WARN_VERSION_LABEL, &mut errors);
    let has_warn_version = apply_label(&mut policy.warn.version, warn_version, Version::Latest);

    if !has_warn_level && has_enforce_level && policy.enforce.level > policy.warn.level {
        policy.warn.level = policy.enforce.level;
        if !has_warn_version {
            policy.warn.version = policy.enforce.version;
        }
    }
    (policy, errors)
}

/// The policy a namespace's labels ask for, each mode defaulting to `privileged:latest`;
/// the label errors, in label order (enforce, enforce-version, audit, audit-version, warn,
/// warn-version), if any label value is invalid. Use [`policy_to_evaluate`] for the
/// fail-closed policy Kubernetes evaluates despite such errors.
pub fn policy_from_labels(
    labels: &BTreeMap<String, String>,
) -> Result<NamespacePolicy, Vec<LabelError>> {
    let (policy, errors) = policy_to_evaluate(labels, &NamespacePolicy::default());
    if errors.is_empty() {
        Ok(policy)
    } else {
        Err(errors)
    }
}

/// Whether `label` is one of the Pod Security labels (`pod-security.kubernetes.io/*`).
pub fn is_pod_security_label(label: &str) -> bool {
    label.starts_with(LABEL_PREFIX)
}

/// A failed check: Kubernetes' `ForbiddenReason` (`host namespaces`) and
/// `ForbiddenDetail` (`hostNetwork=true`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub reason: String,
    pub detail: String,
}

impl Violation {
    pub fn new(reason: impl Into<String>, detail: impl Into<String>) -> Violation {
        Violation {
            reason: reason.into(),
            detail: detail.into(),
        }
    }

    /// The reason, or Kubernetes' placeholder when a check gave none.
    fn reason_or_unknown(&self) -> &str {
        if self.reason.is_empty() {
            "unknown forbidden reason"
        } else {
            &self.reason
        }
    }
}

impl fmt::Display for Violation {
    /// `reason (detail)`, or just `reason` without a detail.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason_or_unknown())?;
        if !self.detail.is_empty() {
            write!(f, " ({})", self.detail)?;
        }
        Ok(())
    }
}

/// Options of an evaluation that Kubernetes takes from feature gates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EvaluationOptions {
    /// Let pods with `hostUsers: false` pass the procMount, runAsNonRoot and runAsUser
    /// checks (Kubernetes' `UserNamespacesPodSecurityStandards` gate, alpha and off by
    /// default in v1.33).
    pub relax_for_user_namespace_pods: bool,
}

/// The violations of a pod at `lv`, in Kubernetes' check order; empty when the pod is
/// allowed (always, at the privileged level). With default [`EvaluationOptions`].
pub fn evaluate(lv: &LevelVersion, meta: &ObjectMeta, spec: &PodSpec) -> Vec<Violation> {
    evaluate_with_options(lv, meta, spec, &EvaluationOptions::default())
}

/// [`evaluate`] with explicit options.
pub fn evaluate_with_options(
    lv: &LevelVersion,
    meta: &ObjectMeta,
    spec: &PodSpec,
    options: &EvaluationOptions,
) -> Vec<Violation> {
    let pod = helpers::PodUnderCheck {
        meta,
        spec,
        options,
    };
    registry::run_checks(lv, &pod)
}

/// The reasons of the violations, comma separated (`AggregateCheckResult.ForbiddenReason`):
/// `host namespaces, hostPath volumes`.
pub fn forbidden_reason(violations: &[Violation]) -> String {
    let reasons: Vec<&str> = violations
        .iter()
        .map(Violation::reason_or_unknown)
        .collect();
    reasons.join(", ")
}

/// Each violation as `reason (detail)`, comma separated
/// (`AggregateCheckResult.ForbiddenDetail`): `host namespaces (hostNetwork=true),
/// hostPath volumes (volume "host")`.
pub fn forbidden_detail(violations: &[Violation]) -> String {
    let described: Vec<String> = violations.iter().map(Violation::to_string).collect();
    described.join(", ")
}

#[cfg(test)]
mod tests {
    use super::helpers::test_support::parse_pod;
    use super::*;
    use serde_json::json;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        let mut labels = BTreeMap::from([("other-label".to_string(), "foo-bar".to_string())]);
        for (key, value) in pairs {
            labels.insert(format!("{LABEL_PREFIX}{key}"), value.to_string());
        }
        labels
    }

    fn lv(level: Level, version: Version) -> LevelVersion {
        LevelVersion::new(level, version)
    }

    const PRIVILEGED: LevelVersion = LevelVersion {
        level: Level::Privileged,
        version: Version::Latest,
    };

    fn policy(enforce: LevelVersion, audit: LevelVersion, warn: LevelVersion) -> NamespacePolicy {
        NamespacePolicy {
            enforce,
            audit,
            warn,
        }
    }

    #[test]
    fn levels_parse_and_display() {
        for level in [Level::Privileged, Level::Baseline, Level::Restricted] {
            assert_eq!(level.as_str().parse::<Level>(), Ok(level));
        }
        for bad in ["", "Baseline", "foo", " baseline"] {
            assert_eq!(bad.parse::<Level>(), Err(ParseError::Level));
        }
        assert_eq!(
            ParseError::Level.to_string(),
            "must be one of privileged, baseline, restricted"
        );
    }

    #[test]
    fn versions_parse_like_kubernetes() {
        let good = [
            ("latest", Version::Latest),
            ("v1.0", Version::Minor(0)),
            ("v1.1", Version::Minor(1)),
            ("v1.20", Version::Minor(20)),
            ("v1.10000", Version::Minor(10000)),
        ];
        for (text, version) in good {
            assert_eq!(text.parse::<Version>(), Ok(version), "{text}");
            assert_eq!(version.to_string(), text);
        }
        for bad in [
            "foo", "", "v2.0", "v1", "1.1", "v1.", "v1.01", "v1.-1", "v1.1 ", "Latest",
        ] {
            assert_eq!(bad.parse::<Version>(), Err(ParseError::Version), "{bad}");
        }
        assert_eq!(
            ParseError::Version.to_string(),
            r#"must be "latest" or "v1.x""#
        );
    }

    #[test]
    fn versions_order_with_latest_newest() {
        assert!(Version::Minor(1) < Version::Minor(30));
        assert!(Version::Minor(10_000) < Version::Latest);
        assert_eq!(Version::Latest.policy_minor(), LATEST_MINOR);
        assert_eq!(Version::Minor(40).policy_minor(), LATEST_MINOR);
        assert_eq!(Version::Minor(25).policy_minor(), 25);
    }

    #[test]
    fn level_version_display() {
        assert_eq!(
            lv(Level::Baseline, Version::Latest).to_string(),
            "baseline:latest"
        );
        assert_eq!(
            lv(Level::Restricted, Version::Minor(30)).to_string(),
            "restricted:v1.30"
        );
    }

    #[test]
    fn policy_defaults_to_privileged_latest() {
        let expected = policy(PRIVILEGED, PRIVILEGED, PRIVILEGED);
        assert_eq!(policy_from_labels(&BTreeMap::new()), Ok(expected));
        assert_eq!(policy_from_labels(&labels(&[])), Ok(expected));
    }

    #[test]
    fn policy_from_labels_follows_kubernetes_cases() {
        let baseline = lv(Level::Baseline, Version::Latest);
        let restricted = lv(Level::Restricted, Version::Latest);
        let cases = [
            (
                labels(&[("enforce", "baseline")]),
                policy(baseline, PRIVILEGED, baseline),
            ),
            (
                labels(&[("warn", "restricted")]),
                policy(PRIVILEGED, PRIVILEGED, restricted),
            ),
            (
                labels(&[("audit", "baseline")]),
                policy(PRIVILEGED, baseline, PRIVILEGED),
            ),
            (
                labels(&[("enforce", "baseline"), ("warn", "restricted")]),
                policy(baseline, PRIVILEGED, restricted),
            ),
            (
                labels(&[("enforce", "baseline"), ("enforce-version", "v1.22")]),
                policy(
                    lv(Level::Baseline, Version::Minor(22)),
                    PRIVILEGED,
                    lv(Level::Baseline, Version::Minor(22)),
                ),
            ),
            (
                labels(&[
                    ("enforce", "baseline"),
                    ("enforce-version", "v1.22"),
                    ("warn-version", "latest"),
                ]),
                policy(
                    lv(Level::Baseline, Version::Minor(22)),
                    PRIVILEGED,
                    baseline,
                ),
            ),
            (
                labels(&[("enforce", "baseline"), ("warn-version", "v1.23")]),
                policy(
                    baseline,
                    PRIVILEGED,
                    lv(Level::Baseline, Version::Minor(23)),
                ),
            ),
            (
                labels(&[("enforce", "baseline"), ("warn", "privileged")]),
                policy(baseline, PRIVILEGED, PRIVILEGED),
            ),
        ];
        for (labels, expected) in cases {
            assert_eq!(policy_from_labels(&labels), Ok(expected), "{labels:?}");
        }
    }

    #[test]
    fn policy_fully_specified() {
        let labels = labels(&[
            ("enforce", "baseline"),
            ("enforce-version", "v1.20"),
            ("warn", "restricted"),
            ("warn-version", "v1.21"),
            ("audit", "restricted"),
            ("audit-version", "v1.22"),
        ]);
        let expected = policy(
            lv(Level::Baseline, Version::Minor(20)),
            lv(Level::Restricted, Version::Minor(22)),
            lv(Level::Restricted, Version::Minor(21)),
        );
        assert_eq!(policy_from_labels(&labels), Ok(expected));
    }

    #[test]
    fn label_errors_name_label_value_and_reason() {
        let errors = policy_from_labels(&labels(&[("enforce", "foo"), ("warn-version", "v1.x")]))
            .expect_err("invalid labels");
        let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                r#"metadata.labels[pod-security.kubernetes.io/enforce]: Invalid value: "foo": must be one of privileged, baseline, restricted"#,
                r#"metadata.labels[pod-security.kubernetes.io/warn-version]: Invalid value: "v1.x": must be "latest" or "v1.x""#,
            ]
        );
        assert_eq!(errors[0].label, ENFORCE_LEVEL_LABEL);
        assert_eq!(errors[0].value, "foo");
        assert_eq!(
            errors[0].reason,
            "must be one of privileged, baseline, restricted"
        );
    }

    #[test]
    fn invalid_labels_fail_closed_for_enforce_and_open_for_audit_and_warn() {
        let defaults = NamespacePolicy::default();
        let (enforce_error, errors) = policy_to_evaluate(&labels(&[("enforce", "foo")]), &defaults);
        assert_eq!(errors.len(), 1);
        let restricted = lv(Level::Restricted, Version::Latest);
        assert_eq!(enforce_error, policy(restricted, PRIVILEGED, PRIVILEGED));

        let warn_error = labels(&[("enforce", "baseline"), ("warn", "foo")]);
        let (warn_error, errors) = policy_to_evaluate(&warn_error, &defaults);
        assert_eq!(errors.len(), 1);
        let baseline = lv(Level::Baseline, Version::Latest);
        assert_eq!(warn_error, policy(baseline, PRIVILEGED, PRIVILEGED));

        let bad = labels(&[
            ("audit", "Baseline"),
            ("audit-version", "1.30"),
            ("enforce-version", "v2.0"),
        ]);
        let (bad, errors) = policy_to_evaluate(&bad, &defaults);
        assert_eq!(errors.len(), 3);
        assert_eq!(bad, policy(PRIVILEGED, PRIVILEGED, PRIVILEGED));
    }

    #[test]
    fn label_version_falls_back_to_latest_over_defaults() {
        let pinned = lv(Level::Baseline, Version::Minor(20));
        let defaults = policy(pinned, pinned, pinned);
        let (policy, errors) =
            policy_to_evaluate(&labels(&[("audit-version", "v1.020")]), &defaults);
        assert_eq!(errors.len(), 1);
        assert_eq!(policy.audit, lv(Level::Baseline, Version::Latest));
        assert_eq!(policy.enforce, pinned);
    }

    #[test]
    fn pod_security_label_prefix() {
        assert!(is_pod_security_label(ENFORCE_LEVEL_LABEL));
        assert!(!is_pod_security_label("app"));
    }

    fn evaluate_json(lv: LevelVersion, pod: serde_json::Value) -> Vec<Violation> {
        let (meta, spec) = parse_pod(pod);
        evaluate(&lv, &meta, &spec)
    }

    fn nginx() -> serde_json::Value {
        json!({"metadata": {"name": "nginx"}, "spec": {"containers": [{"name": "nginx", "image": "nginx"}]}})
    }

    #[test]
    fn plain_nginx_at_restricted() {
        let violations = evaluate_json(lv(Level::Restricted, Version::Latest), nginx());
        assert_eq!(
            forbidden_detail(&violations),
            concat!(
                r#"allowPrivilegeEscalation != false (container "nginx" must set securityContext.allowPrivilegeEscalation=false), "#,
                r#"unrestricted capabilities (container "nginx" must set securityContext.capabilities.drop=["ALL"]), "#,
                r#"runAsNonRoot != true (pod or container "nginx" must set securityContext.runAsNonRoot=true), "#,
                r#"seccompProfile (pod or container "nginx" must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost")"#
            )
        );
        assert_eq!(
            forbidden_reason(&violations),
            "allowPrivilegeEscalation != false, unrestricted capabilities, runAsNonRoot != true, seccompProfile"
        );
    }

    #[test]
    fn plain_nginx_passes_baseline_and_privileged() {
        assert!(evaluate_json(lv(Level::Baseline, Version::Latest), nginx()).is_empty());
        assert!(evaluate_json(PRIVILEGED, nginx()).is_empty());
    }

    #[test]
    fn restricted_nginx_passes_restricted() {
        let pod = json!({"spec": {
            "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{"name": "nginx", "securityContext": {
                "allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}}],
            "volumes": [{"name": "cfg", "configMap": {"name": "cfg"}}]}});
        assert!(evaluate_json(lv(Level::Restricted, Version::Latest), pod).is_empty());
    }

    fn host_pod() -> serde_json::Value {
        json!({"spec": {
            "hostNetwork": true,
            "containers": [{"name": "app"}],
            "volumes": [{"name": "host", "hostPath": {"path": "/"}}]}})
    }

    #[test]
    fn host_path_and_host_network_at_baseline() {
        let violations = evaluate_json(lv(Level::Baseline, Version::Latest), host_pod());
        assert_eq!(
            forbidden_detail(&violations),
            r#"host namespaces (hostNetwork=true), hostPath volumes (volume "host")"#
        );
    }

    #[test]
    fn restricted_replaces_host_path_with_restricted_volumes() {
        let violations = evaluate_json(lv(Level::Restricted, Version::Latest), host_pod());
        let reasons: Vec<&str> = violations.iter().map(|v| v.reason.as_str()).collect();
        assert_eq!(
            reasons,
            [
                "host namespaces",
                "allowPrivilegeEscalation != false",
                "unrestricted capabilities",
                "restricted volume types",
                "runAsNonRoot != true",
                "seccompProfile",
            ]
        );
        assert_eq!(
            violations[3].detail,
            r#"volume "host" uses restricted volume type "hostPath""#
        );
    }

    #[test]
    fn old_versions_run_the_checks_of_their_time() {
        let sysctl_pod = json!({"spec": {"securityContext": {"sysctls": [
            {"name": "net.ipv4.tcp_rmem", "value": "4096 87380 16777216"}]}}});
        let at = |version| evaluate_json(lv(Level::Baseline, version), sysctl_pod.clone());
        assert_eq!(at(Version::Latest), []);
        assert_eq!(at(Version::Minor(32)), []);
        assert_eq!(
            forbidden_detail(&at(Version::Minor(31))),
            "forbidden sysctls (net.ipv4.tcp_rmem)"
        );

        let restricted_1_7 = evaluate_json(lv(Level::Restricted, Version::Minor(7)), nginx());
        assert_eq!(
            forbidden_detail(&restricted_1_7),
            r#"runAsNonRoot != true (pod or container "nginx" must set securityContext.runAsNonRoot=true)"#
        );
    }

    #[test]
    fn seccomp_annotations_checked_only_before_1_19() {
        let pod = json!({
            "metadata": {"annotations": {"seccomp.security.alpha.kubernetes.io/pod": "unconfined"}},
            "spec": {"containers": [{"name": "a"}]}});
        let at_1_18 = evaluate_json(lv(Level::Restricted, Version::Minor(18)), pod.clone());
        assert!(at_1_18.contains(&Violation::new(
            "seccompProfile",
            r#"forbidden annotation seccomp.security.alpha.kubernetes.io/pod="unconfined""#
        )));
        assert!(evaluate_json(lv(Level::Baseline, Version::Minor(19)), pod).is_empty());
    }

    #[test]
    fn ephemeral_containers_are_checked_last() {
        let pod = json!({"spec": {
            "initContainers": [{"name": "init", "securityContext": {"privileged": true}}],
            "containers": [{"name": "app", "securityContext": {"privileged": true}}],
            "ephemeralContainers": [{"name": "debug", "securityContext": {"privileged": true}}]}});
        let violations = evaluate_json(lv(Level::Baseline, Version::Latest), pod);
        assert_eq!(
            forbidden_detail(&violations),
            r#"privileged (containers "init", "app", "debug" must not set securityContext.privileged=true)"#
        );
    }

    #[test]
    fn user_namespace_relaxation_is_opt_in() {
        let pod = json!({"spec": {"hostUsers": false,
            "securityContext": {"runAsUser": 0, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{"name": "a", "securityContext": {"procMount": "Unmasked",
                "allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}}]}});
        let restricted = lv(Level::Restricted, Version::Latest);
        let reasons: Vec<String> = evaluate_json(restricted, pod.clone())
            .into_iter()
            .map(|v| v.reason)
            .collect();
        assert_eq!(
            reasons,
            ["procMount", "runAsNonRoot != true", "runAsUser=0"]
        );
        let (meta, spec) = parse_pod(pod);
        let relaxed = EvaluationOptions {
            relax_for_user_namespace_pods: true,
        };
        assert!(evaluate_with_options(&restricted, &meta, &spec, &relaxed).is_empty());
    }

    #[test]
    fn forbidden_detail_formats_like_kubernetes() {
        let violations = [
            Violation::new("host ports", "8080, 9090"),
            Violation::new("privileged containers", ""),
            Violation::new("", "x"),
        ];
        assert_eq!(
            forbidden_detail(&violations),
            "host ports (8080, 9090), privileged containers, unknown forbidden reason (x)"
        );
        assert_eq!(
            forbidden_reason(&violations),
            "host ports, privileged containers, unknown forbidden reason"
        );
        assert_eq!(forbidden_detail(&[]), "");
    }
}
