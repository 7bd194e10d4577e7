//! Label selectors and field selectors.
//!
//! [`Selector`] is a parsed label selector: from the query string syntax (`a=b,c in (x,y),!d`)
//! with [`Selector::parse`], or from a `metav1.LabelSelector` (`matchLabels` +
//! `matchExpressions`) with [`Selector::from_label_selector`] / [`Selector::from_value`].
//! [`FieldSelector`] is a parsed field selector (`metadata.name=x,status.phase!=Running`),
//! matched against a JSON object by dotted path; [`supported_fields`] lists the fields each
//! resource accepts (anything else is a 400 BadRequest in Kubernetes).

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use serde_json::Value;

use crate::names;
use crate::registry::ResourceInfo;

/// Errors from parsing or converting a selector.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    /// The selector string does not follow the grammar. The message is Kubernetes' lexer
    /// message (`found 'c', expected: ',' or 'end of string'`); the API server prefixes it.
    #[error("{0}")]
    Syntax(String),
    /// A label key is not a valid qualified name.
    #[error("invalid label key {key:?}: {reason}")]
    InvalidKey {
        /// The key.
        key: String,
        /// Why it is invalid.
        reason: String,
    },
    /// A label value is not valid.
    #[error("invalid label value: {value:?}: {reason}")]
    InvalidValue {
        /// The value.
        value: String,
        /// Why it is invalid.
        reason: String,
    },
    /// A `matchExpressions` operator is unknown or its values do not fit it.
    #[error("{0}")]
    InvalidExpression(String),
    /// A field selector term is malformed.
    #[error("invalid selector: '{0}'; can't understand '{0}'")]
    FieldSyntax(String),
    /// A field selector names a field the resource does not support.
    #[error("field label not supported: {0}")]
    UnsupportedField(String),
}

/// Shorthand for results of this module.
pub type Result<T, E = SelectorError> = std::result::Result<T, E>;

/// One label requirement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requirement {
    /// `key=value` / `key==value`: the label exists and equals the value.
    Equals(String, String),
    /// `key!=value`: the label is absent or differs.
    NotEquals(String, String),
    /// `key in (a,b)`: the label exists and is one of the values.
    In(String, Vec<String>),
    /// `key notin (a,b)`: the label is absent or none of the values.
    NotIn(String, Vec<String>),
    /// `key`: the label exists.
    Exists(String),
    /// `!key`: the label is absent.
    DoesNotExist(String),
    /// `key>n`: the label is an integer greater than n.
    GreaterThan(String, i64),
    /// `key<n`: the label is an integer less than n.
    LessThan(String, i64),
}

impl Requirement {
    /// The label key this requirement is about.
    pub fn key(&self) -> &str {
        match self {
            Requirement::Equals(k, _)
            | Requirement::NotEquals(k, _)
            | Requirement::In(k, _)
            | Requirement::NotIn(k, _)
            | Requirement::Exists(k)
            | Requirement::DoesNotExist(k)
            | Requirement::GreaterThan(k, _)
            | Requirement::LessThan(k, _) => k,
        }
    }

    /// Whether the labels satisfy this requirement.
    pub fn matches(&self, labels: &dyn Labels) -> bool {
        let got = labels.label(self.key());
        match self {
            Requirement::Equals(_, v) => got == Some(v.as_str()),
            Requirement::NotEquals(_, v) => got != Some(v.as_str()),
            Requirement::In(_, vs) => got.is_some_and(|g| vs.iter().any(|v| v == g)),
            Requirement::NotIn(_, vs) => !got.is_some_and(|g| vs.iter().any(|v| v == g)),
            Requirement::Exists(_) => got.is_some(),
            Requirement::DoesNotExist(_) => got.is_none(),
            Requirement::GreaterThan(_, n) => got
                .and_then(|g| g.parse::<i64>().ok())
                .is_some_and(|g| g > *n),
            Requirement::LessThan(_, n) => got
                .and_then(|g| g.parse::<i64>().ok())
                .is_some_and(|g| g < *n),
        }
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let set = |vs: &Vec<String>| {
            let mut v = vs.clone();
            v.sort();
            v.join(",")
        };
        match self {
            Requirement::Equals(k, v) => write!(f, "{k}={v}"),
            Requirement::NotEquals(k, v) => write!(f, "{k}!={v}"),
            Requirement::In(k, vs) => write!(f, "{k} in ({})", set(vs)),
            Requirement::NotIn(k, vs) => write!(f, "{k} notin ({})", set(vs)),
            Requirement::Exists(k) => write!(f, "{k}"),
            Requirement::DoesNotExist(k) => write!(f, "!{k}"),
            Requirement::GreaterThan(k, n) => write!(f, "{k}>{n}"),
            Requirement::LessThan(k, n) => write!(f, "{k}<{n}"),
        }
    }
}

