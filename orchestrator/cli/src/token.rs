//! `bpfk token create|list|delete`: bootstrap tokens for joining machines, as `kubeadm
//! token` manages them (kube-system Secrets `bootstrap-token-<id>`). `create` prints the
//! join token `bpfk-agent --token` takes, the CA's public-key hash in front (from the
//! kubeconfig's CA), so the new machine can check the server; `list` never shows secrets.

use std::time::Duration;

use bpfk_auth::bootstrap_token::{self, BootstrapToken, JoinToken, TokenOptions};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::cli::{TokenArgs, TokenCommand, TokenCreateArgs};
use crate::client::Ctx;
use crate::error::{Error, Result};
use crate::table;

pub async fn run(ctx: &Ctx, args: &TokenArgs) -> Result<()> {
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), bootstrap_token::NAMESPACE);
    match &args.command {
        TokenCommand::Create(create) => {
            println!("{}", self::create(ctx, &secrets, create).await?);
            Ok(())
        }
        TokenCommand::List => list(ctx, &secrets).await,
        TokenCommand::Delete { tokens } => delete(ctx, &secrets, tokens).await,
    }
}

/// Parses `--ttl`: a duration such as `24h`, `30m`; `0` = never expires.
pub fn parse_ttl(text: &str) -> std::result::Result<Duration, String> {
    if text.trim() == "0" {
        return Ok(Duration::ZERO);
    }
    bpfk_common::duration::parse_duration(text)
}

async fn create(ctx: &Ctx, secrets: &Api<Secret>, args: &TokenCreateArgs) -> Result<String> {
    let ca_der = ctx.ca_der.as_deref().ok_or_else(|| {
        Error::Config(
            "the kubeconfig names no certificate authority: a join token carries its hash".into(),
        )
    })?;
    let ca_hash = bpfk_auth::pki::public_key_hash_of_der(ca_der).ok_or_else(|| {
        Error::Config("the kubeconfig's certificate authority does not parse".into())
    })?;
    let token = match &args.token {
        Some(text) => text
            .parse::<BootstrapToken>()
            .map_err(|e| Error::Config(format!("--token: {e}")))?,
        None => BootstrapToken::generate(),
    };
    let ttl = (!args.ttl.is_zero()).then_some(args.ttl);
    let expires = ttl
        .map(|ttl| OffsetDateTime::now_utc() + ttl)
        .map(|t| t.replace_nanosecond(0).unwrap_or(t));
    let options = TokenOptions {
        expires,
        description: args.description.clone().unwrap_or_default(),
        extra_groups: args.groups.clone(),
    };
    let secret: Secret = serde_json::from_value(bootstrap_token::secret_for(&token, &options))
        .map_err(|e| Error::Config(format!("building the token's Secret: {e}")))?;
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .map_err(|e| ctx.map_err(e))?;
    Ok(JoinToken { ca_hash, token }.expose())
}

async fn list(ctx: &Ctx, secrets: &Api<Secret>) -> Result<()> {
    let listed = secrets
        .list(&ListParams::default())
        .await
        .map_err(|e| ctx.map_err(e))?;
    let mut lines = vec![[
        "ID",
        "TTL",
        "EXPIRES",
        "USAGES",
        "DESCRIPTION",
        "EXTRA GROUPS",
    ]
    .map(String::from)
    .to_vec()];
    let now = OffsetDateTime::now_utc();
    let tokens = listed
        .items
        .iter()
        .filter(|s| s.type_.as_deref() == Some(bootstrap_token::SECRET_TYPE));
    for secret in tokens {
        lines.push(row(secret, now));
    }
    print!("{}", table::render(&lines));
    Ok(())
}

/// One `list` row: id, time left, expiry, usages, description, groups (never the secret).
fn row(secret: &Secret, now: OffsetDateTime) -> Vec<String> {
    let field = |k: &str| {
        bootstrap_token::field(secret, k)
            .unwrap_or_default()
            .to_string()
    };
    let (ttl, expires) = match bootstrap_token::expiration(secret) {
        Ok(None) => ("<forever>".to_string(), "<never>".to_string()),
        Ok(Some(when)) if when <= now => ("<invalid>".into(), rfc3339(when)),
        Ok(Some(when)) => (human(when - now), rfc3339(when)),
        Err(_) => ("<invalid>".into(), field("expiration")),
    };
    let usages: Vec<&str> = [
        ("authentication", "usage-bootstrap-authentication"),
        ("signing", "usage-bootstrap-signing"),
    ]
    .into_iter()
    .filter(|(_, key)| bootstrap_token::field(secret, key) == Some("true"))
    .map(|(name, _)| name)
    .collect();
    vec![
        field("token-id"),
        ttl,
        expires,
        usages.join(","),
        or_none(field("description")),
        or_none(field("auth-extra-groups")),
    ]
}

fn or_none(s: String) -> String {
    if s.is_empty() {
        "<none>".into()
    } else {
        s
    }
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

fn human(left: time::Duration) -> String {
    let secs = left.whole_seconds().max(0);
    match secs {
        s if s >= 3600 => format!("{}h", s / 3600),
        s if s >= 60 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

async fn delete(ctx: &Ctx, secrets: &Api<Secret>, tokens: &[String]) -> Result<()> {
    for given in tokens {
        // an id, a token, or a join token
        let id = given
            .rsplit("::")
            .next()
            .unwrap_or(given)
            .split('.')
            .next()
            .unwrap_or(given);
        let name = format!("{}{id}", bootstrap_token::SECRET_PREFIX);
        secrets
            .delete(&name, &DeleteParams::default())
            .await
            .map_err(|e| ctx.map_err(e))?;
        println!("bootstrap token {id:?} deleted");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_show_ids_and_lifetimes_but_no_secret() {
        let token: BootstrapToken = "abcdef.0123456789abcdef".parse().unwrap();
        let now = OffsetDateTime::now_utc();
        let options = TokenOptions {
            expires: Some(now + time::Duration::hours(23) + time::Duration::minutes(59)),
            description: "node-3".into(),
            extra_groups: vec![bootstrap_token::DEFAULT_NODE_GROUP.into()],
        };
        let secret: Secret =
            serde_json::from_value(bootstrap_token::secret_for(&token, &options)).unwrap();
        let cells = row(&secret, now);
        assert_eq!(cells[0], "abcdef");
        assert_eq!(cells[1], "23h");
        assert_eq!(cells[3], "authentication,signing");
        assert_eq!(cells[5], bootstrap_token::DEFAULT_NODE_GROUP);
        assert!(!cells.iter().any(|c| c.contains("0123456789abcdef")));
        let forever = TokenOptions::default();
        let secret: Secret =
            serde_json::from_value(bootstrap_token::secret_for(&token, &forever)).unwrap();
        assert_eq!(row(&secret, now)[1..3], ["<forever>", "<never>"]);
        assert_eq!(parse_ttl("0"), Ok(Duration::ZERO));
        assert_eq!(parse_ttl("2h"), Ok(Duration::from_secs(7200)));
        assert!(parse_ttl("soon").is_err());
    }
}
