//! `bpfk describe`: kubectl-style multi-line descriptions of objects.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::cli::DescribeArgs;
use crate::client::{with_query, Ctx};
use crate::discovery::{ResourceInfo, Resources};
use crate::error::{Error, Result};
use crate::get::targets;
use crate::patch::LAST_APPLIED;
use crate::table::age_since;

/// Text being built with tab-separated cells, aligned at the end like kubectl
/// (tabwriter, padding 2). Each level indents by two spaces.
#[derive(Default)]
pub struct Desc {
    text: String,
}

fn indent(level: usize) -> String {
    "  ".repeat(level)
}

impl Desc {
    /// `Label:\tvalue`
    pub fn line(&mut self, level: usize, label: &str, value: impl std::fmt::Display) {
        self.text
            .push_str(&format!("{}{label}:\t{value}\n", indent(level)));
    }

    /// `Label:` on its own line, before nested content.
    pub fn header(&mut self, level: usize, label: &str) {
        self.text.push_str(&format!("{}{label}:\n", indent(level)));
    }

    /// A raw line (may contain tabs).
    pub fn raw(&mut self, level: usize, line: &str) {
        self.text.push_str(&format!("{}{line}\n", indent(level)));
    }

    /// Multi-line `key=value` list (labels, selectors as maps), `<none>` when empty.
    pub fn labels(&mut self, level: usize, label: &str, map: Option<&Value>) {
        self.multiline(level, label, map, "=", &[]);
    }

    /// Multi-line `key: value` list of annotations, hiding last-applied-configuration.
    pub fn annotations(&mut self, level: usize, map: Option<&Value>) {
        self.multiline(level, "Annotations", map, ": ", &[LAST_APPLIED]);
    }

    fn multiline(
        &mut self,
        level: usize,
        label: &str,
        map: Option<&Value>,
        sep: &str,
        skip: &[&str],
    ) {
        let entries: BTreeMap<&str, String> = map
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .filter(|(k, _)| !skip.contains(&k.as_str()))
                    .map(|(k, v)| (k.as_str(), value_text(v)))
                    .collect()
            })
            .unwrap_or_default();
        if entries.is_empty() {
            self.line(level, label, "<none>");
            return;
        }
        for (i, (k, v)) in entries.iter().enumerate() {
            if i == 0 {
                self.line(level, label, format!("{k}{sep}{v}"));
            } else {
                self.text
                    .push_str(&format!("{}\t{k}{sep}{v}\n", indent(level)));
            }
        }
    }

    /// The aligned result.
    pub fn finish(self) -> String {
        crate::tabwriter::align(&self.text, 2)
    }
}

fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn s<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

fn or_none(v: &str) -> &str {
    if v.is_empty() {
        "<none>"
    } else {
        v
    }
}

fn num(v: &Value, pointer: &str) -> i64 {
    v.pointer(pointer).and_then(Value::as_i64).unwrap_or(0)
}

fn arr<'a>(v: &'a Value, pointer: &str) -> &'a [Value] {
    v.pointer(pointer)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// kubectl's time format (RFC 1123 with numeric zone).
pub fn format_time(ts: &str) -> String {
    match DateTime::parse_from_rfc3339(ts) {
        Ok(t) => t.format("%a, %d %b %Y %H:%M:%S %z").to_string(),
        Err(_) => ts.to_string(),
    }
}

/// `app=nginx,tier in (a,b)` from a LabelSelector (or a plain map selector).
pub fn selector_text(sel: Option<&Value>) -> String {
    let Some(sel) = sel else {
        return "<none>".into();
    };
    let mut parts = Vec::new();
    let labels = sel
        .get("matchLabels")
        .or(if sel.get("matchExpressions").is_none() {
            Some(sel)
        } else {
            None
        });
    if let Some(m) = labels.and_then(Value::as_object) {
        let sorted: BTreeMap<_, _> = m.iter().collect();
        for (k, v) in sorted {
            parts.push(format!("{k}={}", value_text(v)));
        }
    }
    for e in arr(sel, "/matchExpressions") {
        let key = s(e, "/key");
        let values: Vec<String> = arr(e, "/values").iter().map(value_text).collect();
        parts.push(match s(e, "/operator") {
            "In" => format!("{key} in ({})", values.join(",")),
            "NotIn" => format!("{key} notin ({})", values.join(",")),
            "Exists" => key.to_string(),
            "DoesNotExist" => format!("!{key}"),
            op => format!("{key} {op} ({})", values.join(",")),
        });
    }
    if parts.is_empty() {
        "<none>".into()
    } else {
        parts.join(",")
    }
}

