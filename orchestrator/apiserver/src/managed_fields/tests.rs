use bpfk_apimachinery::registry::{self, ResourceInfo};
use serde_json::{json, Value};

use super::*;

const T1: &str = "2026-12-07T10:00:00Z";
const T2: &str = "2026-12-07T11:00:00Z";

fn deployments() -> &'static ResourceInfo {
    registry::find("apps", "v1", "deployments").expect("deployments are served")
}

fn nginx(replicas: i64, image: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "nginx", "labels": {"app": "nginx"}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "nginx"}},
            "template": {
                "metadata": {"labels": {"app": "nginx"}},
                "spec": {"containers": [{"name": "nginx", "image": image, "ports": [{"containerPort": 80}]}]},
            },
        },
    })
}

fn request<'a>(manager: &'a str, force: bool, now: &'a str) -> ApplyRequest<'a> {
    ApplyRequest {
        manager,
        subresource: "",
        force,
        now,
    }
}

/// An apply at T2 to a Deployment.
fn apply_as(
    manager: &str,
    force: bool,
    live: Option<&Value>,
    config: &Value,
) -> Result<Value, ApplyError> {
    apply(deployments(), &request(manager, force, T2), live, config)
}

fn entry<'v>(obj: &'v Value, manager: &str) -> &'v Value {
    obj["metadata"]["managedFields"]
        .as_array()
        .and_then(|l| l.iter().find(|e| e["manager"] == manager))
        .unwrap_or_else(|| panic!("no entry of {manager} in {obj:#}"))
}

