//! `bpfk get`: tables (server-side Table output), yaml/json/name output, watch.

use futures::StreamExt;
use serde_json::{json, Value};

use crate::cli::{GetArgs, OutputFormat};
use crate::client::{with_query, Ctx, WatchStep, ACCEPT_TABLE};
use crate::discovery::{ResourceInfo, Resources};
use crate::error::{Error, Result};
use crate::table::{self, Column, PrintOptions, Row};

/// Group `TYPE[,TYPE...] NAME...` or `TYPE/NAME...` arguments into (type, names) pairs,
/// in the order given.
pub fn targets(kind: &str, names: &[String]) -> Result<Vec<(String, Vec<String>)>> {
    if kind.contains('/') {
        let mut out: Vec<(String, Vec<String>)> = Vec::new();
        for arg in std::iter::once(kind).chain(names.iter().map(String::as_str)) {
            let Some((t, n)) = arg
                .split_once('/')
                .filter(|(t, n)| !t.is_empty() && !n.is_empty())
            else {
                return Err(Error::Usage(format!(
                    "there is no need to specify a resource type as a separate argument when passing arguments in resource/name form (e.g. 'bpfk get resource/<resource_name>' instead of 'bpfk get resource resource/<resource_name>'); got {arg:?}"
                )));
            };
            match out.iter_mut().find(|(k, _)| k == t) {
                Some((_, ns)) => ns.push(n.to_string()),
                None => out.push((t.to_string(), vec![n.to_string()])),
            }
        }
        return Ok(out);
    }
    let kinds: Vec<&str> = kind.split(',').filter(|k| !k.is_empty()).collect();
    if kinds.is_empty() {
        return Err(Error::Usage(
            "you must specify the type of resource to get".to_string(),
        ));
    }
    Ok(kinds
        .into_iter()
        .map(|k| (k.to_string(), names.to_vec()))
        .collect())
}

/// Split `TYPE NAME...` / `TYPE/NAME...` arguments into the type and the names.
pub fn split_type_and_names(kind: &str, names: &[String]) -> Result<(String, Vec<String>)> {
    if let Some((t, n)) = kind.split_once('/') {
        let mut all = vec![n.to_string()];
        for other in names {
            match other.split_once('/') {
                Some((t2, n2)) if t2 == t => all.push(n2.to_string()),
                _ => {
                    return Err(Error::Usage(format!(
                        "there is no need to specify a resource type as a separate argument when passing arguments in resource/name form (e.g. 'bpfk get {t}/{n}' instead of 'bpfk get {t} {n}'); got {other:?}"
                    )))
                }
            }
        }
        if n.is_empty() {
            return Err(Error::Usage(format!("arguments in resource/name form must have a single resource and name, got {kind:?}")));
        }
        return Ok((t.to_string(), all));
    }
    Ok((kind.to_string(), names.to_vec()))
}

/// "No resources found in default namespace." / "No resources found".
pub fn no_resources_message(namespace: Option<&str>) -> String {
    match namespace {
        Some(ns) => format!("No resources found in {ns} namespace."),
        None => "No resources found".to_string(),
    }
}

/// Fill `apiVersion` and `kind` on list items (servers leave them out).
pub fn with_type_meta(mut obj: Value, info: &ResourceInfo) -> Value {
    if let Some(map) = obj.as_object_mut() {
        map.entry("apiVersion")
            .or_insert_with(|| Value::String(info.api_version()));
        map.entry("kind")
            .or_insert_with(|| Value::String(info.kind.clone()));
    }
    obj
}

/// `v` (an object or a list) without `metadata.managedFields`, as kubectl prints objects
/// unless asked for them.
fn without_managed_fields(v: &Value) -> Value {
    let mut out = v.clone();
    let strip = |o: &mut Value| {
        if let Some(meta) = o.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.remove("managedFields");
        }
    };
    match out.get_mut("items").and_then(Value::as_array_mut) {
        Some(items) => items.iter_mut().for_each(strip),
        None => strip(&mut out),
    }
    out
}