fn port_text(p: &Value, key: &str) -> String {
    let proto = p.get("protocol").and_then(Value::as_str).unwrap_or("TCP");
    let port = p.get(key).map(value_text).unwrap_or_else(|| "0".into());
    format!("{port}/{proto}")
}

fn describe_metadata(d: &mut Desc, obj: &Value, namespaced: bool) {
    d.line(0, "Name", s(obj, "/metadata/name"));
    if namespaced {
        d.line(0, "Namespace", s(obj, "/metadata/namespace"));
    }
}

fn controlled_by(obj: &Value) -> Option<String> {
    arr(obj, "/metadata/ownerReferences")
        .iter()
        .find(|r| r.get("controller").and_then(Value::as_bool) == Some(true))
        .map(|r| format!("{}/{}", s(r, "/kind"), s(r, "/name")))
}

/// The containers block of a pod or pod template.
fn describe_containers(
    d: &mut Desc,
    level: usize,
    title: &str,
    spec: &Value,
    status: Option<&Value>,
) {
    let containers = arr(spec, "/containers");
    if containers.is_empty() {
        d.line(level, title, "<none>");
        return;
    }
    d.header(level, title);
    for c in containers {
        let name = s(c, "/name");
        let st = status.and_then(|st| {
            arr(st, "/containerStatuses")
                .iter()
                .find(|cs| s(cs, "/name") == name)
        });
        d.header(level + 1, name);
        let l = level + 2;
        if let Some(st) = st {
            d.line(l, "Container ID", s(st, "/containerID"));
        }
        d.line(l, "Image", s(c, "/image"));
        if let Some(st) = st {
            d.line(l, "Image ID", s(st, "/imageID"));
        }
        let ports = arr(c, "/ports");
        match ports.len() {
            0 => {
                d.line(l, "Port", "<none>");
                d.line(l, "Host Port", "<none>");
            }
            1 => {
                d.line(l, "Port", port_text(&ports[0], "containerPort"));
                d.line(l, "Host Port", port_text(&ports[0], "hostPort"));
            }
            _ => {
                let p: Vec<String> = ports
                    .iter()
                    .map(|p| port_text(p, "containerPort"))
                    .collect();
                let h: Vec<String> = ports.iter().map(|p| port_text(p, "hostPort")).collect();
                d.line(l, "Ports", p.join(", "));
                d.line(l, "Host Ports", h.join(", "));
            }
        }
        for (key, label) in [("command", "Command"), ("args", "Args")] {
            let items = arr(c, &format!("/{key}"));
            if !items.is_empty() {
                d.header(l, label);
                for item in items {
                    d.raw(l + 1, &value_text(item));
                }
            }
        }
        if let Some(st) = st {
            describe_state(d, l, "State", st.get("state"));
            if st
                .get("lastState")
                .and_then(Value::as_object)
                .is_some_and(|m| !m.is_empty())
            {
                describe_state(d, l, "Last State", st.get("lastState"));
            }
            let ready = st.get("ready").and_then(Value::as_bool).unwrap_or(false);
            d.line(l, "Ready", if ready { "True" } else { "False" });
            d.line(l, "Restart Count", num(st, "/restartCount"));
        }
        let env = arr(c, "/env");
        if env.is_empty() {
            d.line(l, "Environment", "<none>");
        } else {
            d.header(l, "Environment");
            for e in env {
                let value = match e.get("value") {
                    Some(v) => value_text(v),
                    None if e.get("valueFrom").is_some() => "<set from valueFrom>".into(),
                    None => String::new(),
                };
                d.line(l + 1, s(e, "/name"), value);
            }
        }
        let mounts = arr(c, "/volumeMounts");
        if mounts.is_empty() {
            d.line(l, "Mounts", "<none>");
        } else {
            d.header(l, "Mounts");
            for m in mounts {
                let ro = if m.get("readOnly").and_then(Value::as_bool) == Some(true) {
                    "ro"
                } else {
                    "rw"
                };
                d.raw(
                    l + 1,
                    &format!("{} from {} ({ro})", s(m, "/mountPath"), s(m, "/name")),
                );
            }
        }
    }
}

