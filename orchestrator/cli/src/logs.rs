//! `bpfk logs`: a pod container's log through the `pods/log` subresource.

use crate::cli::LogsArgs;
use crate::client::{with_query, Ctx};
use crate::discovery::Resources;
use crate::error::{Error, Result};

pub async fn run(ctx: &Ctx, resources: &Resources, args: &LogsArgs) -> Result<()> {
    let name = match args.pod.split_once('/') {
        Some((t, n)) => {
            let info = resources.resolve(t)?;
            if info.kind != "Pod" {
                return Err(Error::Usage(format!(
                    "logs are only available for pods, not {}",
                    info.group_resource()
                )));
            }
            n.to_string()
        }
        None => args.pod.clone(),
    };
    let pods = resources.resolve("pods")?;
    let path = format!("{}/log", pods.object_path(Some(&ctx.namespace), &name));
    let uri = with_query(
        &path,
        &[
            ("container", args.container.clone().unwrap_or_default()),
            (
                "tailLines",
                args.tail.map(|t| t.to_string()).unwrap_or_default(),
            ),
            (
                "follow",
                if args.follow {
                    "true".into()
                } else {
                    String::new()
                },
            ),
            (
                "previous",
                if args.previous {
                    "true".into()
                } else {
                    String::new()
                },
            ),
        ],
    );
    let answer = if args.follow {
        ctx.stream_text(&uri, |chunk| {
            print!("{chunk}");
            let _ = std::io::Write::flush(&mut std::io::stdout());
        })
        .await
    } else {
        ctx.get_text(&uri).await.map(|text| print!("{text}"))
    };
    match answer {
        Ok(()) => Ok(()),
        Err(Error::Api(s)) if (s.code == 404 || s.code == 405) && !pods.has_subresource("log") => {
            // The server does not list pods/log in discovery: tell a missing pod
            // apart from a missing endpoint.
            ctx.get_json(&pods.object_path(Some(&ctx.namespace), &name), None)
                .await?;
            Err(Error::Usage(format!(
                "the server at {} does not serve pod logs yet (GET {path} answered {} {})",
                ctx.server, s.code, s.reason
            )))
        }
        Err(e) => Err(e),
    }
}
