//! Filter and attribute-path syntax trees, and their canonical printing.

use std::fmt;

/// An attribute path: `[urn:]attr[\[valFilter\]][.subAttr]`.
///
/// The same type serves filter attribute paths, PATCH paths, `sortBy` and `attributes`.
/// Names are kept as written: matching against the schema is case-insensitive and happens
/// at evaluation time, so the AST stays a faithful picture of the request.
#[derive(Debug, Clone, PartialEq)]
pub struct AttrPath {
    /// Schema URN prefix, if the path was URN-qualified.
    pub schema: Option<String>,
    /// Attribute name.
    pub attr: String,
    /// Value filter (`emails[type eq "work"]`).
    pub filter: Option<Box<Filter>>,
    /// Sub-attribute (`name.givenName`, `emails[...].value`).
    pub sub_attr: Option<String>,
}

impl AttrPath {
    /// A plain, non-URN, unfiltered path.
    pub fn simple(attr: &str) -> AttrPath {
        AttrPath {
            schema: None,
            attr: attr.to_string(),
            filter: None,
            sub_attr: None,
        }
    }

    /// Builder: add a sub-attribute.
    pub fn with_sub(mut self, sub: &str) -> AttrPath {
        self.sub_attr = Some(sub.to_string());
        self
    }

    /// Case-insensitive check that this path is `attr` (optionally `attr.sub`), without filter,
    /// and with no URN other than the given core/extension schema.
    pub fn is(&self, attr: &str, sub: Option<&str>) -> bool {
        self.filter.is_none()
            && self.attr.eq_ignore_ascii_case(attr)
            && match (&self.sub_attr, sub) {
                (None, None) => true,
                (Some(a), Some(b)) => a.eq_ignore_ascii_case(b),
                _ => false,
            }
    }
}

/// Comparison operators (RFC 7644 §3.4.2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    /// equal
    Eq,
    /// not equal
    Ne,
    /// contains
    Co,
    /// starts with
    Sw,
    /// ends with
    Ew,
    /// greater than
    Gt,
    /// greater than or equal
    Ge,
    /// less than
    Lt,
    /// less than or equal
    Le,
}

impl CompareOp {
    /// Parses an operator keyword case-insensitively.
    pub fn parse(word: &str) -> Option<CompareOp> {
        Some(match word.to_ascii_lowercase().as_str() {
            "eq" => CompareOp::Eq,
            "ne" => CompareOp::Ne,
            "co" => CompareOp::Co,
            "sw" => CompareOp::Sw,
            "ew" => CompareOp::Ew,
            "gt" => CompareOp::Gt,
            "ge" => CompareOp::Ge,
            "lt" => CompareOp::Lt,
            "le" => CompareOp::Le,
            _ => return None,
        })
    }
    /// Canonical lowercase keyword.
    pub fn as_str(self) -> &'static str {
        match self {
            CompareOp::Eq => "eq",
            CompareOp::Ne => "ne",
            CompareOp::Co => "co",
            CompareOp::Sw => "sw",
            CompareOp::Ew => "ew",
            CompareOp::Gt => "gt",
            CompareOp::Ge => "ge",
            CompareOp::Lt => "lt",
            CompareOp::Le => "le",
        }
    }
}

/// A comparison value.
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    /// A quoted string, or an unquoted word that is not a number/boolean/null (Entra sends
    /// `externalId eq jyoung`). Date-times are strings; they compare as instants when the
    /// attribute is of type `dateTime`.
    String(String),
    /// A JSON number.
    Number(serde_json::Number),
    /// `true` / `false`.
    Bool(bool),
    /// `null`.
    Null,
}