#[test]
fn an_applied_configuration_owns_its_leaves_items_and_free_map_keys() {
    let applied = apply(
        deployments(),
        &request("kubectl", false, T1),
        None,
        &nginx(2, "nginx:1.27"),
    )
    .unwrap();
    let e = entry(&applied, "kubectl");
    assert_eq!(
        (
            e["operation"].as_str(),
            e["apiVersion"].as_str(),
            e["time"].as_str()
        ),
        (Some("Apply"), Some("apps/v1"), Some(T1))
    );
    // as kube-apiserver writes it for this manifest: the selector is atomic, ports are keyed
    // by port and protocol (TCP when left out), identity fields are nobody's
    let expected = json!({
        "f:metadata": {"f:labels": {"f:app": {}}},
        "f:spec": {
            "f:replicas": {},
            "f:selector": {},
            "f:template": {
                "f:metadata": {"f:labels": {"f:app": {}}},
                "f:spec": {"f:containers": {"k:{\"name\":\"nginx\"}": {
                    ".": {}, "f:image": {}, "f:name": {},
                    "f:ports": {"k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {".": {}, "f:containerPort": {}}},
                }}},
            },
        },
    });
    assert_eq!(e["fieldsV1"], expected);
    assert_eq!(applied["spec"], nginx(2, "nginx:1.27")["spec"]);
}

/// A Deployment as `kubectl create`/client-side apply leaves it: created by an update.
fn created_by_update(manager: &str) -> Value {
    let mut obj = nginx(2, "nginx:1.27");
    obj["spec"]["strategy"] = json!({"type": "RollingUpdate"});
    obj["metadata"]["uid"] = json!("u-1");
    track_update(deployments(), "", manager, None, &mut obj, T1).unwrap();
    obj
}

#[test]
fn an_update_owns_what_it_sets_and_takes_it_from_others() {
    let created = created_by_update("kubectl-client-side-apply");
    let fields = &entry(&created, "kubectl-client-side-apply")["fieldsV1"];
    assert_eq!(
        entry(&created, "kubectl-client-side-apply")["operation"],
        "Update"
    );
    assert_eq!(fields["f:spec"]["f:strategy"], json!({"f:type": {}}));
    assert!(fields["f:metadata"].get("f:uid").is_none(), "{fields:#}");
    // labels were added whole: the map itself is owned too
    assert_eq!(
        fields["f:metadata"]["f:labels"],
        json!({".": {}, "f:app": {}})
    );

    let mut scaled = created.clone();
    scaled["spec"]["replicas"] = json!(5);
    track_update(
        deployments(),
        "",
        "kubectl-scale",
        Some(&created),
        &mut scaled,
        T2,
    )
    .unwrap();
    assert_eq!(
        entry(&scaled, "kubectl-scale")["fieldsV1"],
        json!({"f:spec": {"f:replicas": {}}})
    );
    let csa = &entry(&scaled, "kubectl-client-side-apply")["fieldsV1"];
    assert!(csa["f:spec"].get("f:replicas").is_none(), "{csa:#}");
    assert_eq!(entry(&scaled, "kubectl-client-side-apply")["time"], T1);

    // an update that changes nothing changes no entry
    let mut same = scaled.clone();
    track_update(
        deployments(),
        "",
        "kubectl-edit",
        Some(&scaled),
        &mut same,
        T2,
    )
    .unwrap();
    assert_eq!(same, scaled);
}

#[test]
fn applying_the_same_values_shares_ownership_and_changing_them_conflicts() {
    let live = created_by_update("kubectl-client-side-apply");
    let same = apply_as("kubectl", false, Some(&live), &nginx(2, "nginx:1.27")).unwrap();
    assert_eq!(
        entry(&same, "kubectl")["fieldsV1"]["f:spec"]["f:replicas"],
        json!({})
    );
    assert_eq!(
        entry(&same, "kubectl-client-side-apply")["fieldsV1"]["f:spec"]["f:replicas"],
        json!({})
    );

    let err = apply_as("kubectl", false, Some(&same), &nginx(3, "nginx:1.28")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "Apply failed with 2 conflicts: conflicts with \"kubectl-client-side-apply\" using apps/v1:\n\
         - .spec.replicas\n- .spec.template.spec.containers[name=\"nginx\"].image"
    );
    let ApplyError::Conflicts(conflicts) = err else {
        panic!()
    };
    assert_eq!(conflicts[0].field, ".spec.replicas");

    let forced = apply_as("kubectl", true, Some(&same), &nginx(3, "nginx:1.28")).unwrap();
    assert_eq!(forced["spec"]["replicas"], 3);
    let csa = &entry(&forced, "kubectl-client-side-apply")["fieldsV1"];
    assert!(csa["f:spec"].get("f:replicas").is_none(), "{csa:#}");
    assert_eq!(csa["f:spec"]["f:strategy"], json!({"f:type": {}}));
}

#[test]
fn one_conflict_is_worded_on_one_line() {
    let live = created_by_update("kubectl-client-side-apply");
    let err = apply_as("kubectl", false, Some(&live), &nginx(4, "nginx:1.27")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "Apply failed with 1 conflict: conflict with \"kubectl-client-side-apply\" using apps/v1: .spec.replicas"
    );
}

#[test]
fn what_an_applier_stops_applying_goes_unless_another_manager_owns_it() {
    let mut first = nginx(2, "nginx:1.27");
    first["metadata"]["labels"]["team"] = json!("web");
    first["spec"]["template"]["spec"]["containers"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "sidecar", "image": "busybox"}));
    let live = apply(deployments(), &request("kubectl", false, T1), None, &first).unwrap();
    // another manager sets the sidecar's command
    let mut edited = live.clone();
    edited["spec"]["template"]["spec"]["containers"][1]["command"] = json!(["sleep", "1d"]);
    track_update(
        deployments(),
        "",
        "kubectl-edit",
        Some(&live),
        &mut edited,
        T1,
    )
    .unwrap();

    let next = apply_as("kubectl", false, Some(&edited), &nginx(2, "nginx:1.27")).unwrap();
    assert_eq!(next["metadata"]["labels"], json!({"app": "nginx"}));
    let containers = &next["spec"]["template"]["spec"]["containers"];
    // the sidecar stays (its command is kubectl-edit's) with its name, without the image
    assert_eq!(
        containers[1],
        json!({"name": "sidecar", "command": ["sleep", "1d"]})
    );

    let alone = apply_as("kubectl", false, Some(&live), &nginx(2, "nginx:1.27")).unwrap();
    assert_eq!(
        alone["spec"]["template"]["spec"]["containers"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
}

#[test]
fn an_object_without_managed_fields_was_owned_before_the_first_apply() {
    let mut live = nginx(2, "nginx:1.27");
    live["metadata"]["uid"] = json!("u-1");
    let err = apply(
        deployments(),
        &request("kubectl", false, T1),
        Some(&live),
        &nginx(3, "nginx:1.27"),
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("\"before-first-apply\" using apps/v1: .spec.replicas"),
        "{err}"
    );
}

#[test]
fn keyed_items_merge_in_the_configurations_order() {
    let ty = types::Type::root(deployments());
    let c = |n: &str| json!({"name": n, "image": format!("{n}:1")});
    let live = json!({"spec": {"template": {"spec": {"containers": [c("a"), c("b"), c("c")]}}}});
    let config = json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "c:2"}, {"name": "a"}]}}}});
    let merged = walk::merge(&live, &config, &ty).unwrap();
    let names: Vec<&str> = merged["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["b", "c", "a"]);
    assert_eq!(
        merged["spec"]["template"]["spec"]["containers"][1]["image"],
        "c:2"
    );
    assert_eq!(
        merged["spec"]["template"]["spec"]["containers"][2]["image"],
        "a:1"
    );
}

