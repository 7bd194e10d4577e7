//! The codec against bodies built by hand on the wire (as kubectl's typed clients send
//! them) and round trips of the server's JSON.

use super::*;
use serde_json::json;

fn bytes_field(number: u32, payload: &[u8]) -> Vec<u8> {
    assert!(payload.len() < 128, "a one-byte length");
    let mut out = vec![(number << 3 | 2) as u8, payload.len() as u8];
    out.extend_from_slice(payload);
    out
}

fn envelope(api_version: &str, kind: &str, raw: &[u8]) -> Vec<u8> {
    let type_meta = [
        bytes_field(1, api_version.as_bytes()),
        bytes_field(2, kind.as_bytes()),
    ]
    .concat();
    let unknown = [bytes_field(1, &type_meta), bytes_field_long(2, raw)].concat();
    [MAGIC, &unknown].concat()
}

#[test]
fn decodes_a_self_subject_access_review() {
    let attrs = [
        bytes_field(1, b"dev"),
        bytes_field(2, b"list"),
        bytes_field(5, b"pods"),
        vec![0xf8, 0x06, 1], // field 111, which the message does not have
    ]
    .concat();
    let spec = bytes_field(1, &attrs);
    let raw = [bytes_field(1, &[]), bytes_field(2, &spec)].concat();
    let obj = decode(&envelope(
        "authorization.k8s.io/v1",
        "SelfSubjectAccessReview",
        &raw,
    ))
    .unwrap();
    assert_eq!(
        obj,
        serde_json::json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
            "metadata": {}, "spec": {"resourceAttributes": {"namespace": "dev", "verb": "list", "resource": "pods"}}})
    );
}

#[test]
fn decodes_a_token_request_with_its_expiry() {
    let spec = [
        bytes_field(1, b"vault"),
        vec![4 << 3, 0x90, 0x1c], // expirationSeconds 3600
        bytes_field(
            3,
            &[bytes_field(1, b"Pod"), bytes_field(3, b"web")].concat(),
        ),
    ]
    .concat();
    let raw = [
        bytes_field(1, &bytes_field(1, b"default")),
        bytes_field(2, &spec),
    ]
    .concat();
    let obj = decode(&envelope("authentication.k8s.io/v1", "TokenRequest", &raw)).unwrap();
    assert_eq!(
        obj["spec"],
        serde_json::json!({"audiences": ["vault"], "expirationSeconds": 3600,
            "boundObjectRef": {"kind": "Pod", "name": "web"}})
    );
    assert_eq!(obj["metadata"]["name"], "default");
    let wrong_wire = [bytes_field(1, &[]), bytes_field(2, &bytes_field(4, b"x"))].concat();
    let err = decode(&envelope(
        "authentication.k8s.io/v1",
        "TokenRequest",
        &wrong_wire,
    ));
    assert_eq!(err.unwrap_err().code(), 400);
}

fn varint_field(number: u32, mut v: u64) -> Vec<u8> {
    let mut out = vec![(number << 3) as u8];
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return out;
        }
        out.push(byte | 0x80);
    }
}