impl Literal {
    /// The string content, if this is a string literal.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Literal::String(s) => Some(s),
            _ => None,
        }
    }
    /// The literal as text, for comparison against string attributes (an unquoted number
    /// such as `employeeNumber eq 42` still has to match the string "42").
    pub fn to_text(&self) -> Option<String> {
        match self {
            Literal::String(s) => Some(s.clone()),
            Literal::Number(n) => Some(n.to_string()),
            Literal::Bool(b) => Some(b.to_string()),
            Literal::Null => None,
        }
    }
}

/// A parsed SCIM filter.
///
/// `and`/`or` are n-ary so a long Entra-style chain (`a eq 1 and b eq 2 and ...`) does not nest:
/// the only nesting comes from parentheses, `not` and value filters, which the parser caps.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    /// All must match (at least two children).
    And(Vec<Filter>),
    /// Any must match (at least two children).
    Or(Vec<Filter>),
    /// Negation.
    Not(Box<Filter>),
    /// `path op value`.
    Compare {
        /// Attribute path (may carry a value filter plus sub-attribute).
        path: AttrPath,
        /// Operator.
        op: CompareOp,
        /// Value.
        value: Literal,
    },
    /// `path pr`.
    Present(AttrPath),
    /// `attr[valFilter]` on its own: some element matches the value filter.
    ValuePath(AttrPath),
}

impl Filter {
    /// The top-level conjuncts: the children of an `and`, or the filter itself.
    pub fn conjuncts(&self) -> Vec<&Filter> {
        match self {
            Filter::And(v) => v.iter().flat_map(|f| f.conjuncts()).collect(),
            f => vec![f],
        }
    }

    /// If this is `path eq value`, returns the path and value.
    pub fn as_eq(&self) -> Option<(&AttrPath, &Literal)> {
        match self {
            Filter::Compare {
                path,
                op: CompareOp::Eq,
                value,
            } => Some((path, value)),
            _ => None,
        }
    }

    /// Index lookups the server can use to pick candidates: one per recognised
    /// `eq` conjunct (`userName`, `externalId`, `id`, `displayName`, work email, member value).
    ///
    /// The hint only narrows the candidate set: the server must still call
    /// [`Filter::matches`](crate::Filter::matches) on each candidate. An empty result means
    /// "no index applies, scan".
    pub fn index_hints(&self) -> Vec<IndexHint> {
        let mut out = Vec::new();
        for c in self.conjuncts() {
            if let Some(h) = IndexHint::from_filter(c) {
                out.push(h);
            }
        }
        out
    }
}

/// An equality lookup recognised in a filter (see [`Filter::index_hints`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IndexHint {
    /// `id eq "x"`
    Id(String),
    /// `userName eq "x"` (case-insensitive attribute)
    UserName(String),
    /// `externalId eq "x"` (case-exact attribute)
    ExternalId(String),
    /// `displayName eq "x"`
    DisplayName(String),
    /// `emails[type eq "work"].value eq "x"` or `emails[type eq "work" and value eq "x"]`
    WorkEmail(String),
    /// `emails.value eq "x"` / `emails eq "x"` (any email)
    Email(String),
    /// `members[value eq "x"]` or `members.value eq "x"`
    MemberValue(String),
}

fn is_core_or_none(p: &AttrPath) -> bool {
    match &p.schema {
        None => true,
        Some(s) => {
            s.eq_ignore_ascii_case(crate::schema::USER_SCHEMA)
                || s.eq_ignore_ascii_case(crate::schema::GROUP_SCHEMA)
        }
    }
}

fn work_type(f: &Filter) -> bool {
    matches!(f.as_eq(), Some((p, Literal::String(v))) if p.is("type", None) && v.eq_ignore_ascii_case("work"))
}