/// Something labels can be read from.
pub trait Labels {
    /// The value of label `key`, if present.
    fn label(&self, key: &str) -> Option<&str>;
}

impl Labels for BTreeMap<String, String> {
    fn label(&self, key: &str) -> Option<&str> {
        self.get(key).map(String::as_str)
    }
}

impl Labels for std::collections::HashMap<String, String> {
    fn label(&self, key: &str) -> Option<&str> {
        self.get(key).map(String::as_str)
    }
}

/// A JSON label map (`metadata.labels`); non-string values count as absent.
impl Labels for serde_json::Map<String, Value> {
    fn label(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(Value::as_str)
    }
}

/// A parsed label selector: all requirements must hold (AND).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Selector {
    requirements: Vec<Requirement>,
    nothing: bool,
}

impl Selector {
    /// The selector that matches every object (the empty selector).
    pub fn everything() -> Self {
        Self::default()
    }

    /// The selector that matches no object (what a missing `LabelSelector` means).
    pub fn nothing() -> Self {
        Self {
            requirements: Vec::new(),
            nothing: true,
        }
    }

    /// Builds a selector from requirements after validating their keys and values.
    /// Value sets are sorted and deduplicated.
    pub fn from_requirements(mut requirements: Vec<Requirement>) -> Result<Self> {
        for r in &mut requirements {
            validate_requirement(r)?;
            if let Requirement::In(_, vs) | Requirement::NotIn(_, vs) = r {
                vs.sort();
                vs.dedup();
            }
        }
        Ok(Self {
            requirements,
            nothing: false,
        })
    }

