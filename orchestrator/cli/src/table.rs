//! `meta.k8s.io/v1` Table responses and their kubectl-style rendering.

use chrono::{DateTime, Utc};
use serde_json::Value;

/// One column definition of a server-side Table.
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    pub name: String,
    pub priority: i64,
}

/// One row: its cells and (when the server included it) the object's metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub cells: Vec<Value>,
    pub object: Option<Value>,
}

impl Row {
    /// The namespace of the object behind this row, if the server sent it.
    pub fn namespace(&self) -> Option<&str> {
        self.object
            .as_ref()?
            .pointer("/metadata/namespace")?
            .as_str()
    }
}

/// A parsed Table.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Table {
    pub columns: Vec<Column>,
    pub rows: Vec<Row>,
    pub resource_version: Option<String>,
}

/// Parse a Table if `v` is one (`kind: Table`), else `None`.
pub fn parse_table(v: &Value) -> Option<Table> {
    if v.get("kind")?.as_str()? != "Table" {
        return None;
    }
    let columns = v
        .get("columnDefinitions")
        .and_then(Value::as_array)
        .map(|cols| {
            cols.iter()
                .map(|c| Column {
                    name: c
                        .get("name")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string(),
                    priority: c.get("priority").and_then(Value::as_i64).unwrap_or(0),
                })
                .collect()
        })
        .unwrap_or_default();
    let rows = v
        .get("rows")
        .and_then(Value::as_array)
        .map(|rows| {
            rows.iter()
                .map(|r| Row {
                    cells: r
                        .get("cells")
                        .and_then(Value::as_array)
                        .cloned()
                        .unwrap_or_default(),
                    object: r.get("object").cloned(),
                })
                .collect()
        })
        .unwrap_or_default();
    let resource_version = v
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .map(str::to_string);
    Some(Table {
        columns,
        rows,
        resource_version,
    })
}

/// How to print a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrintOptions {
    /// `-o wide`: include columns with priority > 0.
    pub wide: bool,
    /// `-A` on a namespaced resource: a NAMESPACE column first.
    pub with_namespace: bool,
}

/// The header cells for `columns` under `opts`.
pub fn header(columns: &[Column], opts: PrintOptions) -> Vec<String> {
    let mut h = Vec::new();
    if opts.with_namespace {
        h.push("NAMESPACE".to_string());
    }
    h.extend(
        columns
            .iter()
            .filter(|c| opts.wide || c.priority == 0)
            .map(|c| c.name.to_uppercase()),
    );
    h
}

/// The printed cells of `row` under `opts`.
pub fn row_cells(columns: &[Column], row: &Row, opts: PrintOptions) -> Vec<String> {
    let mut cells = Vec::new();
    if opts.with_namespace {
        cells.push(row.namespace().unwrap_or("").to_string());
    }
    for (i, cell) in row.cells.iter().enumerate() {
        let priority = columns.get(i).map_or(0, |c| c.priority);
        if opts.wide || priority == 0 {
            cells.push(cell_text(cell));
        }
    }
    cells
}

/// How kubectl prints one Table cell.
pub fn cell_text(v: &Value) -> String {
    match v {
        Value::Null => "<none>".to_string(),
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => other.to_string(),
    }
}

/// Render rows (header first, if any) as aligned text with three spaces between columns.
pub fn render(lines: &[Vec<String>]) -> String {
    let mut text = String::new();
    for line in lines {
        text.push_str(&line.join("\t"));
        text.push('\n');
    }
    crate::tabwriter::align(&text, 3)
}

/// A NAME/AGE row for an object when the server gave no Table.
pub fn fallback_row(obj: &Value, now: DateTime<Utc>) -> Row {
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    let age = obj
        .pointer("/metadata/creationTimestamp")
        .and_then(Value::as_str)
        .map_or_else(|| "<unknown>".to_string(), |ts| age_since(ts, now));
    Row {
        cells: vec![Value::String(name.to_string()), Value::String(age)],
        object: Some(obj.clone()),
    }
}

/// The NAME/AGE columns used with [`fallback_row`].
pub fn fallback_columns() -> Vec<Column> {
    ["Name", "Age"]
        .iter()
        .map(|n| Column {
            name: n.to_string(),
            priority: 0,
        })
        .collect()
}

/// The age of an RFC 3339 timestamp, printed like kubectl.
pub fn age_since(timestamp: &str, now: DateTime<Utc>) -> String {
    match DateTime::parse_from_rfc3339(timestamp) {
        Ok(t) => human_duration((now - t.with_timezone(&Utc)).num_seconds()),
        Err(_) => "<unknown>".to_string(),
    }
}

