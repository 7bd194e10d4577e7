//! Decoding of request bodies by their `Content-Type`, and the format of responses by
//! `Accept`, as kube-apiserver negotiates them.
//!
//! * a response is protobuf when the first acceptable media range is
//!   `application/vnd.kubernetes.protobuf` (as client-go's typed clients and kubectl ask)
//!   and its kind has a message; YAML when it is `application/yaml` (not for watches, which
//!   Kubernetes streams in JSON or protobuf only); JSON otherwise (tables are JSON only);
//! * `application/json` (also when the header is absent: kube-apiserver then takes its first
//!   supported type, JSON) and `application/yaml` are decoded;
//! * any other type (`text/plain`, `application/x-www-form-urlencoded`, ...) is 415
//!   UnsupportedMediaType, naming the accepted types, and nothing is stored;
//! * nesting is bounded before a parser sees the body: JSON's parser stops at its own depth
//!   limit as it goes, but libyaml's scanner costs time quadratic in the depth of flow
//!   collections (`[[[[...`), so a YAML body is first measured in one linear pass
//!   ([`yaml_nesting`]) and refused when it nests deeper than [`MAX_NESTING`].

use serde_json::Value;

use crate::error::{ApiError, Result};

/// Deepest nesting a YAML body may have (the decoders refuse more than 128 levels anyway; this
/// bound only has to stop a hostile document before the quadratic scan).
pub const MAX_NESTING: usize = 512;

/// The media types a write body may have.
const ACCEPTED: &str = "application/json, application/yaml";

/// The body's format, from its `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFormat {
    Json,
    Yaml,
    /// Kubernetes' protobuf, for the kinds [`crate::protobuf`] reads.
    Protobuf,
}

impl BodyFormat {
    pub fn from_content_type(content_type: Option<&str>) -> Result<BodyFormat> {
        let media = content_type
            .unwrap_or_default()
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        match media.as_str() {
            "" | "application/json" => Ok(BodyFormat::Json),
            "application/yaml" | "application/x-yaml" => Ok(BodyFormat::Yaml),
            "application/vnd.kubernetes.protobuf" => Ok(BodyFormat::Protobuf),
            other => Err(ApiError::UnsupportedMediaType {
                message: format!(
                    "the body of the request was in an unknown format ({other:?}) - accepted media types include: {ACCEPTED}"
                ),
            }),
        }
    }
}

/// The format of the answers to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseFormat {
    Json,
    Yaml,
    Protobuf,
}

tokio::task_local! {
    /// The format negotiated for the request being served (JSON outside one).
    pub static RESPONSE_FORMAT: ResponseFormat;
}

/// The format `accept` asks for first: protobuf, YAML or JSON (`*/*` and anything the server
/// cannot write are answered with JSON).
pub fn response_format(accept: Option<&str>) -> ResponseFormat {
    for range in accept.unwrap_or_default().split(',') {
        let mut params = range.split(';').map(str::trim);
        let media = params.next().unwrap_or_default().to_ascii_lowercase();
        let params: Vec<&str> = params.collect();
        if params.iter().any(|p| p.replace(' ', "") == "q=0") {
            continue;
        }
        match media.as_str() {
            crate::protobuf::MEDIA_TYPE if params.iter().any(|p| p.starts_with("as=Table")) => {}
            crate::protobuf::MEDIA_TYPE => return ResponseFormat::Protobuf,
            "application/yaml" => return ResponseFormat::Yaml,
            "application/json" | "*/*" | "application/*" => return ResponseFormat::Json,
            _ => {}
        }
    }
    ResponseFormat::Json
}