#[test]
fn finalizers_are_a_set_and_atomic_lists_are_replaced() {
    let ty = types::Type::root(deployments());
    let live = json!({"metadata": {"finalizers": ["a", "b"]}, "spec": {"template": {"spec": {"containers": [{"name": "x", "args": ["1", "2"]}]}}}});
    let config = json!({"metadata": {"finalizers": ["c"]}, "spec": {"template": {"spec": {"containers": [{"name": "x", "args": ["3"]}]}}}});
    let merged = walk::merge(&live, &config, &ty).unwrap();
    assert_eq!(merged["metadata"]["finalizers"], json!(["a", "b", "c"]));
    assert_eq!(
        merged["spec"]["template"]["spec"]["containers"][0]["args"],
        json!(["3"])
    );
    let set = walk::field_set(&config, &ty).unwrap().to_fields_v1();
    assert_eq!(set["f:metadata"]["f:finalizers"], json!({"v:\"c\"": {}}));
    assert_eq!(
        set["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"x\"}"]["f:args"],
        json!({})
    );
}

#[test]
fn a_configuration_whose_items_lack_their_keys_is_refused_naming_the_field() {
    let mut config = nginx(1, "nginx");
    config["spec"]["template"]["spec"]["containers"][0]["ports"] = json!([{"name": "http"}]);
    let err = apply(deployments(), &request("kubectl", false, T1), None, &config).unwrap_err();
    assert_eq!(
        err.to_string(),
        ".spec.template.spec.containers[name=\"nginx\"].ports[0]: associative list with keys has an element that omits key field \"containerPort\""
    );
    let mut twice = nginx(1, "nginx");
    twice["spec"]["template"]["spec"]["containers"] = json!([{"name": "a"}, {"name": "a"}]);
    let err = apply(deployments(), &request("kubectl", false, T1), None, &twice).unwrap_err();
    assert!(
        err.to_string()
            .contains("duplicate entries for key [name=\"a\"]"),
        "{err}"
    );
}