/// Kubernetes' `duration.HumanDuration` for a number of seconds.
pub fn human_duration(seconds: i64) -> String {
    bpfk_apimachinery::table::human_duration(chrono::TimeDelta::seconds(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pods_table() -> Value {
        json!({
            "kind": "Table", "apiVersion": "meta.k8s.io/v1",
            "metadata": {"resourceVersion": "42"},
            "columnDefinitions": [
                {"name": "Name", "type": "string", "priority": 0},
                {"name": "Ready", "type": "string", "priority": 0},
                {"name": "Status", "type": "string", "priority": 0},
                {"name": "Restarts", "type": "string", "priority": 0},
                {"name": "Age", "type": "string", "priority": 0},
                {"name": "IP", "type": "string", "priority": 1},
                {"name": "Node", "type": "string", "priority": 1}
            ],
            "rows": [
                {"cells": ["nginx", "0/1", "Pending", 0, "5s", "<none>", null],
                 "object": {"kind": "PartialObjectMetadata", "metadata": {"name": "nginx", "namespace": "default"}}},
                {"cells": ["web-1", "1/1", "Running", 2, "3m", "10.244.0.7", "node-a"],
                 "object": {"metadata": {"name": "web-1", "namespace": "prod"}}}
            ]
        })
    }

    fn print(table: &Table, opts: PrintOptions) -> String {
        let mut lines = vec![header(&table.columns, opts)];
        lines.extend(
            table
                .rows
                .iter()
                .map(|r| row_cells(&table.columns, r, opts)),
        );
        render(&lines)
    }

    #[test]
    fn parses_table() {
        let t = parse_table(&pods_table()).unwrap();
        assert_eq!(t.columns.len(), 7);
        assert_eq!(t.rows.len(), 2);
        assert_eq!(t.resource_version.as_deref(), Some("42"));
        assert_eq!(t.rows[1].namespace(), Some("prod"));
        assert!(parse_table(&json!({"kind": "PodList", "items": []})).is_none());
    }

    #[test]
    fn default_output_hides_priority_columns() {
        let t = parse_table(&pods_table()).unwrap();
        let opts = PrintOptions {
            wide: false,
            with_namespace: false,
        };
        assert_eq!(
            print(&t, opts),
            "NAME    READY   STATUS    RESTARTS   AGE\n\
             nginx   0/1     Pending   0          5s\n\
             web-1   1/1     Running   2          3m\n"
        );
    }

    #[test]
    fn wide_and_all_namespaces() {
        let t = parse_table(&pods_table()).unwrap();
        let opts = PrintOptions {
            wide: true,
            with_namespace: true,
        };
        assert_eq!(
            print(&t, opts),
            "NAMESPACE   NAME    READY   STATUS    RESTARTS   AGE   IP           NODE\n\
             default     nginx   0/1     Pending   0          5s    <none>       <none>\n\
             prod        web-1   1/1     Running   2          3m    10.244.0.7   node-a\n"
        );
    }

    #[test]
    fn fallback_rows_have_name_and_age() {
        let now = DateTime::parse_from_rfc3339("2026-01-01T00:10:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let obj = json!({"metadata": {"name": "x", "creationTimestamp": "2026-01-01T00:00:00Z"}});
        let row = fallback_row(&obj, now);
        assert_eq!(row.cells, vec![json!("x"), json!("10m")]);
        let opts = PrintOptions {
            wide: false,
            with_namespace: false,
        };
        assert_eq!(header(&fallback_columns(), opts), vec!["NAME", "AGE"]);
    }

    #[test]
    fn human_durations() {
        assert_eq!(human_duration(-5), "<invalid>");
        assert_eq!(human_duration(0), "0s");
        assert_eq!(human_duration(119), "119s");
        assert_eq!(human_duration(120), "2m");
        assert_eq!(human_duration(125), "2m5s");
        assert_eq!(human_duration(600), "10m");
        assert_eq!(human_duration(3 * 3600 + 60), "3h1m");
        assert_eq!(human_duration(10 * 3600), "10h");
        assert_eq!(human_duration(50 * 3600), "2d2h");
        assert_eq!(human_duration(30 * 24 * 3600), "30d");
        assert_eq!(human_duration(3 * 365 * 24 * 3600 + 24 * 3600), "3y1d");
    }
}