/// Print an object or list as YAML or JSON (JSON indented by 4, like kubectl), without
/// managed fields.
pub fn print_object(v: &Value, format: OutputFormat) -> Result<()> {
    let v = &without_managed_fields(v);
    match format {
        OutputFormat::Json => {
            let mut buf = Vec::new();
            let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
            let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
            serde::Serialize::serialize(v, &mut ser).map_err(|e| Error::Decode(e.to_string()))?;
            println!("{}", String::from_utf8_lossy(&buf));
        }
        _ => {
            let y = serde_yaml::to_string(v).map_err(|e| Error::Decode(e.to_string()))?;
            print!("{y}");
        }
    }
    Ok(())
}

fn object_name(v: &Value) -> &str {
    v.pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// Output state of a table being printed (header once, watch rows aligned to it).
struct TablePrinter {
    columns: Vec<Column>,
    opts: PrintOptions,
    header_printed: bool,
    widths: Vec<usize>,
}

impl TablePrinter {
    fn new(opts: PrintOptions) -> Self {
        TablePrinter {
            columns: Vec::new(),
            opts,
            header_printed: false,
            widths: Vec::new(),
        }
    }

    fn set_columns(&mut self, columns: Vec<Column>) {
        if self.columns.is_empty() && !columns.is_empty() {
            self.columns = columns;
        }
    }

    /// Print rows, with the header first if it was not printed yet.
    fn print(&mut self, rows: &[Row]) {
        if rows.is_empty() {
            return;
        }
        let mut lines = Vec::new();
        if !self.header_printed {
            lines.push(table::header(&self.columns, self.opts));
            self.header_printed = true;
        }
        lines.extend(
            rows.iter()
                .map(|r| table::row_cells(&self.columns, r, self.opts)),
        );
        for line in &lines {
            for (i, cell) in line.iter().enumerate() {
                let w = cell.chars().count() + 3;
                if i >= self.widths.len() {
                    self.widths.push(w);
                } else if w > self.widths[i] {
                    self.widths[i] = w;
                }
            }
        }
        let mut out = String::new();
        for line in &lines {
            for (i, cell) in line.iter().enumerate() {
                out.push_str(cell);
                if i + 1 < line.len() {
                    let pad = self.widths[i].saturating_sub(cell.chars().count());
                    out.extend(std::iter::repeat_n(' ', pad));
                }
            }
            out.push('\n');
        }
        print!("{out}");
    }
}

pub async fn run(ctx: &Ctx, resources: &Resources, args: &GetArgs) -> Result<()> {
    let mut resolved = Vec::new();
    for (kind, names) in targets(&args.kind, &args.names)? {
        resolved.push((resources.resolve(&kind)?, names));
    }
    if args.all_namespaces && resolved.iter().any(|(_, n)| !n.is_empty()) {
        return Err(Error::Usage(
            "a resource cannot be retrieved by name across all namespaces".to_string(),
        ));
    }
    let multi = resolved.len() > 1;
    if multi && args.watch {
        return Err(Error::Usage(format!(
            "watch is only supported on individual resources and resource collections, but {} resource types were found",
            resolved.len()
        )));
    }
    let ns_for = |info: &ResourceInfo| -> Option<String> {
        (info.namespaced && !args.all_namespaces).then(|| ctx.namespace.clone())
    };
    let list_params = [
        ("labelSelector", args.selector.clone().unwrap_or_default()),
        (
            "fieldSelector",
            args.field_selector.clone().unwrap_or_default(),
        ),
    ];
    let mut failures = 0;
    match args.output {
        None | Some(OutputFormat::Wide) => {
            let mut printed = 0;
            for (info, names) in &resolved {
                let opts = PrintOptions {
                    wide: args.output == Some(OutputFormat::Wide),
                    with_namespace: args.all_namespaces && info.namespaced,
                };
                let layout = Layout {
                    print: opts,
                    watch: args.watch,
                    prefix_names: multi,
                    blank_line_first: printed > 0,
                    quiet_when_empty: multi,
                };
                let ns = ns_for(info);
                match get_table(ctx, info, ns.as_deref(), names, &list_params, layout).await {
                    Ok(n) => printed += n,
                    Err(Error::Reported(n)) => failures += n,
                    Err(e) => return Err(e),
                }
            }
            if multi && printed == 0 && failures == 0 && resolved.iter().all(|(_, n)| n.is_empty())
            {
                let ns = (!args.all_namespaces).then_some(ctx.namespace.as_str());
                eprintln!("{}", no_resources_message(ns));
            }
        }
        Some(format) if !multi => {
            let (info, names) = &resolved[0];
            let ns = ns_for(info);
            return get_objects(
                ctx,
                info,
                ns.as_deref(),
                names,
                &list_params,
                format,
                args.watch,
            )
            .await;
        }
        Some(format) => {
            let mut objects = Vec::new();
            for (info, names) in &resolved {
                let ns = ns_for(info);
                let (objs, errors, _) =
                    fetch_objects(ctx, info, ns.as_deref(), names, &list_params).await?;
                objects.extend(objs.into_iter().map(|o| (*info, o)));
                failures += errors.len();
                for e in errors {
                    eprintln!("{}", e.report());
                }
            }
            if format == OutputFormat::Name {
                for (info, o) in &objects {
                    println!("{}/{}", info.kind_ref(), object_name(o));
                }
            } else {
                let items: Vec<Value> = objects.into_iter().map(|(_, o)| o).collect();
                print_object(&list_of(items), format)?;
            }
        }
    }
    if failures > 0 {
        return Err(Error::Reported(failures));
    }
    Ok(())
}

/// How one type's table sits in the output of a multi-type `get`.
#[derive(Debug, Clone, Copy)]
struct Layout {
    print: PrintOptions,
    /// Watch after printing.
    watch: bool,
    /// Print names as `TYPE/NAME` (several types in one command).
    prefix_names: bool,
    /// Separate from a previous table with a blank line.
    blank_line_first: bool,
    /// Do not print "No resources found" for this type alone.
    quiet_when_empty: bool,
}

fn list_of(items: Vec<Value>) -> Value {
    json!({
        "apiVersion": "v1",
        "items": items,
        "kind": "List",
        "metadata": {"resourceVersion": ""}
    })
}

async fn get_table(
    ctx: &Ctx,
    info: &ResourceInfo,
    ns: Option<&str>,
    names: &[String],
    list_params: &[(&str, String)],
    layout: Layout,
) -> Result<usize> {
    let (opts, watch) = (layout.print, layout.watch);
    let mut printer = TablePrinter::new(opts);
    let now = chrono::Utc::now();
    let mut errors = Vec::new();
    let mut rows = Vec::new();
    let mut resource_version = None;
    if names.is_empty() {
        let uri = with_query(&info.collection_path(ns), list_params);
        let v = ctx.get_json(&uri, Some(ACCEPT_TABLE)).await?;
        match table::parse_table(&v) {
            Some(t) => {
                printer.set_columns(t.columns);
                rows = t.rows;
                resource_version = t.resource_version;
            }
            None => {
                printer.set_columns(table::fallback_columns());
                rows = items(&v)
                    .iter()
                    .map(|o| table::fallback_row(o, now))
                    .collect();
                resource_version = v
                    .pointer("/metadata/resourceVersion")
                    .and_then(Value::as_str)
                    .map(str::to_string);
            }
        }
    } else {
        for name in names {
            match ctx
                .get_json(&info.object_path(ns, name), Some(ACCEPT_TABLE))
                .await
            {
                Ok(v) => match table::parse_table(&v) {
                    Some(t) => {
                        printer.set_columns(t.columns);
                        rows.extend(t.rows);
                    }
                    None => {
                        printer.set_columns(table::fallback_columns());
                        rows.push(table::fallback_row(&v, now));
                    }
                },
                Err(e) => errors.push(e),
            }
        }
    }
    if rows.is_empty() && names.is_empty() && !watch && !layout.quiet_when_empty {
        eprintln!("{}", no_resources_message(ns));
    }
    if layout.prefix_names {
        let prefix = format!("{}/", info.kind_ref());
        for row in &mut rows {
            if let Some(Value::String(name)) = row.cells.first_mut() {
                name.insert_str(0, &prefix);
            }
        }
    }
    if layout.blank_line_first && !rows.is_empty() {
        println!();
    }
    let printed = rows.len();
    printer.print(&rows);
    let failures = errors.len();
    for e in errors {
        eprintln!("{}", e.report());
    }
    if failures > 0 {
        return Err(Error::Reported(failures));
    }
    if watch {
        let params = watch_params(list_params, names)?;
        let mut rv = resource_version.unwrap_or_default();
        loop {
            let uri = with_query(
                &info.collection_path(ns),
                &[
                    params.as_slice(),
                    &[
                        ("watch", "true".to_string()),
                        ("resourceVersion", rv.clone()),
                        ("allowWatchBookmarks", "true".to_string()),
                    ],
                ]
                .concat(),
            );
            let stream = match ctx.watch(&uri, ACCEPT_TABLE).await {
                Ok(stream) => stream,
                Err(e) if e.api_code() == Some(410) => {
                    rv = current_resource_version(ctx, info, ns, &params).await?;
                    continue;
                }
                Err(e) => return Err(e),
            };
            futures::pin_mut!(stream);
            let mut seen = 0usize;
            while let Some(ev) = stream.next().await {
                seen += 1;
                let (obj, deleted) = match ev?.step()? {
                    WatchStep::Changed(o) => (o, false),
                    WatchStep::Deleted(o) => (o, true),
                    WatchStep::Bookmark(v) => {
                        if !v.is_empty() {
                            rv = v;
                        }
                        continue;
                    }
                    WatchStep::Expired => {
                        // Our resourceVersion was compacted away: continue from now.
                        rv = current_resource_version(ctx, info, ns, &params).await?;
                        break;
                    }
                    WatchStep::Ignore => continue,
                };
                if let Some(v) = event_resource_version(&obj) {
                    rv = v;
                }
                let rows = watch_rows(ctx, info, ns, &obj, deleted, &mut printer).await;
                printer.print(&rows);
            }
            if seen == 0 {
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
        }
    }
    Ok(printed)
}

fn watch_params(
    list_params: &[(&str, String)],
    names: &[String],
) -> Result<Vec<(&'static str, String)>> {
    let mut label = String::new();
    let mut field = String::new();
    for (k, v) in list_params {
        match *k {
            "labelSelector" => label = v.clone(),
            "fieldSelector" => field = v.clone(),
            _ => {}
        }
    }
    match names {
        [] => {}
        [one] => {
            let by_name = format!("metadata.name={one}");
            field = if field.is_empty() { by_name } else { format!("{field},{by_name}") };
        }
        _ => {
            return Err(Error::Usage(
                "watch is only supported on individual resources and resource collections, but 2 or more resources were found".into(),
            ))
        }
    }
    Ok(vec![("labelSelector", label), ("fieldSelector", field)])
}

/// The collection's current resourceVersion (to restart a watch after 410 Gone).
async fn current_resource_version(
    ctx: &Ctx,
    info: &ResourceInfo,
    ns: Option<&str>,
    params: &[(&'static str, String)],
) -> Result<String> {
    let uri = with_query(
        &info.collection_path(ns),
        &[params, &[("limit", "1".to_string())]].concat(),
    );
    let v = ctx.get_json(&uri, None).await?;
    Ok(v.pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string())
}

fn event_resource_version(obj: &Value) -> Option<String> {
    let direct = obj
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str);
    let from_row = obj
        .pointer("/rows/0/object/metadata/resourceVersion")
        .and_then(Value::as_str);
    from_row
        .or(direct)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

async fn watch_rows(
    ctx: &Ctx,
    info: &ResourceInfo,
    ns: Option<&str>,
    obj: &Value,
    deleted: bool,
    printer: &mut TablePrinter,
) -> Vec<Row> {
    if let Some(t) = table::parse_table(obj) {
        printer.set_columns(t.columns);
        return t.rows;
    }
    // The server sent a plain object: ask for its Table row, unless it is gone.
    let now = chrono::Utc::now();
    if !deleted {
        let obj_ns = obj
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .or(ns);
        if let Ok(v) = ctx
            .get_json(
                &info.object_path(obj_ns, object_name(obj)),
                Some(ACCEPT_TABLE),
            )
            .await
        {
            if let Some(t) = table::parse_table(&v) {
                printer.set_columns(t.columns);
                return t.rows;
            }
        }
    }
    if printer.columns.is_empty() {
        printer.set_columns(table::fallback_columns());
    }
    let mut row = table::fallback_row(obj, now);
    // Keep the row as wide as the header.
    let width = printer.columns.len();
    if row.cells.len() < width {
        let age = row.cells.pop().unwrap_or(Value::Null);
        while row.cells.len() + 1 < width {
            row.cells.push(Value::String(String::new()));
        }
        row.cells.push(age);
    }
    vec![row]
}

fn items(list: &Value) -> Vec<Value> {
    list.get("items")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

/// The objects named (or listed, when no names), with apiVersion/kind filled in;
/// per-name errors; the list's resourceVersion.
async fn fetch_objects(
    ctx: &Ctx,
    info: &ResourceInfo,
    ns: Option<&str>,
    names: &[String],
    list_params: &[(&str, String)],
) -> Result<(Vec<Value>, Vec<Error>, String)> {
    let mut objects = Vec::new();
    let mut errors = Vec::new();
    let mut list_rv = String::new();
    if names.is_empty() {
        let v = ctx
            .get_json(&with_query(&info.collection_path(ns), list_params), None)
            .await?;
        list_rv = v
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        objects = items(&v)
            .into_iter()
            .map(|o| with_type_meta(o, info))
            .collect();
    } else {
        for name in names {
            match ctx.get_json(&info.object_path(ns, name), None).await {
                Ok(o) => objects.push(with_type_meta(o, info)),
                Err(e) => errors.push(e),
            }
        }
    }
    Ok((objects, errors, list_rv))
}

async fn get_objects(
    ctx: &Ctx,
    info: &ResourceInfo,
    ns: Option<&str>,
    names: &[String],
    list_params: &[(&str, String)],
    format: OutputFormat,
    watch: bool,
) -> Result<()> {
    let (objects, errors, list_rv) = fetch_objects(ctx, info, ns, names, list_params).await?;
    if names.is_empty() && objects.is_empty() && format == OutputFormat::Name && !watch {
        eprintln!("{}", no_resources_message(ns));
    }
    match format {
        OutputFormat::Name => {
            for o in &objects {
                println!("{}/{}", info.kind_ref(), object_name(o));
            }
        }
        _ => {
            if names.len() == 1 && objects.len() == 1 {
                print_object(&objects[0], format)?;
            } else if !objects.is_empty() || errors.is_empty() {
                let list = json!({
                    "apiVersion": "v1",
                    "items": objects,
                    "kind": "List",
                    "metadata": {"resourceVersion": ""}
                });
                print_object(&list, format)?;
            }
        }
    }
    let failures = errors.len();
    for e in errors {
        eprintln!("{}", e.report());
    }
    if failures > 0 {
        return Err(Error::Reported(failures));
    }
    if watch {
        let params = watch_params(list_params, names)?;
        let mut rv = list_rv;
        loop {
            let uri = with_query(
                &info.collection_path(ns),
                &[
                    params.as_slice(),
                    &[
                        ("watch", "true".to_string()),
                        ("resourceVersion", rv.clone()),
                    ],
                ]
                .concat(),
            );
            let stream = match ctx.watch(&uri, "application/json").await {
                Ok(stream) => stream,
                Err(e) if e.api_code() == Some(410) => {
                    rv = current_resource_version(ctx, info, ns, &params).await?;
                    continue;
                }
                Err(e) => return Err(e),
            };
            futures::pin_mut!(stream);
            let mut seen = 0usize;
            while let Some(ev) = stream.next().await {
                seen += 1;
                let obj = match ev?.step()? {
                    WatchStep::Changed(o) | WatchStep::Deleted(o) => o,
                    WatchStep::Bookmark(v) => {
                        if !v.is_empty() {
                            rv = v;
                        }
                        continue;
                    }
                    WatchStep::Expired => {
                        rv = current_resource_version(ctx, info, ns, &params).await?;
                        break;
                    }
                    WatchStep::Ignore => continue,
                };
                if let Some(v) = event_resource_version(&obj) {
                    rv = v;
                }
                let obj = with_type_meta(obj, info);
                match format {
                    OutputFormat::Name => println!("{}/{}", info.kind_ref(), object_name(&obj)),
                    OutputFormat::Yaml => {
                        println!("---");
                        print_object(&obj, format)?;
                    }
                    _ => print_object(&obj, format)?,
                }
            }
            if seen == 0 {
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_group_types_and_names() {
        let t =
            |k: &str, n: &[&str]| targets(k, &n.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(
            t("pod/a", &["svc/b", "pod/c"]).unwrap(),
            vec![
                ("pod".to_string(), vec!["a".to_string(), "c".to_string()]),
                ("svc".to_string(), vec!["b".to_string()])
            ]
        );
        assert_eq!(
            t("po,svc", &["x"]).unwrap(),
            vec![
                ("po".to_string(), vec!["x".to_string()]),
                ("svc".to_string(), vec!["x".to_string()])
            ]
        );
        assert_eq!(
            t("deploy", &[]).unwrap(),
            vec![("deploy".to_string(), vec![])]
        );
        assert!(t("pod/a", &["b"]).is_err());
        assert!(t("pod/", &[]).is_err());
        assert!(t(",", &[]).is_err());
    }

    #[test]
    fn type_slash_name_forms() {
        assert_eq!(
            split_type_and_names("pod/nginx", &["pod/web".into()]).unwrap(),
            (
                "pod".to_string(),
                vec!["nginx".to_string(), "web".to_string()]
            )
        );
        assert_eq!(
            split_type_and_names("pods", &["a".into(), "b".into()]).unwrap(),
            ("pods".to_string(), vec!["a".to_string(), "b".to_string()])
        );
        assert!(split_type_and_names("pod/nginx", &["web".into()]).is_err());
        assert!(split_type_and_names("pod/", &[]).is_err());
    }

    #[test]
    fn empty_messages() {
        assert_eq!(
            no_resources_message(Some("default")),
            "No resources found in default namespace."
        );
        assert_eq!(no_resources_message(None), "No resources found");
    }

    #[test]
    fn objects_and_list_items_print_without_managed_fields() {
        let mf = serde_json::json!([{"manager": "kubectl", "operation": "Apply"}]);
        let obj = serde_json::json!({"metadata": {"name": "a", "managedFields": mf}});
        assert_eq!(
            without_managed_fields(&obj),
            serde_json::json!({"metadata": {"name": "a"}})
        );
        let list = serde_json::json!({"kind": "List", "items": [obj.clone(), obj]});
        let shown = without_managed_fields(&list);
        assert!(shown["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|o| o["metadata"].get("managedFields").is_none()));
    }

    #[test]
    fn watch_of_one_name_uses_a_field_selector() {
        let p = watch_params(
            &[("fieldSelector", "status.phase=Running".into())],
            &["nginx".into()],
        )
        .unwrap();
        assert_eq!(
            p[1],
            (
                "fieldSelector",
                "status.phase=Running,metadata.name=nginx".to_string()
            )
        );
        assert!(watch_params(&[], &["a".into(), "b".into()]).is_err());
    }

    #[test]
    fn type_meta_is_filled_in() {
        let r = crate::discovery::tests::sample();
        let info = r.resolve("deploy").unwrap();
        let o = with_type_meta(json!({"metadata": {"name": "x"}}), info);
        assert_eq!(o["apiVersion"], "apps/v1");
        assert_eq!(o["kind"], "Deployment");
    }
}