    /// The requirements (empty for [`Selector::everything`]).
    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }

    /// Whether this selector matches everything.
    pub fn is_everything(&self) -> bool {
        !self.nothing && self.requirements.is_empty()
    }

    /// Parses the query-string syntax: `a=b`, `a==b`, `a!=b`, `a in (x,y)`, `a notin (x)`,
    /// `a`, `!a`, `a>1`, `a<1`, joined by `,` (AND). Whitespace is allowed around tokens.
    pub fn parse(s: &str) -> Result<Self> {
        let tokens = lex(s)?;
        let mut p = Parser { tokens, pos: 0 };
        let mut requirements = Vec::new();
        if p.peek() == &Token::End {
            return Ok(Self::everything());
        }
        loop {
            requirements.push(p.requirement()?);
            match p.next() {
                Token::End => break,
                Token::Comma => {
                    if p.peek() == &Token::End {
                        return Err(SelectorError::Syntax(
                            "found '', expected: identifier after ','".into(),
                        ));
                    }
                }
                t => {
                    return Err(SelectorError::Syntax(format!(
                        "found '{}', expected: ',' or 'end of string'",
                        t.text()
                    )))
                }
            }
        }
        Self::from_requirements(requirements)
    }

    /// The selector `k1=v1,k2=v2,...` matching a label set exactly on those keys (what a
    /// Service's `spec.selector` means).
    pub fn from_map(labels: &BTreeMap<String, String>) -> Result<Self> {
        Self::from_requirements(
            labels
                .iter()
                .map(|(k, v)| Requirement::Equals(k.clone(), v.clone()))
                .collect(),
        )
    }

    /// Converts a typed `metav1.LabelSelector`. An empty selector matches everything.
    pub fn from_label_selector(sel: &LabelSelector) -> Result<Self> {
        let mut reqs = Vec::new();
        for (k, v) in sel.match_labels.iter().flatten() {
            reqs.push(Requirement::Equals(k.clone(), v.clone()));
        }
        for e in sel.match_expressions.iter().flatten() {
            let values = e.values.clone().unwrap_or_default();
            let key = e.key.clone();
            let req = match e.operator.as_str() {
                "In" | "NotIn" if values.is_empty() => {
                    return Err(SelectorError::InvalidExpression(format!(
                        "values: Invalid value: []string(nil): for 'in', 'notin' operators, values set can't be empty (key {key:?})"
                    )))
                }
                "In" => Requirement::In(key, values),
                "NotIn" => Requirement::NotIn(key, values),
                "Exists" | "DoesNotExist" if !values.is_empty() => {
                    return Err(SelectorError::InvalidExpression(format!(
                        "values: Invalid value: {values:?}: values set must be empty for exists and does not exist (key {key:?})"
                    )))
                }
                "Exists" => Requirement::Exists(key),
                "DoesNotExist" => Requirement::DoesNotExist(key),
                op => {
                    return Err(SelectorError::InvalidExpression(format!(
                        "{op:?} is not a valid label selector operator"
                    )))
                }
            };
            reqs.push(req);
        }
        Self::from_requirements(reqs)
    }

    /// Converts a JSON `metav1.LabelSelector`; `null` (no selector) matches nothing, as in
    /// Kubernetes.
    pub fn from_value(v: &Value) -> Result<Self> {
        if v.is_null() {
            return Ok(Self::nothing());
        }
        let sel: LabelSelector = serde_json::from_value(v.clone()).map_err(|e| {
            SelectorError::InvalidExpression(format!("invalid label selector: {e}"))
        })?;
        Self::from_label_selector(&sel)
    }

    /// Whether `labels` satisfy every requirement.
    pub fn matches(&self, labels: &dyn Labels) -> bool {
        !self.nothing && self.requirements.iter().all(|r| r.matches(labels))
    }

    /// Whether the object's `metadata.labels` satisfy the selector (no labels = empty map).
    pub fn matches_object(&self, obj: &Value) -> bool {
        let empty = serde_json::Map::new();
        let labels = obj
            .pointer("/metadata/labels")
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        self.matches(labels)
    }
}

impl fmt::Display for Selector {
    /// The canonical string form (`a=b,c in (x,y)`), parseable by [`Selector::parse`].
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.requirements.iter().map(|r| r.to_string()).collect();
        f.write_str(&parts.join(","))
    }
}

fn validate_requirement(r: &Requirement) -> Result<()> {
    let key = r.key();
    let errs = names::qualified_name(key);
    if !errs.is_empty() {
        return Err(SelectorError::InvalidKey {
            key: key.to_string(),
            reason: errs.join("; "),
        });
    }
    let values: Vec<&String> = match r {
        Requirement::Equals(_, v) | Requirement::NotEquals(_, v) => vec![v],
        Requirement::In(_, vs) | Requirement::NotIn(_, vs) => vs.iter().collect(),
        _ => Vec::new(),
    };
    for v in values {
        let errs = names::label_value(v);
        if !errs.is_empty() {
            return Err(SelectorError::InvalidValue {
                value: v.clone(),
                reason: errs.join("; "),
            });
        }
    }
    Ok(())
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Ident(String),
    Bang,
    Eq,
    DoubleEq,
    NotEq,
    In,
    NotIn,
    Open,
    Close,
    Comma,
    Gt,
    Lt,
    End,
}

impl Token {
    fn text(&self) -> String {
        match self {
            Token::Ident(s) => s.clone(),
            Token::Bang => "!".into(),
            Token::Eq => "=".into(),
            Token::DoubleEq => "==".into(),
            Token::NotEq => "!=".into(),
            Token::In => "in".into(),
            Token::NotIn => "notin".into(),
            Token::Open => "(".into(),
            Token::Close => ")".into(),
            Token::Comma => ",".into(),
            Token::Gt => ">".into(),
            Token::Lt => "<".into(),
            Token::End => String::new(),
        }
    }
}

fn is_special(c: char) -> bool {
    matches!(c, '=' | '!' | '(' | ')' | ',' | '>' | '<')
}