fn describe_state(d: &mut Desc, level: usize, label: &str, state: Option<&Value>) {
    let Some((kind, detail)) = state
        .and_then(Value::as_object)
        .and_then(|m| m.iter().next())
    else {
        d.line(level, label, "Waiting");
        return;
    };
    let name = match kind.as_str() {
        "running" => "Running",
        "terminated" => "Terminated",
        _ => "Waiting",
    };
    d.line(level, label, name);
    for (key, l) in [
        ("reason", "Reason"),
        ("message", "Message"),
        ("exitCode", "Exit Code"),
    ] {
        if let Some(v) = detail.get(key) {
            d.line(level + 1, l, value_text(v));
        }
    }
    for (key, l) in [("startedAt", "Started"), ("finishedAt", "Finished")] {
        if let Some(v) = detail.get(key).and_then(Value::as_str) {
            d.line(level + 1, l, format_time(v));
        }
    }
}

fn describe_conditions(d: &mut Desc, obj: &Value, with_reason: bool) {
    let conditions = arr(obj, "/status/conditions");
    if conditions.is_empty() {
        return;
    }
    d.header(0, "Conditions");
    if with_reason {
        d.raw(1, "Type\tStatus\tReason");
        d.raw(1, "----\t------\t------");
    } else {
        d.raw(1, "Type\tStatus");
    }
    for c in conditions {
        if with_reason {
            d.raw(
                1,
                &format!(
                    "{}\t{}\t{}",
                    s(c, "/type"),
                    s(c, "/status"),
                    s(c, "/reason")
                ),
            );
        } else {
            d.raw(1, &format!("{}\t{}", s(c, "/type"), s(c, "/status")));
        }
    }
}

fn describe_volumes(d: &mut Desc, level: usize, spec: &Value) {
    let volumes = arr(spec, "/volumes");
    if volumes.is_empty() {
        d.line(level, "Volumes", "<none>");
        return;
    }
    d.header(level, "Volumes");
    for v in volumes {
        d.header(level + 1, s(v, "/name"));
        if let Some((kind, _)) = v
            .as_object()
            .and_then(|m| m.iter().find(|(k, _)| k.as_str() != "name"))
        {
            d.line(level + 2, "Type", kind);
        }
    }
}

fn describe_pod_template(d: &mut Desc, template: &Value) {
    d.header(0, "Pod Template");
    d.labels(1, "Labels", template.pointer("/metadata/labels"));
    let annotations = template.pointer("/metadata/annotations");
    if annotations
        .and_then(Value::as_object)
        .is_some_and(|m| !m.is_empty())
    {
        d.annotations(1, annotations);
    }
    let spec = template.get("spec").cloned().unwrap_or(Value::Null);
    let sa = s(&spec, "/serviceAccountName");
    if !sa.is_empty() {
        d.line(1, "Service Account", sa);
    }
    describe_containers(d, 1, "Containers", &spec, None);
    describe_volumes(d, 1, &spec);
    d.labels(1, "Node-Selectors", spec.get("nodeSelector"));
    describe_tolerations(d, 1, &spec);
}

fn qos_class(pod: &Value) -> String {
    let q = s(pod, "/status/qosClass");
    if !q.is_empty() {
        return q.to_string();
    }
    let containers = arr(pod, "/spec/containers");
    let has_any = containers.iter().any(|c| {
        ["requests", "limits"].iter().any(|k| {
            c.pointer(&format!("/resources/{k}"))
                .and_then(Value::as_object)
                .is_some_and(|m| !m.is_empty())
        })
    });
    if has_any { "Burstable" } else { "BestEffort" }.to_string()
}

