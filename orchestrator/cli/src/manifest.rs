//! Loading manifests: files, directories and stdin; multi-document YAML or JSON.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

use crate::error::{Error, Result};

/// One object read from a manifest source.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    /// Where it came from (a path, or `STDIN`).
    pub source: String,
    /// 1-based index of the YAML document inside `source`.
    pub document: usize,
    /// The object itself.
    pub object: Value,
}

impl Manifest {
    /// `apiVersion` (validated to be present by [`parse_documents`]).
    pub fn api_version(&self) -> &str {
        self.object
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or("")
    }

    /// `kind` (validated to be present by [`parse_documents`]).
    pub fn kind(&self) -> &str {
        self.object
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or("")
    }

    /// `metadata.name` (validated to be present by [`parse_documents`]).
    pub fn name(&self) -> &str {
        self.object
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("")
    }

    /// `metadata.namespace`, if set.
    pub fn namespace(&self) -> Option<&str> {
        self.object
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    }
}

/// Load every object from `-f` arguments: `-` is stdin, a directory contributes
/// its `*.yaml`, `*.yml` and `*.json` files in name order, anything else is a file.
pub fn load_all(paths: &[String]) -> Result<Vec<Manifest>> {
    let mut out = Vec::new();
    for p in paths {
        out.extend(load(p)?);
    }
    Ok(out)
}

/// Load one `-f` argument.
pub fn load(path: &str) -> Result<Vec<Manifest>> {
    if path == "-" {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text).map_err(|source| {
            Error::Io {
                path: "STDIN".into(),
                source,
            }
        })?;
        return parse_documents("STDIN", &text);
    }
    let p = Path::new(path);
    let meta = std::fs::metadata(p).map_err(|source| Error::Io {
        path: path.to_string(),
        source,
    })?;
    if meta.is_dir() {
        let mut out = Vec::new();
        for file in manifest_files(p)? {
            out.extend(load_file(&file)?);
        }
        return Ok(out);
    }
    load_file(p)
}

fn load_file(p: &Path) -> Result<Vec<Manifest>> {
    let name = p.display().to_string();
    let text = std::fs::read_to_string(p).map_err(|source| Error::Io {
        path: name.clone(),
        source,
    })?;
    parse_documents(&name, &text)
}

/// The manifest files directly inside `dir`, sorted by name.
pub fn manifest_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir).map_err(|source| Error::Io {
        path: dir.display().to_string(),
        source,
    })?;
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| Error::Io {
            path: dir.display().to_string(),
            source,
        })?;
        let path = entry.path();
        let is_manifest = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| matches!(e, "yaml" | "yml" | "json"));
        if is_manifest && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Parse a multi-document YAML (or JSON) text. Empty documents are skipped;