/// `value` in the format negotiated for the current request: `(content type, body)`. An
/// object the protobuf codec cannot write (its kind has no message) is answered in JSON.
pub fn encode_response(value: &serde_json::Value) -> (&'static str, Vec<u8>) {
    let format = RESPONSE_FORMAT
        .try_with(|f| *f)
        .unwrap_or(ResponseFormat::Json);
    match format {
        ResponseFormat::Protobuf => match crate::protobuf::encode(value) {
            Some(Ok(bytes)) => return (crate::protobuf::MEDIA_TYPE, bytes),
            Some(Err(e)) => {
                tracing::warn!(error = %e, "an answer does not encode as protobuf; answering JSON")
            }
            None => {}
        },
        ResponseFormat::Yaml => match serde_yaml::to_string(value) {
            Ok(text) => return ("application/yaml", text.into_bytes()),
            Err(e) => {
                tracing::warn!(error = %e, "an answer does not encode as YAML; answering JSON")
            }
        },
        ResponseFormat::Json => {}
    }
    (
        "application/json",
        serde_json::to_vec(value).unwrap_or_default(),
    )
}

/// 413 for a request whose `Content-Length` is over `limit`, before its body is read (a client
/// that waits for `100 Continue` then never sends it).
pub fn check_declared_length(headers: &http::HeaderMap, limit: usize) -> Result<()> {
    let declared = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    match declared {
        Some(len) if len > limit as u64 => Err(ApiError::RequestEntityTooLarge { limit }),
        _ => Ok(()),
    }
}

/// The answer to a body that could not be read: 413 when it went over `limit`, 400 otherwise.
pub fn unreadable_body(err: &axum::Error, limit: usize) -> ApiError {
    let mut cause: Option<&dyn std::error::Error> = Some(err);
    while let Some(e) = cause {
        if e.to_string().contains("length limit exceeded") {
            return ApiError::RequestEntityTooLarge { limit };
        }
        cause = e.source();
    }
    ApiError::bad_request(format!("the request body could not be read: {err}"))
}

/// Decode a write body sent with `content_type`.
pub fn decode_body(content_type: Option<&str>, body: &[u8]) -> Result<Value> {
    match BodyFormat::from_content_type(content_type)? {
        BodyFormat::Protobuf => crate::protobuf::decode(body),
        BodyFormat::Json => serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}"))),
        BodyFormat::Yaml => {
            let depth = yaml_nesting(body);
            if depth > MAX_NESTING {
                return Err(ApiError::bad_request(format!(
                    "invalid YAML body: it nests deeper than {MAX_NESTING} levels (at least {depth})"
                )));
            }
            let v: serde_yaml::Value = serde_yaml::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("invalid YAML body: {e}")))?;
            serde_json::to_value(v)
                .map_err(|e| ApiError::bad_request(format!("invalid YAML body: {e}")))
        }
    }
}

/// Where the YAML scan is.
#[derive(Default)]
struct Scan {
    /// Open flow collections (`[`, `{`).
    flow: usize,
    /// Inside a quoted scalar (which may span lines): its quote character.
    quote: Option<u8>,
    /// Indentation of the block collections around the current line.
    indents: Vec<usize>,
    /// Indentation of the line that opened a block scalar (`|`, `>`): more indented lines
    /// are its text.
    block_scalar: Option<usize>,
    deepest: usize,
}

/// An upper estimate of how deep a YAML document nests, in one pass over its bytes: block
/// collections by indentation and `- ` indicators, flow collections by their brackets outside
/// quoted scalars, comments and block scalars. It never underestimates a nesting libyaml
/// would parse, so a document it lets through is cheap to parse.
pub fn yaml_nesting(text: &[u8]) -> usize {
    let mut scan = Scan::default();
    for line in text.split(|b| *b == b'\n') {
        scan.line(line);
    }
    scan.deepest
}