#[test]
fn decodes_a_certificate_signing_request_as_kubectl_approves_it() {
    let meta = [
        bytes_field(1, b"node-csr-1"),
        bytes_field(6, b"42"),
        bytes_field(8, &varint_field(1, 1_735_689_600)),
        bytes_field(13, &[bytes_field(1, b"Node"), varint_field(6, 1)].concat()),
    ]
    .concat();
    let spec = [
        bytes_field(1, b"PEM"),
        bytes_field(5, b"client auth"),
        bytes_field(7, b"a.io/b"),
        varint_field(8, 86400),
    ]
    .concat();
    let approved = [
        bytes_field(1, b"Approved"),
        bytes_field(6, b"True"),
        bytes_field(2, b"Kubectl"),
        bytes_field(4, &varint_field(1, 1_735_689_660)),
    ]
    .concat();
    let status = [
        bytes_field(1, &bytes_field(1, b"Failed")),
        bytes_field(1, &approved),
    ]
    .concat();
    let raw = [
        bytes_field(1, &meta),
        bytes_field(2, &spec),
        bytes_field(3, &status),
    ]
    .concat();
    let obj = decode(&envelope(
        "certificates.k8s.io/v1",
        "CertificateSigningRequest",
        &raw,
    ))
    .unwrap();
    assert_eq!(
        obj["metadata"],
        serde_json::json!({"name": "node-csr-1", "resourceVersion": "42",
            "creationTimestamp": "2025-01-01T00:00:00Z",
            "ownerReferences": [{"kind": "Node", "controller": true}]})
    );
    assert_eq!(
        obj["spec"],
        serde_json::json!({"request": "UEVN", "usages": ["client auth"], "expirationSeconds": 86400,
            "signerName": "a.io/b"})
    );
    assert_eq!(
        obj["status"]["conditions"],
        serde_json::json!([{"type": "Failed"}, {"type": "Approved", "status": "True",
            "reason": "Kubectl", "lastUpdateTime": "2025-01-01T00:01:00Z"}])
    );
}

#[test]
fn refuses_what_it_cannot_read() {
    assert_eq!(decode(b"{}").unwrap_err().code(), 400);
    assert_eq!(
        decode(&envelope("v1", "NoSuchKind", &[]))
            .unwrap_err()
            .code(),
        415
    );
    let truncated = envelope(
        "authentication.k8s.io/v1",
        "SelfSubjectReview",
        &[10, 50, 1],
    );
    assert_eq!(decode(&truncated).unwrap_err().code(), 400);
    let deep = envelope("authentication.k8s.io/v1", "SelfSubjectReview", &[0xff; 12]);
    assert_eq!(decode(&deep).unwrap_err().code(), 400);
}

/// `obj` encoded and decoded again.
fn round_trip(obj: &Value) -> Value {
    let bytes = encode(obj).expect("a served kind").expect("encodes");
    decode(&bytes).expect("decodes")
}

#[test]
fn a_deployment_round_trips() {
    let deployment = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "dev", "labels": {"app": "web", "tier": ""},
            "uid": "0b6c", "resourceVersion": "42", "generation": 3,
            "creationTimestamp": "2025-01-01T00:00:00Z",
            "managedFields": [{"manager": "kubectl", "operation": "Update",
                "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:replicas": {}}},
                "time": "2025-01-01T00:00:00Z"}]},
        "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "web"}},
            "strategy": {"type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0}},
            "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"automountServiceAccountToken": false,
                    "terminationGracePeriodSeconds": 30,
                    "containers": [{"name": "c", "image": "nginx:1.27", "args": ["", "-g"],
                        "ports": [{"containerPort": 80, "protocol": "TCP"}],
                        "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}},
                        "readinessProbe": {"httpGet": {"path": "/", "port": "http"},
                            "periodSeconds": 5},
                        "env": [{"name": "A", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "a"}}}]}],
                    "volumes": [{"name": "conf", "configMap": {"name": "cm", "defaultMode": 420}}]}}},
        "status": {"replicas": 2, "conditions": [{"type": "Available", "status": "True",
            "lastUpdateTime": "2025-01-01T00:01:00Z"}]}
    });
    assert_eq!(round_trip(&deployment), deployment);
}