fn lex(s: &str) -> Result<Vec<Token>> {
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    let mut out = Vec::new();
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let next = chars.get(i + 1).copied();
        let (tok, len) = match (c, next) {
            ('=', Some('=')) => (Token::DoubleEq, 2),
            ('!', Some('=')) => (Token::NotEq, 2),
            ('=', _) => (Token::Eq, 1),
            ('!', _) => (Token::Bang, 1),
            ('(', _) => (Token::Open, 1),
            (')', _) => (Token::Close, 1),
            (',', _) => (Token::Comma, 1),
            ('>', _) => (Token::Gt, 1),
            ('<', _) => (Token::Lt, 1),
            _ => {
                let start = i;
                while i < chars.len() && !chars[i].is_whitespace() && !is_special(chars[i]) {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                out.push(match word.as_str() {
                    "in" => Token::In,
                    "notin" => Token::NotIn,
                    _ => Token::Ident(word),
                });
                continue;
            }
        };
        out.push(tok);
        i += len;
    }
    out.push(Token::End);
    Ok(out)
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> &Token {
        self.tokens.get(self.pos).unwrap_or(&Token::End)
    }

    fn next(&mut self) -> Token {
        let t = self.peek().clone();
        self.pos += 1;
        t
    }

    fn requirement(&mut self) -> Result<Requirement> {
        let negated = self.peek() == &Token::Bang;
        if negated {
            self.pos += 1;
        }
        let key = match self.next() {
            Token::Ident(k) => k,
            t => {
                return Err(SelectorError::Syntax(format!(
                    "found '{}', expected: identifier",
                    t.text()
                )))
            }
        };
        if negated {
            return match self.peek() {
                Token::Comma | Token::End => Ok(Requirement::DoesNotExist(key)),
                t => Err(SelectorError::Syntax(format!(
                    "found '{}', expected: ',' or 'end of string' after '!{key}'",
                    t.text()
                ))),
            };
        }
        match self.next() {
            Token::Comma | Token::End => {
                self.pos -= 1;
                Ok(Requirement::Exists(key))
            }
            Token::Eq | Token::DoubleEq => Ok(Requirement::Equals(key, self.single_value())),
            Token::NotEq => Ok(Requirement::NotEquals(key, self.single_value())),
            Token::In => Ok(Requirement::In(key, self.value_set()?)),
            Token::NotIn => Ok(Requirement::NotIn(key, self.value_set()?)),
            op @ (Token::Gt | Token::Lt) => {
                let v = self.single_value();
                let n: i64 = v.parse().map_err(|_| {
                    SelectorError::Syntax(format!(
                        "for 'Gt', 'Lt' operators, the value must be an integer, got '{v}'"
                    ))
                })?;
                Ok(if op == Token::Gt {
                    Requirement::GreaterThan(key, n)
                } else {
                    Requirement::LessThan(key, n)
                })
            }
            t => Err(SelectorError::Syntax(format!(
                "found '{}', expected: in, notin, =, ==, !=, gt, lt",
                t.text()
            ))),
        }
    }

    /// The value after `=`, `==`, `!=`: an identifier, or empty at `,`/end.
    fn single_value(&mut self) -> String {
        match self.peek().clone() {
            Token::Ident(v) => {
                self.pos += 1;
                v
            }
            // `in`/`notin` are valid label values too.
            Token::In | Token::NotIn => self.next().text(),
            _ => String::new(),
        }
    }

    fn value_set(&mut self) -> Result<Vec<String>> {
        if self.next() != Token::Open {
            return Err(SelectorError::Syntax(
                "expected '(' after set operator".into(),
            ));
        }
        let mut values = Vec::new();
        loop {
            let v = match self.peek().clone() {
                Token::Ident(v) => {
                    self.pos += 1;
                    v
                }
                Token::In | Token::NotIn => self.next().text(),
                _ => String::new(),
            };
            values.push(v);
            match self.next() {
                Token::Comma => continue,
                Token::Close => break,
                t => {
                    return Err(SelectorError::Syntax(format!(
                        "found '{}', expected: ',' or ')'",
                        t.text()
                    )))
                }
            }
        }
        Ok(values)
    }
}