impl IndexHint {
    fn from_filter(f: &Filter) -> Option<IndexHint> {
        match f {
            Filter::ValuePath(p) if is_core_or_none(p) => {
                let inner = p.filter.as_deref()?;
                if p.attr.eq_ignore_ascii_case("members") {
                    if let Some((ip, v)) = inner.as_eq()
                        && ip.is("value", None)
                    {
                        return Some(IndexHint::MemberValue(v.to_text()?));
                    }
                    return None;
                }
                if p.attr.eq_ignore_ascii_case("emails") {
                    let cs = inner.conjuncts();
                    if cs.len() == 2 && cs.iter().any(|c| work_type(c)) {
                        for c in cs {
                            if let Some((ip, v)) = c.as_eq()
                                && ip.is("value", None)
                            {
                                return Some(IndexHint::WorkEmail(v.to_text()?));
                            }
                        }
                    }
                }
                None
            }
            Filter::Compare {
                path,
                op: CompareOp::Eq,
                value,
            } if is_core_or_none(path) => {
                let v = value.to_text()?;
                if let Some(inner) = path.filter.as_deref() {
                    if path.attr.eq_ignore_ascii_case("emails")
                        && path
                            .sub_attr
                            .as_deref()
                            .is_some_and(|s| s.eq_ignore_ascii_case("value"))
                        && work_type(inner)
                    {
                        return Some(IndexHint::WorkEmail(v));
                    }
                    return None;
                }
                let sub = path.sub_attr.as_deref();
                let a = path.attr.as_str();
                let eq = |x: &str| a.eq_ignore_ascii_case(x);
                match sub {
                    None if eq("id") => Some(IndexHint::Id(v)),
                    None if eq("userName") => Some(IndexHint::UserName(v)),
                    None if eq("externalId") => Some(IndexHint::ExternalId(v)),
                    None if eq("displayName") => Some(IndexHint::DisplayName(v)),
                    None if eq("emails") => Some(IndexHint::Email(v)),
                    None if eq("members") => Some(IndexHint::MemberValue(v)),
                    Some(s) if eq("emails") && s.eq_ignore_ascii_case("value") => {
                        Some(IndexHint::Email(v))
                    }
                    Some(s) if eq("members") && s.eq_ignore_ascii_case("value") => {
                        Some(IndexHint::MemberValue(v))
                    }
                    _ => None,
                }
            }
            _ => None,
        }
    }
}

fn write_json_str(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
    // serde_json produces exactly the JSON string grammar the filter lexer reads back.
    match serde_json::to_string(s) {
        Ok(q) => f.write_str(&q),
        Err(_) => Err(fmt::Error),
    }
}

impl fmt::Display for Literal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Literal::String(s) => write_json_str(f, s),
            Literal::Number(n) => write!(f, "{n}"),
            Literal::Bool(b) => write!(f, "{b}"),
            Literal::Null => f.write_str("null"),
        }
    }
}

impl fmt::Display for AttrPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(s) = &self.schema {
            write!(f, "{s}:")?;
        }
        f.write_str(&self.attr)?;
        if let Some(flt) = &self.filter {
            write!(f, "[{flt}]")?;
        }
        if let Some(s) = &self.sub_attr {
            write!(f, ".{s}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Children that are themselves and/or lists are parenthesised so the printed form
        // parses back to the identical tree.
        fn child(f: &mut fmt::Formatter<'_>, c: &Filter) -> fmt::Result {
            match c {
                Filter::And(_) | Filter::Or(_) => write!(f, "({c})"),
                _ => write!(f, "{c}"),
            }
        }
        match self {
            Filter::And(v) | Filter::Or(v) => {
                let kw = if matches!(self, Filter::And(_)) {
                    " and "
                } else {
                    " or "
                };
                for (i, c) in v.iter().enumerate() {
                    if i > 0 {
                        f.write_str(kw)?;
                    }
                    child(f, c)?;
                }
                Ok(())
            }
            Filter::Not(inner) => write!(f, "not ({inner})"),
            Filter::Compare { path, op, value } => write!(f, "{path} {} {value}", op.as_str()),
            Filter::Present(p) => write!(f, "{p} pr"),
            Filter::ValuePath(p) => write!(f, "{p}"),
        }
    }
}