#[test]
fn the_status_is_owned_only_through_the_status_subresource() {
    let mut config = nginx(1, "nginx");
    config["status"] = json!({"replicas": 1});
    let main = apply(deployments(), &request("kubectl", false, T1), None, &config).unwrap();
    assert!(entry(&main, "kubectl")["fieldsV1"]
        .get("f:status")
        .is_none());
    let req = ApplyRequest {
        subresource: "status",
        ..request("controller", false, T1)
    };
    let status = apply(deployments(), &req, Some(&main), &json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "nginx"}, "status": {"replicas": 1}})).unwrap();
    let e = entry(&status, "controller");
    assert_eq!(
        (&e["subresource"], &e["fieldsV1"]),
        (&json!("status"), &json!({"f:status": {"f:replicas": {}}}))
    );
}

#[test]
fn fields_v1_reads_back_what_it_writes_and_names_what_is_wrong() {
    let doc = json!({"f:metadata": {"f:labels": {".": {}, "f:a": {}}}, "f:spec": {"f:list": {"k:{\"port\":80,\"name\":\"x\"}": {}, "v:\"s\"": {}, "i:3": {}}}});
    let set = FieldSet::from_fields_v1(&doc).unwrap();
    let canonical = json!({"f:metadata": {"f:labels": {".": {}, "f:a": {}}}, "f:spec": {"f:list": {"k:{\"name\":\"x\",\"port\":80}": {}, "v:\"s\"": {}, "i:3": {}}}});
    assert_eq!(set.to_fields_v1(), canonical);
    let err = FieldSet::from_fields_v1(&json!({"f:spec": {"x:1": {}}})).unwrap_err();
    assert!(
        err.starts_with("f:spec: \"x:1\" is not a path element"),
        "{err}"
    );
    let deep = (0..100).fold(json!({}), |inner, _| json!({"f:a": inner}));
    assert!(FieldSet::from_fields_v1(&deep)
        .unwrap_err()
        .contains("nests deeper than 64"));
}

#[test]
fn a_request_may_rewrite_or_clear_the_managed_fields() {
    let created = created_by_update("kubectl-client-side-apply");
    let mut cleared = created.clone();
    cleared["metadata"]["managedFields"] = json!([{}]);
    track_update(
        deployments(),
        "",
        "kubectl",
        Some(&created),
        &mut cleared,
        T2,
    )
    .unwrap();
    assert!(
        cleared["metadata"].get("managedFields").is_none(),
        "{cleared:#}"
    );

    let mut renamed = created.clone();
    renamed["metadata"]["managedFields"][0]["manager"] = json!("kubectl");
    renamed["metadata"]["managedFields"][0]["operation"] = json!("Apply");
    track_update(
        deployments(),
        "",
        "kubectl",
        Some(&created),
        &mut renamed,
        T2,
    )
    .unwrap();
    assert_eq!(entry(&renamed, "kubectl")["operation"], "Apply");
}

#[test]
fn at_most_ten_update_entries_are_kept() {
    let mut obj = created_by_update("m0");
    for i in 1..=12 {
        let mut next = obj.clone();
        next["metadata"]["labels"][format!("l{i}")] = json!("x");
        track_update(
            deployments(),
            "",
            &format!("m{i}"),
            Some(&obj),
            &mut next,
            &format!("2026-12-07T10:{i:02}:00Z"),
        )
        .unwrap();
        obj = next;
    }
    let entries = obj["metadata"]["managedFields"].as_array().unwrap();
    assert_eq!(entries.len(), 10);
    let ancient = entry(&obj, "ancient-changes");
    assert!(
        ancient["fieldsV1"]["f:spec"].get("f:replicas").is_some(),
        "{ancient:#}"
    );
    assert_eq!(entries.last().unwrap()["manager"], "m12");
}

#[test]
fn the_manager_defaults_to_the_user_agent_product() {
    assert_eq!(
        manager_from_user_agent(Some("kubectl/v1.32.0 (linux/amd64) kubernetes/abc")),
        "kubectl"
    );
    assert_eq!(
        manager_from_user_agent(Some("python-requests")),
        "python-requests"
    );
    assert_eq!(manager_from_user_agent(None), "unknown");
}