/// A field selector operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldOp {
    /// `=` or `==`.
    Equals,
    /// `!=`.
    NotEquals,
}

/// One field selector term, e.g. `status.phase!=Running`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldRequirement {
    /// Dotted field path (`spec.nodeName`).
    pub field: String,
    /// Operator.
    pub op: FieldOp,
    /// Value to compare with (escapes removed).
    pub value: String,
}

/// A parsed field selector: all terms must hold (AND).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FieldSelector {
    requirements: Vec<FieldRequirement>,
}

impl FieldSelector {
    /// Parses `field=value,field!=value` (`\,`, `\=` and `\\` escape inside values).
    pub fn parse(s: &str) -> Result<Self> {
        let mut requirements = Vec::new();
        for term in split_unescaped(s) {
            if term.is_empty() {
                continue;
            }
            let (field, op, raw) = if let Some((f, v)) = term.split_once("!=") {
                (f, FieldOp::NotEquals, v)
            } else if let Some((f, v)) = term.split_once("==") {
                (f, FieldOp::Equals, v)
            } else if let Some((f, v)) = term.split_once('=') {
                (f, FieldOp::Equals, v)
            } else {
                return Err(SelectorError::FieldSyntax(term.to_string()));
            };
            if field.trim().is_empty() {
                return Err(SelectorError::FieldSyntax(term.to_string()));
            }
            requirements.push(FieldRequirement {
                field: field.trim().to_string(),
                op,
                value: unescape(raw),
            });
        }
        Ok(Self { requirements })
    }

    /// The terms.
    pub fn requirements(&self) -> &[FieldRequirement] {
        &self.requirements
    }

    /// Whether this selector matches everything.
    pub fn is_everything(&self) -> bool {
        self.requirements.is_empty()
    }

    /// Checks every field against [`supported_fields`] for `res`; the first unsupported one
    /// is reported (Kubernetes answers 400 BadRequest with this message).
    pub fn validate_for(&self, res: &ResourceInfo) -> Result<()> {
        let supported = supported_fields(res);
        match self
            .requirements
            .iter()
            .find(|r| !supported.contains(&r.field.as_str()))
        {
            Some(r) => Err(SelectorError::UnsupportedField(r.field.clone())),
            None => Ok(()),
        }
    }

    /// Whether `obj` satisfies every term ([`field_value`] gives each field's value).
    pub fn matches(&self, res: &ResourceInfo, obj: &Value) -> bool {
        self.requirements.iter().all(|r| {
            let got = field_value(res, obj, &r.field);
            match r.op {
                FieldOp::Equals => got == r.value,
                FieldOp::NotEquals => got != r.value,
            }
        })
    }
}

fn split_unescaped(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                cur.push(c);
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            ',' => out.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    out.push(cur);
    out
}

fn unescape(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(n) = chars.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    out
}

const META_FIELDS: &[&str] = &["metadata.name", "metadata.namespace"];

/// The field selector fields `res` supports (`metadata.name` and `metadata.namespace` for all).
pub fn supported_fields(res: &ResourceInfo) -> Vec<&'static str> {
    META_FIELDS
        .iter()
        .chain(res.strategy.selectable_fields())
        .copied()
        .collect()
}