fn describe_pod(d: &mut Desc, pod: &Value) {
    describe_metadata(d, pod, true);
    if let Some(p) = pod.pointer("/spec/priority").and_then(Value::as_i64) {
        d.line(0, "Priority", p);
    }
    let pc = s(pod, "/spec/priorityClassName");
    if !pc.is_empty() {
        d.line(0, "Priority Class Name", pc);
    }
    let sa = s(pod, "/spec/serviceAccountName");
    if !sa.is_empty() {
        d.line(0, "Service Account", sa);
    }
    let node = s(pod, "/spec/nodeName");
    let host_ip = s(pod, "/status/hostIP");
    d.line(
        0,
        "Node",
        match (node.is_empty(), host_ip.is_empty()) {
            (true, _) => "<none>".to_string(),
            (false, true) => node.to_string(),
            (false, false) => format!("{node}/{host_ip}"),
        },
    );
    let start = s(pod, "/status/startTime");
    if !start.is_empty() {
        d.line(0, "Start Time", format_time(start));
    }
    d.labels(0, "Labels", pod.pointer("/metadata/labels"));
    d.annotations(0, pod.pointer("/metadata/annotations"));
    let phase = s(pod, "/status/phase");
    if pod.pointer("/metadata/deletionTimestamp").is_some() {
        d.line(0, "Status", "Terminating");
    } else {
        d.line(0, "Status", or_none(phase));
    }
    let reason = s(pod, "/status/reason");
    if !reason.is_empty() {
        d.line(0, "Reason", reason);
    }
    d.line(0, "IP", s(pod, "/status/podIP"));
    let ips = arr(pod, "/status/podIPs");
    if ips.is_empty() {
        d.line(0, "IPs", "<none>");
    } else {
        d.header(0, "IPs");
        for ip in ips {
            d.line(1, "IP", s(ip, "/ip"));
        }
    }
    if let Some(c) = controlled_by(pod) {
        d.line(0, "Controlled By", c);
    }
    let spec = pod.get("spec").cloned().unwrap_or(Value::Null);
    if !arr(&spec, "/initContainers").is_empty() {
        let init_spec = serde_json::json!({"containers": spec.get("initContainers")});
        describe_containers(d, 0, "Init Containers", &init_spec, None);
    }
    describe_containers(d, 0, "Containers", &spec, pod.get("status"));
    describe_conditions(d, pod, false);
    describe_volumes(d, 0, &spec);
    d.line(0, "QoS Class", qos_class(pod));
    d.labels(0, "Node-Selectors", spec.get("nodeSelector"));
    describe_tolerations(d, 0, &spec);
}

fn describe_tolerations(d: &mut Desc, level: usize, spec: &Value) {
    let tolerations = arr(spec, "/tolerations");
    if tolerations.is_empty() {
        d.line(level, "Tolerations", "<none>");
        return;
    }
    for (i, t) in tolerations.iter().enumerate() {
        let mut text = s(t, "/key").to_string();
        let value = s(t, "/value");
        if !value.is_empty() {
            text.push('=');
            text.push_str(value);
        }
        let effect = s(t, "/effect");
        if !effect.is_empty() {
            text.push(':');
            text.push_str(effect);
        }
        if s(t, "/operator") == "Exists" && text.is_empty() {
            text = "op=Exists".into();
        }
        if let Some(secs) = t.get("tolerationSeconds").and_then(Value::as_i64) {
            text.push_str(&format!(" for {secs}s"));
        }
        if i == 0 {
            d.line(level, "Tolerations", text);
        } else {
            d.raw(level, &format!("\t{text}"));
        }
    }
}

fn replicaset_is_new(rs: &Value, deployment: &Value) -> bool {
    let strip = |t: Option<&Value>| {
        let mut t = t.cloned().unwrap_or(Value::Null);
        if let Some(labels) = t
            .pointer_mut("/metadata/labels")
            .and_then(Value::as_object_mut)
        {
            labels.remove("pod-template-hash");
        }
        t
    };
    strip(rs.pointer("/spec/template")) == strip(deployment.pointer("/spec/template"))
}

fn rs_summary(rs: &Value) -> String {
    format!(
        "{} ({}/{} replicas created)",
        s(rs, "/metadata/name"),
        num(rs, "/status/replicas"),
        num(rs, "/spec/replicas")
    )
}