impl Scan {
    fn line(&mut self, line: &[u8]) {
        let indent = line.iter().take_while(|b| **b == b' ').count();
        let blank = line[indent..].iter().all(|b| b.is_ascii_whitespace());
        if let Some(parent) = self.block_scalar {
            if blank || indent > parent {
                return;
            }
            self.block_scalar = None;
        }
        if blank {
            return;
        }
        if self.flow == 0 && self.quote.is_none() {
            while self.indents.last().is_some_and(|top| *top > indent) {
                self.indents.pop();
            }
            if self.indents.last().is_none_or(|top| *top < indent) {
                self.indents.push(indent);
            }
        }
        let mut sequences = 0;
        let mut prev: Option<u8> = None; // last byte that is not a space
        let mut after_space = true;
        let mut i = indent;
        while i < line.len() {
            let b = line[i];
            if let Some(q) = self.quote {
                match (q, b) {
                    (b'"', b'\\') => i += 1,
                    (b'\'', b'\'') if line.get(i + 1) == Some(&b'\'') => i += 1,
                    _ if b == q => self.quote = None,
                    _ => {}
                }
                i += 1;
                prev = Some(b);
                after_space = false;
                continue;
            }
            // outside flow collections a node starts after a space or at the line's start
            // (inside them every bracket opens or closes one)
            let node_start = after_space || prev.is_none();
            match b {
                b'#' if after_space => break,
                b'"' | b'\''
                    if prev
                        .is_none_or(|p| matches!(p, b'[' | b'{' | b',' | b':' | b'-' | b'?')) =>
                {
                    self.quote = Some(b)
                }
                b'[' | b'{' if self.flow > 0 || node_start => self.flow += 1,
                b']' | b'}' if self.flow > 0 => self.flow -= 1,
                b'-' if self.flow == 0
                    && node_start
                    && line.get(i + 1).is_none_or(|n| *n == b' ') =>
                {
                    sequences += 1
                }
                b'|' | b'>' if self.flow == 0 && node_start && block_indicator(&line[i + 1..]) => {
                    self.block_scalar = Some(indent);
                    break;
                }
                _ => {}
            }
            let depth = self.indents.len() + sequences + self.flow;
            self.deepest = self.deepest.max(depth);
            after_space = b == b' ' || b == b'\t';
            if !after_space {
                prev = Some(b);
            }
            i += 1;
        }
        self.deepest = self.deepest.max(self.indents.len() + sequences + self.flow);
    }
}