/// The string value of a field of `obj` as field selectors see it: a missing path is `""`
/// (`false` for the boolean fields, `0` for `status.replicas`), booleans and numbers are
/// printed, events' `source` is `source.component`.
pub fn field_value(res: &ResourceInfo, obj: &Value, field: &str) -> String {
    let path = res.strategy.field_path(field);
    let mut cur = obj;
    for part in path.split('.') {
        match cur.get(part) {
            Some(v) => cur = v,
            None => {
                return match field {
                    "spec.unschedulable" | "spec.hostNetwork" => "false".into(),
                    "status.replicas" => "0".into(),
                    _ => String::new(),
                }
            }
        }
    }
    match cur {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::by_kind;
    use serde_json::json;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn parse_and_match_all_operators() {
        let l = labels(&[("app", "nginx"), ("tier", "web"), ("n", "5")]);
        let cases = [
            ("", true),
            ("app=nginx", true),
            ("app==nginx", true),
            ("app=apache", false),
            ("app!=apache", true),
            ("missing!=x", true),
            ("app in (nginx,apache)", true),
            ("app in (apache)", false),
            ("app notin (apache)", true),
            ("missing notin (x)", true),
            ("app notin (nginx)", false),
            ("app", true),
            ("missing", false),
            ("!missing", true),
            ("!app", false),
            ("app=nginx,tier=web", true),
            ("app=nginx,tier=db", false),
            (" app = nginx , tier in ( web , db ) ", true),
            ("n>4", true),
            ("n<5", false),
            ("missing>1", false),
        ];
        for (s, want) in cases {
            let sel = Selector::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
            assert_eq!(sel.matches(&l), want, "{s}");
        }
    }

    #[test]
    fn parse_structure_and_display() {
        let sel = Selector::parse("a=b,c in (y,x),!d,e,f notin (z),g!=").unwrap();
        assert_eq!(
            sel.requirements(),
            &[
                Requirement::Equals("a".into(), "b".into()),
                Requirement::In("c".into(), vec!["x".into(), "y".into()]),
                Requirement::DoesNotExist("d".into()),
                Requirement::Exists("e".into()),
                Requirement::NotIn("f".into(), vec!["z".into()]),
                Requirement::NotEquals("g".into(), "".into()),
            ]
        );
        assert_eq!(sel.to_string(), "a=b,c in (x,y),!d,e,f notin (z),g!=");
        assert_eq!(Selector::parse(&sel.to_string()).unwrap(), sel);
        assert!(Selector::parse("").unwrap().is_everything());
    }

    #[test]
    fn parse_errors() {
        for bad in [
            "a in b", "a in (b", "a=b,", ",a", "!a=b", "a b", "a>x", "(a)", "a==b==c",
        ] {
            assert!(
                matches!(Selector::parse(bad), Err(SelectorError::Syntax(_))),
                "{bad}: {:?}",
                Selector::parse(bad)
            );
        }
        assert!(matches!(
            Selector::parse("bad key!=x"),
            Err(SelectorError::Syntax(_))
        ));
        assert!(matches!(
            Selector::parse("-a=b"),
            Err(SelectorError::InvalidKey { .. })
        ));
        assert!(matches!(
            Selector::parse("a=b-"),
            Err(SelectorError::InvalidValue { .. })
        ));
        assert_eq!(
            Selector::parse("a=b c").unwrap_err().to_string(),
            "found 'c', expected: ',' or 'end of string'"
        );
    }

    #[test]
    fn from_label_selector_json() {
        let sel = Selector::from_value(&json!({
            "matchLabels": {"app": "nginx"},
            "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["web", "api"]},
                {"key": "canary", "operator": "DoesNotExist"},
                {"key": "env", "operator": "Exists"},
                {"key": "zone", "operator": "NotIn", "values": ["a"]}
            ]
        }))
        .unwrap();
        assert!(sel.matches(&labels(&[("app", "nginx"), ("tier", "web"), ("env", "p")])));
        assert!(!sel.matches(&labels(&[("app", "nginx"), ("tier", "web")])));
        assert!(!sel.matches(&labels(&[
            ("app", "nginx"),
            ("tier", "web"),
            ("env", "p"),
            ("canary", "1")
        ])));
        assert!(!sel.matches(&labels(&[
            ("app", "nginx"),
            ("tier", "web"),
            ("env", "p"),
            ("zone", "a")
        ])));
        // empty selector matches everything, missing selector nothing
        assert!(Selector::from_value(&json!({}))
            .unwrap()
            .matches(&labels(&[])));
        assert!(!Selector::from_value(&Value::Null)
            .unwrap()
            .matches(&labels(&[])));
        for bad in [
            json!({"matchExpressions": [{"key": "a", "operator": "In", "values": []}]}),
            json!({"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]}),
            json!({"matchExpressions": [{"key": "a", "operator": "Equals", "values": ["x"]}]}),
            json!({"matchLabels": {"a": "not valid"}}),
            json!({"matchLabels": "oops"}),
        ] {
            assert!(Selector::from_value(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn from_map_and_typed_selector() {
        let sel = Selector::from_map(&labels(&[("app", "nginx"), ("tier", "web")])).unwrap();
        assert_eq!(sel.to_string(), "app=nginx,tier=web");
        assert!(sel.matches(&labels(&[("app", "nginx"), ("tier", "web"), ("x", "y")])));
        assert!(!sel.matches(&labels(&[("app", "nginx")])));
        let typed = LabelSelector {
            match_labels: Some(labels(&[("app", "nginx")])),
            match_expressions: None,
        };
        let sel = Selector::from_label_selector(&typed).unwrap();
        assert_eq!(sel.to_string(), "app=nginx");
        // an empty map matches everything, as an empty Service selector would
        assert!(Selector::from_map(&BTreeMap::new())
            .unwrap()
            .is_everything());
    }

    #[test]
    fn matches_object_labels() {
        let sel = Selector::parse("app=nginx").unwrap();
        assert!(sel.matches_object(&json!({"metadata": {"labels": {"app": "nginx"}}})));
        assert!(!sel.matches_object(&json!({"metadata": {}})));
        assert!(Selector::parse("!app").unwrap().matches_object(&json!({})));
    }

    #[test]
    fn field_selectors() {
        let pods = by_kind("Pod").unwrap();
        let pod = json!({"metadata": {"name": "nginx", "namespace": "default"},
                         "spec": {"nodeName": "node-1"}, "status": {"phase": "Running"}});
        let unscheduled = json!({"metadata": {"name": "p2", "namespace": "default"},
                                 "status": {"phase": "Pending"}});
        let m = |s: &str, o: &Value| FieldSelector::parse(s).unwrap().matches(pods, o);
        assert!(m("metadata.name=nginx", &pod));
        assert!(m("metadata.name==nginx,metadata.namespace=default", &pod));
        assert!(!m(
            "metadata.name=nginx,metadata.namespace=kube-system",
            &pod
        ));
        assert!(m("spec.nodeName=", &unscheduled));
        assert!(!m("spec.nodeName=", &pod));
        assert!(m("spec.nodeName!=", &pod));
        assert!(m("status.phase!=Running", &unscheduled));
        assert!(!m("status.phase!=Running", &pod));
        assert!(m("", &pod));
        let nodes = by_kind("Node").unwrap();
        let f = FieldSelector::parse("spec.unschedulable=false").unwrap();
        assert!(f.matches(nodes, &json!({"spec": {}})));
        assert!(!f.matches(nodes, &json!({"spec": {"unschedulable": true}})));
        let events = by_kind("Event").unwrap();
        let ev = json!({"involvedObject": {"kind": "Pod", "name": "nginx"},
                        "source": {"component": "kubelet"}, "type": "Normal"});
        let f = FieldSelector::parse("involvedObject.kind=Pod,source=kubelet,type=Normal").unwrap();
        assert!(f.validate_for(events).is_ok());
        assert!(f.matches(events, &ev));
        let esc = FieldSelector::parse(r"metadata.name=a\,b").unwrap();
        assert_eq!(esc.requirements()[0].value, "a,b");
    }

    #[test]
    fn field_selector_errors_and_support() {
        assert_eq!(
            FieldSelector::parse("foo").unwrap_err().to_string(),
            "invalid selector: 'foo'; can't understand 'foo'"
        );
        assert!(FieldSelector::parse("=x").is_err());
        let pods = by_kind("Pod").unwrap();
        let deploy = by_kind("Deployment").unwrap();
        for ok in [
            "metadata.name=a",
            "metadata.namespace=a",
            "spec.nodeName=n",
            "status.phase=Running",
            "spec.schedulerName=x",
            "spec.restartPolicy=Always",
            "status.podIP=1",
        ] {
            FieldSelector::parse(ok)
                .unwrap()
                .validate_for(pods)
                .unwrap();
        }
        assert_eq!(
            FieldSelector::parse("spec.nodeName=n")
                .unwrap()
                .validate_for(deploy)
                .unwrap_err()
                .to_string(),
            "field label not supported: spec.nodeName"
        );
        assert!(FieldSelector::parse("spec.unschedulable=true")
            .unwrap()
            .validate_for(by_kind("Node").unwrap())
            .is_ok());
    }
}