async fn describe_deployment(ctx: &Ctx, resources: &Resources, d: &mut Desc, deploy: &Value) {
    describe_metadata(d, deploy, true);
    d.line(
        0,
        "CreationTimestamp",
        format_time(s(deploy, "/metadata/creationTimestamp")),
    );
    d.labels(0, "Labels", deploy.pointer("/metadata/labels"));
    d.annotations(0, deploy.pointer("/metadata/annotations"));
    d.line(
        0,
        "Selector",
        selector_text(deploy.pointer("/spec/selector")),
    );
    d.line(
        0,
        "Replicas",
        format!(
            "{} desired | {} updated | {} total | {} available | {} unavailable",
            deploy
                .pointer("/spec/replicas")
                .and_then(Value::as_i64)
                .unwrap_or(1),
            num(deploy, "/status/updatedReplicas"),
            num(deploy, "/status/replicas"),
            num(deploy, "/status/availableReplicas"),
            num(deploy, "/status/unavailableReplicas"),
        ),
    );
    let strategy = s(deploy, "/spec/strategy/type");
    d.line(0, "StrategyType", or_none(strategy));
    d.line(0, "MinReadySeconds", num(deploy, "/spec/minReadySeconds"));
    if let Some(ru) = deploy.pointer("/spec/strategy/rollingUpdate") {
        d.line(
            0,
            "RollingUpdateStrategy",
            format!(
                "{} max unavailable, {} max surge",
                ru.get("maxUnavailable").map(value_text).unwrap_or_default(),
                ru.get("maxSurge").map(value_text).unwrap_or_default()
            ),
        );
    }
    describe_pod_template(d, deploy.pointer("/spec/template").unwrap_or(&Value::Null));
    describe_conditions(d, deploy, true);
    let (mut old, mut new) = (Vec::new(), None);
    if let Ok(rs_info) = resources.resolve("replicasets.apps") {
        let uid = s(deploy, "/metadata/uid");
        let uri = with_query(
            &rs_info.collection_path(Some(s(deploy, "/metadata/namespace"))),
            &[(
                "labelSelector",
                label_selector_query(deploy.pointer("/spec/selector")),
            )],
        );
        if let Ok(list) = ctx.get_json(&uri, None).await {
            for rs in arr(&list, "/items") {
                let owned = arr(rs, "/metadata/ownerReferences")
                    .iter()
                    .any(|r| s(r, "/uid") == uid && !uid.is_empty());
                if !owned {
                    continue;
                }
                if new.is_none() && replicaset_is_new(rs, deploy) {
                    new = Some(rs_summary(rs));
                } else if num(rs, "/spec/replicas") > 0 || num(rs, "/status/replicas") > 0 {
                    old.push(rs_summary(rs));
                }
            }
        }
    }
    d.line(
        0,
        "OldReplicaSets",
        if old.is_empty() {
            "<none>".into()
        } else {
            old.join(", ")
        },
    );
    d.line(0, "NewReplicaSet", new.unwrap_or_else(|| "<none>".into()));
}

/// A `labelSelector` query value for matchLabels (expressions as in kubectl's syntax).
fn label_selector_query(sel: Option<&Value>) -> String {
    let text = selector_text(sel);
    if text == "<none>" {
        String::new()
    } else {
        text
    }
}

async fn describe_replicaset(ctx: &Ctx, resources: &Resources, d: &mut Desc, rs: &Value) {
    describe_metadata(d, rs, true);
    d.line(0, "Selector", selector_text(rs.pointer("/spec/selector")));
    d.labels(0, "Labels", rs.pointer("/metadata/labels"));
    d.annotations(0, rs.pointer("/metadata/annotations"));
    if let Some(c) = controlled_by(rs) {
        d.line(0, "Controlled By", c);
    }
    d.line(
        0,
        "Replicas",
        format!(
            "{} current / {} desired",
            num(rs, "/status/replicas"),
            rs.pointer("/spec/replicas")
                .and_then(Value::as_i64)
                .unwrap_or(1)
        ),
    );
    let mut counts = BTreeMap::new();
    if let Ok(pods) = resources.resolve("pods") {
        let uri = with_query(
            &pods.collection_path(Some(s(rs, "/metadata/namespace"))),
            &[(
                "labelSelector",
                label_selector_query(rs.pointer("/spec/selector")),
            )],
        );
        if let Ok(list) = ctx.get_json(&uri, None).await {
            let uid = s(rs, "/metadata/uid");
            for p in arr(&list, "/items") {
                if arr(p, "/metadata/ownerReferences")
                    .iter()
                    .any(|r| s(r, "/uid") == uid)
                {
                    *counts.entry(s(p, "/status/phase").to_string()).or_insert(0) += 1;
                }
            }
        }
    }
    let c = |k: &str| counts.get(k).copied().unwrap_or(0);
    d.line(
        0,
        "Pods Status",
        format!(
            "{} Running / {} Waiting / {} Succeeded / {} Failed",
            c("Running"),
            c("Pending"),
            c("Succeeded"),
            c("Failed")
        ),
    );
    describe_pod_template(d, rs.pointer("/spec/template").unwrap_or(&Value::Null));
    describe_conditions(d, rs, true);
}

