//! `bpfk scale`: set `spec.replicas` through the scale subresource.

use http::Method;
use serde_json::json;

use crate::cli::ScaleArgs;
use crate::client::{Ctx, MERGE_PATCH};
use crate::discovery::Resources;
use crate::error::{Error, Result};
use crate::get::split_type_and_names;

pub async fn run(ctx: &Ctx, resources: &Resources, args: &ScaleArgs) -> Result<()> {
    let Some((kind, rest)) = args.args.split_first() else {
        return Err(Error::Usage(
            "usage: bpfk scale TYPE NAME --replicas N".to_string(),
        ));
    };
    let (kind, names) = split_type_and_names(kind, rest)?;
    let info = resources.resolve(&kind)?;
    if !info.has_subresource("scale") {
        return Err(Error::Usage(format!(
            "cannot scale {}: the server offers no scale subresource for it",
            info.group_resource()
        )));
    }
    if names.is_empty() {
        return Err(Error::Usage(
            "resource(s) were provided, but no name was specified".to_string(),
        ));
    }
    let ns = info.namespaced.then(|| ctx.namespace.clone());
    let patch = json!({"spec": {"replicas": args.replicas}});
    let mut failures = 0;
    for name in &names {
        let uri = format!("{}/scale", info.object_path(ns.as_deref(), name));
        match ctx
            .send_json(Method::PATCH, &uri, MERGE_PATCH, &patch)
            .await
        {
            Ok(_) => println!("{}/{name} scaled", info.kind_ref()),
            Err(e) => {
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