/// `kind: List` documents contribute their items. Every object must have
/// `apiVersion`, `kind` and `metadata.name`.
pub fn parse_documents(source: &str, text: &str) -> Result<Vec<Manifest>> {
    let mut out = Vec::new();
    for (i, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let document = i + 1;
        let value = Value::deserialize(doc).map_err(|e| {
            let msg = e.to_string();
            let (at, msg) = match e.location() {
                Some(l) => {
                    let loc = format!(" at line {} column {}", l.line(), l.column());
                    (
                        format!(", line {} column {}", l.line(), l.column()),
                        msg.replacen(&loc, "", 1),
                    )
                }
                None => (String::new(), msg),
            };
            Error::Manifest(format!(
                "error parsing {source} (document {document}{at}): {msg}"
            ))
        })?;
        if value.is_null() {
            continue;
        }
        let Value::Object(_) = value else {
            return Err(Error::Manifest(format!(
                "error parsing {source} (document {document}): expected an object, got {}",
                type_name(&value)
            )));
        };
        if value.get("kind").and_then(Value::as_str) == Some("List") {
            let items = value
                .get("items")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            for item in items {
                validate(source, document, &item)?;
                out.push(Manifest {
                    source: source.to_string(),
                    document,
                    object: item,
                });
            }
            continue;
        }
        validate(source, document, &value)?;
        out.push(Manifest {
            source: source.to_string(),
            document,
            object: value,
        });
    }
    Ok(out)
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

fn validate(source: &str, document: usize, obj: &Value) -> Result<()> {
    let mut missing = Vec::new();
    for (field, v) in [
        ("apiVersion", obj.get("apiVersion")),
        ("kind", obj.get("kind")),
        ("metadata.name", obj.pointer("/metadata/name")),
    ] {
        match v {
            Some(Value::String(s)) if !s.is_empty() => {}
            Some(Value::String(_)) | None | Some(Value::Null) => {
                missing.push(format!("{field} not set"))
            }
            Some(other) => missing.push(format!(
                "{field} must be a string, got {}",
                type_name(other)
            )),
        }
    }
    if let Some(m) = obj.get("metadata") {
        if !m.is_object() {
            missing.push(format!("metadata must be an object, got {}", type_name(m)));
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(Error::Manifest(format!(
            "error validating {source} (document {document}): {}",
            missing.join(", ")
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const POD: &str = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: nginx\nspec:\n  containers:\n  - name: nginx\n    image: nginx:1.14.2\n    ports:\n    - containerPort: 80\n";

    #[test]
    fn single_document() {
        let m = parse_documents("pod.yaml", POD).unwrap();
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].kind(), "Pod");
        assert_eq!(m[0].name(), "nginx");
        assert_eq!(m[0].document, 1);
        assert_eq!(
            m[0].object["spec"]["containers"][0]["ports"][0]["containerPort"],
            json!(80)
        );
    }

    #[test]
    fn multi_document_with_empty_documents_and_lists() {
        let text = format!(
            "---\n{POD}---\n# only a comment\n---\napiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Namespace\n  metadata:\n    name: a\n- apiVersion: v1\n  kind: Namespace\n  metadata:\n    name: b\n"
        );
        let m = parse_documents("all.yaml", &text).unwrap();
        let names: Vec<_> = m.iter().map(|m| (m.kind(), m.name(), m.document)).collect();
        assert_eq!(
            names,
            vec![
                ("Pod", "nginx", 1),
                ("Namespace", "a", 3),
                ("Namespace", "b", 3)
            ]
        );
    }

    #[test]
    fn json_documents_parse() {
        let m = parse_documents(
            "ns.json",
            r#"{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"x"}}"#,
        )
        .unwrap();
        assert_eq!(m[0].name(), "x");
    }

    #[test]
    fn syntax_error_names_document_and_line() {
        let text = format!("{POD}---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: [broken\n");
        let err = parse_documents("bad.yaml", &text).unwrap_err().to_string();
        assert!(
            err.starts_with("error parsing bad.yaml (document 2, line "),
            "{err}"
        );
        // Line numbers count from the start of the file: the broken line is line 15.
        assert!(err.contains("line 15") || err.contains("line 16"), "{err}");
    }

    #[test]
    fn missing_fields_are_named() {
        let err = parse_documents("x.yaml", "metadata:\n  name: x\n")
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "error validating x.yaml (document 1): apiVersion not set, kind not set"
        );
        let err = parse_documents("x.yaml", "apiVersion: v1\nkind: Pod\nmetadata: {}\n")
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "error validating x.yaml (document 1): metadata.name not set"
        );
        let err = parse_documents("x.yaml", "- a\n- b\n")
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "error parsing x.yaml (document 1): expected an object, got a list"
        );
    }

    #[test]
    fn directories_load_manifest_files_sorted() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("b.yml"),
            POD.replace("nginx\nspec", "b\nspec"),
        )
        .unwrap();
        std::fs::write(
            dir.path().join("a.yaml"),
            POD.replace("nginx\nspec", "a\nspec"),
        )
        .unwrap();
        std::fs::write(
            dir.path().join("c.json"),
            r#"{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"c"}}"#,
        )
        .unwrap();
        std::fs::write(dir.path().join("README.md"), "not a manifest").unwrap();
        let m = load(dir.path().to_str().unwrap()).unwrap();
        let names: Vec<_> = m.iter().map(|m| m.name().to_string()).collect();
        assert_eq!(names, vec!["a", "b", "c"]);
        assert!(m[0].source.ends_with("a.yaml"));
    }

    #[test]
    fn missing_file_is_a_clear_error() {
        let err = load("/nonexistent/x.yaml").unwrap_err().to_string();
        assert!(err.starts_with("/nonexistent/x.yaml: "), "{err}");
    }
}