async fn describe_service(ctx: &Ctx, resources: &Resources, d: &mut Desc, svc: &Value) {
    describe_metadata(d, svc, true);
    d.labels(0, "Labels", svc.pointer("/metadata/labels"));
    d.annotations(0, svc.pointer("/metadata/annotations"));
    d.line(0, "Selector", selector_text(svc.pointer("/spec/selector")));
    d.line(0, "Type", or_none(s(svc, "/spec/type")));
    let policy = s(svc, "/spec/ipFamilyPolicy");
    if !policy.is_empty() {
        d.line(0, "IP Family Policy", policy);
    }
    let families: Vec<String> = arr(svc, "/spec/ipFamilies")
        .iter()
        .map(value_text)
        .collect();
    if !families.is_empty() {
        d.line(0, "IP Families", families.join(","));
    }
    d.line(0, "IP", or_none(s(svc, "/spec/clusterIP")));
    let ips: Vec<String> = arr(svc, "/spec/clusterIPs")
        .iter()
        .map(value_text)
        .collect();
    if !ips.is_empty() {
        d.line(0, "IPs", ips.join(","));
    }
    // Endpoints with the same name as the service.
    let mut endpoints: BTreeMap<String, Vec<String>> = BTreeMap::new();
    if let Ok(ep) = resources.resolve("endpoints") {
        let path = ep.object_path(
            Some(s(svc, "/metadata/namespace")),
            s(svc, "/metadata/name"),
        );
        if let Ok(obj) = ctx.get_json(&path, None).await {
            for subset in arr(&obj, "/subsets") {
                for port in arr(subset, "/ports") {
                    let key = s(port, "/name").to_string();
                    for a in arr(subset, "/addresses") {
                        endpoints.entry(key.clone()).or_default().push(format!(
                            "{}:{}",
                            s(a, "/ip"),
                            num(port, "/port")
                        ));
                    }
                }
            }
        }
    }
    for p in arr(svc, "/spec/ports") {
        let name = s(p, "/name");
        d.line(
            0,
            "Port",
            format!(
                "{}  {}",
                if name.is_empty() { "<unset>" } else { name },
                port_text(p, "port")
            ),
        );
        let target = p.get("targetPort").map(value_text).unwrap_or_default();
        let proto = p.get("protocol").and_then(Value::as_str).unwrap_or("TCP");
        d.line(0, "TargetPort", format!("{}/{proto}", or_none(&target)));
        if let Some(np) = p.get("nodePort") {
            d.line(
                0,
                "NodePort",
                format!(
                    "{}  {}/{proto}",
                    if name.is_empty() { "<unset>" } else { name },
                    value_text(np)
                ),
            );
        }
        let eps = endpoints.get(name).map(|v| v.join(",")).unwrap_or_default();
        d.line(0, "Endpoints", or_none(&eps));
    }
    d.line(
        0,
        "Session Affinity",
        or_none(s(svc, "/spec/sessionAffinity")),
    );
    let itp = s(svc, "/spec/internalTrafficPolicy");
    if !itp.is_empty() {
        d.line(0, "Internal Traffic Policy", itp);
    }
}

fn describe_generic_value(d: &mut Desc, level: usize, key: &str, v: &Value) {
    let label = {
        let mut c = key.chars();
        match c.next() {
            Some(f) => f.to_uppercase().chain(c).collect::<String>(),
            None => String::new(),
        }
    };
    match v {
        Value::Object(m) if m.is_empty() => d.line(level, &label, "<none>"),
        Value::Object(m) => {
            d.header(level, &label);
            for (k, v) in m {
                describe_generic_value(d, level + 1, k, v);
            }
        }
        Value::Array(a) if a.is_empty() => d.line(level, &label, "<none>"),
        Value::Array(a) if a.iter().all(|x| !x.is_object() && !x.is_array()) => {
            let items: Vec<String> = a.iter().map(value_text).collect();
            d.line(level, &label, items.join(", "));
        }
        Value::Array(a) => {
            d.header(level, &label);
            for item in a {
                match item {
                    Value::Object(m) => {
                        for (k, v) in m {
                            describe_generic_value(d, level + 1, k, v);
                        }
                    }
                    other => d.raw(level + 1, &value_text(other)),
                }
            }
        }
        other => d.line(level, &label, value_text(other)),
    }
}

