//! `bpfk delete`: by type and name, by label selector, or from manifests.

use std::time::{Duration, Instant};

use http::Method;
use serde_json::{json, Value};

use crate::apply::{place, with_source};
use crate::cli::{Cascade, DeleteArgs};
use crate::client::{with_query, Ctx};
use crate::discovery::{ResourceInfo, Resources};
use crate::error::{Error, Result};
use crate::manifest::Manifest;

/// The `DeleteOptions` body kubectl sends.
pub fn delete_options(cascade: Cascade, grace_period: Option<i64>) -> Value {
    let policy = match cascade {
        Cascade::Background => "Background",
        Cascade::Foreground => "Foreground",
        Cascade::Orphan => "Orphan",
    };
    let mut body = json!({
        "kind": "DeleteOptions",
        "apiVersion": "v1",
        "propagationPolicy": policy,
    });
    if let Some(g) = grace_period {
        // kubectl: --grace-period=0 with --force means immediate; a negative value
        // means "use the object's default".
        if g >= 0 {
            body["gracePeriodSeconds"] = json!(g);
        }
    }
    body
}

struct Target<'r> {
    info: &'r ResourceInfo,
    namespace: Option<String>,
    name: String,
    source: Option<String>,
}

/// Delete by `args`, or the objects in `manifests` (loaded from `-f` by the caller).
pub async fn run(
    ctx: &Ctx,
    resources: &Resources,
    args: &DeleteArgs,
    manifests: &[Manifest],
) -> Result<()> {
    let mut targets = Vec::new();
    if !args.filenames.is_empty() {
        if !args.args.is_empty() {
            return Err(Error::Usage(
                "cannot pass resource types or names together with -f".to_string(),
            ));
        }
        if manifests.is_empty() {
            return Err(Error::Manifest("no objects passed to delete".to_string()));
        }
        for m in manifests {
            let (info, _, ns) = place(ctx, resources, m)?;
            targets.push(Target {
                info,
                namespace: ns,
                name: m.name().to_string(),
                source: Some(m.source.clone()),
            });
        }
    } else {
        let Some((kind, rest)) = args.args.split_first() else {
            return Err(Error::Usage(
                "you must provide one or more resources by argument or filename (-f)".to_string(),
            ));
        };
        for (kind, names) in crate::get::targets(kind, rest)? {
            let info = resources.resolve(&kind)?;
            let ns = info.namespaced.then(|| ctx.namespace.clone());
            if !names.is_empty() {
                targets.extend(names.into_iter().map(|name| Target {
                    info,
                    namespace: ns.clone(),
                    name,
                    source: None,
                }));
                continue;
            }
            let Some(selector) = &args.selector else {
                return Err(Error::Usage(format!(
                    "resource(s) were provided, but no name was specified: pass names, -l SELECTOR, or use 'bpfk delete {kind} NAME'"
                )));
            };
            let uri = with_query(
                &info.collection_path(ns.as_deref()),
                &[("labelSelector", selector.clone())],
            );
            let list = ctx.get_json(&uri, None).await?;
            let items = list
                .get("items")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            if items.is_empty() {
                eprintln!("No resources found");
            }
            for item in items {
                if let Some(name) = item.pointer("/metadata/name").and_then(Value::as_str) {
                    targets.push(Target {
                        info,
                        namespace: ns.clone(),
                        name: name.to_string(),
                        source: None,
                    });
                }
            }
        }
    }

    let body = delete_options(args.cascade, args.grace_period);
    let mut failures = 0;
    for t in &targets {
        let path = t.info.object_path(t.namespace.as_deref(), &t.name);
        match ctx
            .send_json(Method::DELETE, &path, "application/json", &body)
            .await
        {
            Ok(answer) => {
                if args.wait {
                    let uid = answer.pointer("/metadata/uid").and_then(Value::as_str);
                    if let Err(e) =
                        wait_gone(ctx, &path, uid, Duration::from_secs(args.timeout)).await
                    {
                        eprintln!("{}", e.report());
                        failures += 1;
                        continue;
                    }
                }
                println!("{} \"{}\" deleted", t.info.kind_ref(), t.name);
            }
            Err(e) if e.is_not_found() && args.ignore_not_found => {}
            Err(e) => {
                let e = match &t.source {
                    Some(src) => with_source(e, "deleting", src),
                    None => e,
                };
                eprintln!("{}", e.report());
                failures += 1;
            }
        }
    }
    if failures > 0 {
        return Err(Error::Reported(failures));
    }
    Ok(())
}

/// Poll until the object is gone (or replaced by one with another uid).
async fn wait_gone(ctx: &Ctx, path: &str, uid: Option<&str>, timeout: Duration) -> Result<()> {
    let start = Instant::now();
    loop {
        match ctx.get_json(path, None).await {
            Err(e) if e.is_not_found() => return Ok(()),
            Err(e) => return Err(e),
            Ok(obj) => {
                let live_uid = obj.pointer("/metadata/uid").and_then(Value::as_str);
                if uid.is_some() && live_uid != uid {
                    return Ok(());
                }
            }
        }
        if start.elapsed() >= timeout {
            return Err(Error::Usage(format!(
                "timed out after {}s waiting for {path} to be deleted (use --wait=false to not wait)",
                timeout.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delete_options_like_kubectl() {
        assert_eq!(
            delete_options(Cascade::Background, None),
            json!({"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"})
        );
        assert_eq!(
            delete_options(Cascade::Orphan, Some(0))["gracePeriodSeconds"],
            0
        );
        assert_eq!(
            delete_options(Cascade::Foreground, Some(-1)).get("gracePeriodSeconds"),
            None
        );
    }
}