/// Whether what follows `|` or `>` makes it a block scalar header (chomping and indentation
/// indicators, then nothing but a comment).
fn block_indicator(rest: &[u8]) -> bool {
    let header = rest
        .iter()
        .take_while(|b| matches!(b, b'-' | b'+' | b'0'..=b'9'))
        .count();
    let tail = &rest[header..];
    let tail = &tail[tail.iter().take_while(|b| b.is_ascii_whitespace()).count()..];
    tail.is_empty() || tail[0] == b'#'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn answers_in_the_negotiated_format() {
        let obj = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "a"}, "data": {"k": "v"}});
        let (ct, body) = RESPONSE_FORMAT
            .scope(ResponseFormat::Yaml, async { encode_response(&obj) })
            .await;
        assert_eq!(ct, "application/yaml");
        let back: serde_json::Value = serde_yaml::from_slice(&body).unwrap();
        assert_eq!(back, obj);
        let (ct, body) = RESPONSE_FORMAT
            .scope(ResponseFormat::Protobuf, async { encode_response(&obj) })
            .await;
        assert_eq!(ct, crate::protobuf::MEDIA_TYPE);
        assert_eq!(crate::protobuf::decode(&body).unwrap(), obj);
        let table = serde_json::json!({"apiVersion": "meta.k8s.io/v1", "kind": "Table"});
        let (ct, _) = RESPONSE_FORMAT
            .scope(ResponseFormat::Protobuf, async { encode_response(&table) })
            .await;
        assert_eq!(ct, "application/json", "no message for a Table");
        assert_eq!(
            encode_response(&obj).0,
            "application/json",
            "outside a request"
        );
    }

    #[test]
    fn negotiates_the_response_format_as_kube_apiserver() {
        use ResponseFormat::*;
        for (accept, format) in [
            (None, Json),
            (Some("application/json"), Json),
            (Some("application/vnd.kubernetes.protobuf, */*"), Protobuf),
            (Some("application/vnd.kubernetes.protobuf,application/json"), Protobuf),
            (Some("application/json, application/vnd.kubernetes.protobuf"), Json),
            (Some("application/vnd.kubernetes.protobuf;q=0, application/json"), Json),
            (Some("application/vnd.kubernetes.protobuf;as=Table;v=v1;g=meta.k8s.io,application/json"), Json),
            (Some("application/vnd.kubernetes.protobuf;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"), Protobuf),
            (Some("text/html, application/vnd.kubernetes.protobuf"), Protobuf),
            (Some("application/yaml"), Yaml),
            (Some("application/yaml;q=0, */*"), Json),
        ] {
            assert_eq!(response_format(accept), format, "{accept:?}");
        }
    }

    #[test]
    fn content_types() {
        assert_eq!(
            BodyFormat::from_content_type(None).unwrap(),
            BodyFormat::Json
        );
        assert_eq!(
            BodyFormat::from_content_type(Some("application/json; charset=utf-8")).unwrap(),
            BodyFormat::Json
        );
        assert_eq!(
            BodyFormat::from_content_type(Some("application/yaml")).unwrap(),
            BodyFormat::Yaml
        );
        for bad in ["text/plain", "application/x-www-form-urlencoded"] {
            let err = BodyFormat::from_content_type(Some(bad)).unwrap_err();
            assert_eq!(err.code(), 415, "{bad}");
        }
    }

    #[test]
    fn measures_real_manifests_shallow() {
        let manifest = br#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web   # a comment with [[[[ brackets
  annotations:
    note: "quoted [[[[ {{{{ text"
    other: 'it''s [[[['
    plain: see [1] and a[[[[b
spec:
  template:
    spec:
      containers:
      - name: web
        args: ["--flag", "{x}", [nested]]
        command:
        - sh
        - -c
        - |
          if [ -f /x ]; then echo '[[[[[[[[[[[[[[[[[[['; fi
          {{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{
        env: [{name: A, value: "b"}]
"#;
        let depth = yaml_nesting(manifest);
        assert!((5..=10).contains(&depth), "{depth}");
        let v = decode_body(Some("application/yaml"), manifest).unwrap();
        assert_eq!(
            v["spec"]["template"]["spec"]["containers"][0]["name"],
            "web"
        );
    }

    #[test]
    fn counts_flow_block_and_compact_nesting() {
        assert_eq!(yaml_nesting(b"[[[[1]]]]"), 5);
        let deep = "[".repeat(100_000);
        assert!(yaml_nesting(deep.as_bytes()) >= 100_000);
        let compact = format!("{}x", "- ".repeat(5_000));
        assert!(yaml_nesting(compact.as_bytes()) >= 5_000);
        // brackets after an anchor or a tag still open a flow collection
        let anchored = format!("a: &x {}", "[".repeat(2_000));
        assert!(yaml_nesting(anchored.as_bytes()) >= 2_000);
        // a quote inside a plain scalar does not hide what follows
        let sneaky = format!("[a '{}", "[".repeat(2_000));
        assert!(yaml_nesting(sneaky.as_bytes()) >= 2_000);
    }

    #[test]
    fn refuses_deep_yaml_quickly_and_names_the_reason() {
        for body in [
            "[".repeat(1_000_000),
            format!("a: {}", "{a: ".repeat(200_000)),
            format!("{}x", "- ".repeat(200_000)),
        ] {
            let err = decode_body(Some("application/yaml"), body.as_bytes()).unwrap_err();
            assert_eq!(err.code(), 400);
            assert!(err.message().contains("nests deeper"), "{}", err.message());
        }
        let json = "[".repeat(1_000_000);
        let err = decode_body(Some("application/json"), json.as_bytes()).unwrap_err();
        assert_eq!(err.code(), 400);
    }
}