fn describe_generic(d: &mut Desc, info: &ResourceInfo, obj: &Value) {
    describe_metadata(d, obj, info.namespaced);
    d.labels(0, "Labels", obj.pointer("/metadata/labels"));
    d.annotations(0, obj.pointer("/metadata/annotations"));
    if info.kind == "Namespace" {
        d.line(0, "Status", or_none(s(obj, "/status/phase")));
        return;
    }
    if let Some(m) = obj.as_object() {
        for (k, v) in m {
            if matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
                continue;
            }
            describe_generic_value(d, 0, k, v);
        }
    }
}

async fn describe_events(ctx: &Ctx, resources: &Resources, d: &mut Desc, obj: &Value) {
    let Ok(events) = resources.resolve("events") else {
        return;
    };
    let ns = s(obj, "/metadata/namespace");
    let mut selector = vec![format!("involvedObject.name={}", s(obj, "/metadata/name"))];
    if !ns.is_empty() {
        selector.push(format!("involvedObject.namespace={ns}"));
    }
    let uid = s(obj, "/metadata/uid");
    if !uid.is_empty() {
        selector.push(format!("involvedObject.uid={uid}"));
    }
    let ns_for_events = if ns.is_empty() { None } else { Some(ns) };
    let uri = with_query(
        &events.collection_path(ns_for_events),
        &[("fieldSelector", selector.join(","))],
    );
    let list = match ctx.get_json(&uri, None).await {
        Ok(l) => l,
        Err(e) => {
            // A server without involvedObject field selectors: filter here instead.
            tracing::debug!("listing events by field selector failed: {}", e.report());
            let all = ctx
                .get_json(&events.collection_path(ns_for_events), None)
                .await
                .unwrap_or(Value::Null);
            let name = s(obj, "/metadata/name");
            let items: Vec<Value> = arr(&all, "/items")
                .iter()
                .filter(|e| {
                    s(e, "/involvedObject/name") == name
                        && (uid.is_empty() || s(e, "/involvedObject/uid") == uid)
                })
                .cloned()
                .collect();
            serde_json::json!({ "items": items })
        }
    };
    let mut items: Vec<&Value> = arr(&list, "/items").iter().collect();
    if items.is_empty() {
        d.line(0, "Events", "<none>");
        return;
    }
    let when = |e: &Value| -> String {
        [
            s(e, "/lastTimestamp"),
            s(e, "/eventTime"),
            s(e, "/firstTimestamp"),
        ]
        .into_iter()
        .find(|t| !t.is_empty())
        .unwrap_or("")
        .to_string()
    };
    items.sort_by_key(|e| when(e));
    let now = Utc::now();
    d.header(0, "Events");
    d.raw(1, "Type\tReason\tAge\tFrom\tMessage");
    d.raw(1, "----\t------\t----\t----\t-------");
    for e in items {
        let last = when(e);
        let mut age = if last.is_empty() {
            "<unknown>".to_string()
        } else {
            age_since(&last, now)
        };
        let count = num(e, "/count");
        let first = s(e, "/firstTimestamp");
        if count > 1 && !first.is_empty() {
            age = format!("{age} (x{count} over {})", age_since(first, now));
        }
        let mut from = s(e, "/source/component").to_string();
        if from.is_empty() {
            from = s(e, "/reportingComponent").to_string();
        }
        let host = s(e, "/source/host");
        if !host.is_empty() {
            from = format!("{from}, {host}");
        }
        d.raw(
            1,
            &format!(
                "{}\t{}\t{age}\t{from}\t{}",
                s(e, "/type"),
                s(e, "/reason"),
                s(e, "/message").trim()
            ),
        );
    }
}

