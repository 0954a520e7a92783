//! SCIM filters: parse to an inspectable AST, print canonically, evaluate against resources.

mod ast;
pub(crate) mod eval;
mod lexer;
mod parser;

pub use ast::{AttrPath, CompareOp, Filter, IndexHint, Literal};
pub use parser::{
    MAX_FILTER_DEPTH, MAX_FILTER_LEN, MAX_PRINT_EXPANSION, parse_path, parse_plain_path,
};

use serde_json::{Map, Value};

use crate::error::{Result, ScimError};
use crate::resource::Resource;
use crate::schema::{AttrType, ResourceKind};
use eval::Scope;

impl Filter {
    /// Parses a filter (RFC 7644 §3.4.2.2 plus Entra's unquoted values). Errors are
    /// `invalidFilter` with the byte position and what was expected.
    pub fn parse(input: &str) -> Result<Filter> {
        parser::parse_filter(input)
    }

    /// Whether `resource` matches.
    pub fn matches(&self, resource: &Resource) -> bool {
        eval::eval(self, Scope::Root(resource.kind()), resource.attributes())
    }

    /// Whether any attribute path in the filter satisfies `pred`.
    pub fn mentions(&self, pred: &impl Fn(&AttrPath) -> bool) -> bool {
        match self {
            Filter::And(v) | Filter::Or(v) => v.iter().any(|c| c.mentions(pred)),
            Filter::Not(c) => c.mentions(pred),
            Filter::Compare { path, .. } | Filter::Present(path) | Filter::ValuePath(path) => {
                pred(path)
            }
        }
    }

    /// Whether a normalized attribute map of the given kind matches.
    pub fn matches_map(&self, kind: ResourceKind, attributes: &Map<String, Value>) -> bool {
        eval::eval(self, Scope::Root(kind), attributes)
    }

    /// Rejects comparisons the schema does not allow (RFC 7644 §3.4.2.2: `gt`/`ge`/`lt`/`le`
    /// on booleans and binary, `co`/`sw`/`ew` on booleans and numbers), naming the attribute.
    pub fn validate(&self, kind: ResourceKind) -> Result<()> {
        self.validate_in(kind, None)
    }

    fn validate_in(
        &self,
        kind: ResourceKind,
        parent: Option<&'static crate::schema::AttrDef>,
    ) -> Result<()> {
        match self {
            Filter::And(v) | Filter::Or(v) => {
                v.iter().try_for_each(|c| c.validate_in(kind, parent))
            }
            Filter::Not(c) => c.validate_in(kind, parent),
            Filter::Present(_) | Filter::ValuePath(_) => Ok(()),
            Filter::Compare { path, op, .. } => {
                let def = match parent {
                    Some(p) => p.sub(&path.attr),
                    None => kind.attr(path.schema.as_deref(), &path.attr),
                };
                let Some(mut def) = def else { return Ok(()) };
                if let Some(f) = &path.filter {
                    f.validate_in(kind, Some(def))?;
                }
                match &path.sub_attr {
                    Some(s) => match def.sub(s) {
                        Some(d) => def = d,
                        None => return Ok(()),
                    },
                    None if def.ty == AttrType::Complex => match def.sub("value") {
                        Some(d) => def = d,
                        None => return Ok(()),
                    },
                    None => {}
                }
                let ordering = matches!(
                    op,
                    CompareOp::Gt | CompareOp::Ge | CompareOp::Lt | CompareOp::Le
                );
                let substring = matches!(op, CompareOp::Co | CompareOp::Sw | CompareOp::Ew);
                let bad = match def.ty {
                    AttrType::Boolean => ordering || substring,
                    AttrType::Binary => ordering,
                    AttrType::Integer | AttrType::Decimal => substring,
                    _ => false,
                };
                if bad {
                    return Err(ScimError::InvalidFilter(format!(
                        "operator '{}' cannot be applied to '{}' (type {})",
                        op.as_str(),
                        path,
                        def.ty.as_str()
                    )));
                }
                Ok(())
            }
        }
    }
}

impl std::str::FromStr for Filter {
    type Err = ScimError;
    fn from_str(s: &str) -> Result<Filter> {
        Filter::parse(s)
    }
}