#[test]
fn secrets_lists_status_and_metadata_round_trip() {
    let secret = json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "s"}, "type": "Opaque", "data": {"k": "c2VjcmV0"}});
    assert_eq!(round_trip(&secret), secret);
    let list = json!({"apiVersion": "v1", "kind": "PodList",
        "metadata": {"resourceVersion": "7", "continue": "abc", "remainingItemCount": 3},
        "items": [{"metadata": {"name": "a"}, "spec": {"containers": [{"name": "c"}]}}]});
    assert_eq!(round_trip(&list), list);
    let status = json!({"apiVersion": "v1", "kind": "Status", "metadata": {},
        "status": "Failure", "message": "pods \"x\" not found", "reason": "NotFound",
        "details": {"name": "x", "kind": "pods"}, "code": 404});
    assert_eq!(round_trip(&status), status);
    let partial = json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
        "metadata": {"name": "a", "ownerReferences": [{"apiVersion": "apps/v1",
            "kind": "ReplicaSet", "name": "rs", "uid": "u", "controller": true}]}});
    assert_eq!(round_trip(&partial), partial);
    let lease = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "node-1"},
        "spec": {"holderIdentity": "node-1", "renewTime": "2025-01-01T00:00:00.123456Z"}});
    assert_eq!(round_trip(&lease), lease);
}

#[test]
fn what_go_writes_as_zero_is_absent_in_json() {
    // a Pod as a Go client writes it: every non-pointer string field, set or not
    let pod = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "p", "namespace": "", "generateName": ""},
        "spec": {"restartPolicy": "", "hostNetwork": false,
            "containers": [{"name": "c", "image": "busybox", "imagePullPolicy": ""}]}});
    let decoded = round_trip(&pod);
    assert_eq!(
        decoded,
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
            "spec": {"hostNetwork": false, "containers": [{"name": "c", "image": "busybox"}]}})
    );
}

#[test]
fn kinds_without_a_message_are_left_to_json() {
    assert!(encode(&json!({"apiVersion": "meta.k8s.io/v1", "kind": "Table"})).is_none());
    assert!(encode(&json!({"kind": "Pod"})).is_none());
    assert!(encode(&json!("text")).is_none());
}

#[test]
fn a_wrong_value_is_named_by_its_path() {
    let err = encode(&json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "spec": {"template": {"spec": {"containers": [{"name": "c"}, {"ports": [{"containerPort": "80"}]}]}}}}))
        .unwrap()
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "spec.template.spec.containers[1].ports[0].containerPort: must be an integer in range, not a string"
    );
    let err = encode(&json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"creationTimestamp": "yesterday"}}))
    .unwrap()
    .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("metadata.creationTimestamp: is not an RFC 3339 time"),
        "{err}"
    );
}

#[test]
fn watch_frames_carry_enveloped_objects() {
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a", "resourceVersion": "9"}});
    let frame = watch_frame(&json!({"type": "ADDED", "object": pod}))
        .unwrap()
        .unwrap();
    let len = u32::from_be_bytes(frame[..4].try_into().unwrap()) as usize;
    assert_eq!(len, frame.len() - 4);
    let event = DynamicMessage::decode(schema::watch_event(), &frame[4..]).unwrap();
    assert_eq!(
        Value::Object(to_json::object(&event, 0).unwrap()),
        json!({"type": "ADDED", "object": pod})
    );
    assert!(
        watch_frame(&json!({"type": "ADDED", "object": {"kind": "Nope", "apiVersion": "v1"}}))
            .is_none()
    );
}

#[test]
fn hostile_bodies_are_refused_in_linear_time() {
    // 100,000 nested RawExtension envelopes: refused at the depth bound, not by the stack
    let mut body = envelope("v1", "Pod", &[]);
    for _ in 0..2_000 {
        let raw_ext = bytes_field_long(1, &body);
        let list = bytes_field_long(2, &raw_ext); // List.items = 2
        body = envelope("v1", "List", &list);
    }
    let err = decode(&body).unwrap_err();
    assert_eq!(err.code(), 400, "{}", err.message());
}

fn bytes_field_long(number: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![(number << 3 | 2) as u8];
    let mut len = payload.len() as u64;
    loop {
        let byte = (len & 0x7f) as u8;
        len >>= 7;
        if len == 0 {
            out.push(byte);
            break;
        }
        out.push(byte | 0x80);
    }
    out.extend_from_slice(payload);
    out
}