/// The full description of one object.
pub async fn describe_object(
    ctx: &Ctx,
    resources: &Resources,
    info: &ResourceInfo,
    obj: &Value,
) -> String {
    let mut d = Desc::default();
    match (info.group.as_str(), info.kind.as_str()) {
        ("", "Pod") => describe_pod(&mut d, obj),
        ("apps", "Deployment") => describe_deployment(ctx, resources, &mut d, obj).await,
        ("apps", "ReplicaSet") => describe_replicaset(ctx, resources, &mut d, obj).await,
        ("", "Service") => describe_service(ctx, resources, &mut d, obj).await,
        _ => describe_generic(&mut d, info, obj),
    }
    describe_events(ctx, resources, &mut d, obj).await;
    d.finish()
}

pub async fn run(ctx: &Ctx, resources: &Resources, args: &DescribeArgs) -> Result<()> {
    let mut objects = Vec::new();
    let mut failures = 0;
    for (kind, names) in targets(&args.kind, &args.names)? {
        let info = resources.resolve(&kind)?;
        let ns = info.namespaced.then_some(ctx.namespace.as_str());
        if names.is_empty() {
            let uri = with_query(
                &info.collection_path(ns),
                &[("labelSelector", args.selector.clone().unwrap_or_default())],
            );
            let list = ctx.get_json(&uri, None).await?;
            let items = arr(&list, "/items");
            if items.is_empty() {
                eprintln!("{}", crate::get::no_resources_message(ns));
            }
            objects.extend(items.iter().map(|o| (info, o.clone())));
        } else {
            for name in &names {
                match ctx.get_json(&info.object_path(ns, name), None).await {
                    Ok(o) => objects.push((info, o)),
                    Err(e) => {
                        eprintln!("{}", e.report());
                        failures += 1;
                    }
                }
            }
        }
    }
    for (i, (info, obj)) in objects.iter().enumerate() {
        if i > 0 {
            println!();
            println!();
        }
        print!("{}", describe_object(ctx, resources, info, obj).await);
    }
    if failures > 0 {
        return Err(Error::Reported(failures));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pod_description_is_aligned_like_kubectl() {
        let pod = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "nginx", "namespace": "default", "uid": "u1",
                         "labels": {"app": "nginx", "tier": "web"},
                         "annotations": {LAST_APPLIED: "{}", "note": "x"}},
            "spec": {"containers": [{"name": "nginx", "image": "nginx:1.14.2",
                                      "ports": [{"containerPort": 80, "protocol": "TCP"}]}]},
            "status": {"phase": "Pending"}
        });
        let mut d = Desc::default();
        describe_pod(&mut d, &pod);
        let text = d.finish();
        let expected = "\
Name:         nginx
Namespace:    default
Node:         <none>
Labels:       app=nginx
              tier=web
Annotations:  note: x
Status:       Pending
IP:           
IPs:          <none>
Containers:
  nginx:
    Image:        nginx:1.14.2
    Port:         80/TCP
    Host Port:    0/TCP
    Environment:  <none>
    Mounts:       <none>
Volumes:          <none>
QoS Class:        BestEffort
Node-Selectors:   <none>
Tolerations:      <none>
";
        assert_eq!(text, expected);
    }

    #[test]
    fn selectors_print_like_kubectl() {
        assert_eq!(
            selector_text(Some(&json!({"matchLabels": {"b": "2", "a": "1"}}))),
            "a=1,b=2"
        );
        assert_eq!(
            selector_text(Some(&json!({"matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["a", "b"]},
                {"key": "x", "operator": "DoesNotExist"}
            ]}))),
            "tier in (a,b),!x"
        );
        assert_eq!(selector_text(Some(&json!({"app": "nginx"}))), "app=nginx");
        assert_eq!(selector_text(None), "<none>");
    }

    #[test]
    fn new_replicaset_ignores_the_template_hash() {
        let deploy = json!({"spec": {"template": {"metadata": {"labels": {"app": "nginx"}}, "spec": {"containers": []}}}});
        let rs = json!({"spec": {"template": {"metadata": {"labels": {"app": "nginx", "pod-template-hash": "abc"}}, "spec": {"containers": []}}}});
        assert!(replicaset_is_new(&rs, &deploy));
        let other = json!({"spec": {"template": {"metadata": {"labels": {"app": "web"}}}}});
        assert!(!replicaset_is_new(&other, &deploy));
    }

    #[test]
    fn times_use_rfc1123z() {
        assert_eq!(
            format_time("2026-11-27T08:41:18Z"),
            "Fri, 27 Nov 2026 08:41:18 +0000"
        );
    }
}
