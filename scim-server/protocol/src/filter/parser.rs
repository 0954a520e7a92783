//! Recursive-descent parser for RFC 7644 §3.4.2.2 filters and §3.5.2 PATCH paths.
//!
//! Grammar (case-insensitive keywords):
//! ```text
//! filter    = or
//! or        = and *("or" and)
//! and       = unary *("and" unary)
//! unary     = "not" "(" filter ")" / "(" filter ")" / attrExpr
//! attrExpr  = attrPath "pr" / attrPath compareOp compValue
//!           / attrPath "[" valFilter "]" [ "." subAttr ( "pr" / compareOp compValue ) ]
//! patchPath = attrPath [ "[" valFilter "]" [ "." subAttr ] ]
//! ```
//! The `attr[filter].sub op value` form is an extension (it is the PATCH path form used as
//! a filter) so the server can accept `emails[type eq "work"].value eq "x"`.

use super::ast::{AttrPath, CompareOp, Filter, Literal};
use super::lexer::{Tok, Token, is_forbidden_control, tokenize};
use crate::error::{Result, ScimError};
use crate::schema::valid_attr_name;

/// Longest filter or path accepted, in bytes. Entra's filters are well under 1 KiB; the cap
/// bounds tokens, AST size and evaluation cost for hostile input.
pub const MAX_FILTER_LEN: usize = 8 * 1024;
/// Deepest nesting of parentheses, `not` and value filters accepted. Keeps recursion (parse,
/// print, evaluate, drop) far from the stack limit.
pub const MAX_FILTER_DEPTH: usize = 32;

/// Both limits hold for the input *and* for its canonical printed form (`to_string()`), so
/// whatever is accepted prints to something that is accepted too and parses back to the same
/// tree. The printed form can be longer than the input (`a eq b` prints `a eq "b"`, `1e15`
/// prints `1000000000000000.0`, `x\y` prints `"x\\y"`) and nest deeper (`a or b and c` prints
/// `a or (b and c)`), but, with raw control characters rejected, never more than this many
/// times longer (the worst single token is a number: `1e15`, 4 bytes, prints as 18). Inputs of at
/// most `MAX_FILTER_LEN / MAX_PRINT_EXPANSION` bytes therefore need no length check of their
/// printed form; longer ones are measured (without allocating the whole string).
pub const MAX_PRINT_EXPANSION: usize = 8;

struct Parser<'a> {
    toks: Vec<Token<'a>>,
    i: usize,
    end: usize,
    depth: usize,
    err: fn(String) -> ScimError,
}

/// Parses a filter expression.
pub fn parse_filter(input: &str) -> Result<Filter> {
    let mut p = Parser::new(input, ScimError::InvalidFilter)?;
    if p.toks.is_empty() {
        return Err(ScimError::InvalidFilter(
            "the filter is empty; expected an expression such as userName eq \"bjensen\"".into(),
        ));
    }
    let f = p.parse_or(false)?;
    p.expect_end()?;
    check_canonical(&f, filter_depth(&f), input.len(), ScimError::InvalidFilter)?;
    Ok(f)
}

/// Parses a PATCH path (`attr`, `attr.sub`, `urn:...:attr`, `attr[filter]`, `attr[filter].sub`).
pub fn parse_path(input: &str) -> Result<AttrPath> {
    let mut p = Parser::new(input, ScimError::InvalidPath)?;
    if p.toks.is_empty() {
        return Err(ScimError::InvalidPath("the path is empty".into()));
    }
    let path = p.parse_full_path()?;
    p.expect_end()?;
    check_canonical(
        &path,
        path_depth(&path),
        input.len(),
        ScimError::InvalidPath,
    )?;
    Ok(path)
}

/// Parser nesting depth of the canonical printed form of `f`: what the parser counts when it
/// reads `f.to_string()` back. `not (x)` is two levels (the `not` and its group), an `and`/`or`
/// inside another is printed in parentheses (one level), a value filter `[...]` is one level.
fn filter_depth(f: &Filter) -> usize {
    match f {
        Filter::And(v) | Filter::Or(v) => v
            .iter()
            .map(|c| match c {
                Filter::And(_) | Filter::Or(_) => 1 + filter_depth(c),
                _ => filter_depth(c),
            })
            .max()
            .unwrap_or(0),
        Filter::Not(inner) => 2 + filter_depth(inner),
        Filter::Compare { path, .. } | Filter::Present(path) | Filter::ValuePath(path) => {
            path_depth(path)
        }
    }
}

fn path_depth(p: &AttrPath) -> usize {
    p.filter.as_deref().map_or(0, |f| 1 + filter_depth(f))
}

/// Counts the bytes written and stops as soon as there are more than `limit`.
struct LenUpTo {
    len: usize,
    limit: usize,
}

impl std::fmt::Write for LenUpTo {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.len += s.len();
        if self.len > self.limit {
            return Err(std::fmt::Error);
        }
        Ok(())
    }
}

/// Applies the length and depth limits to the canonical printed form as well (see
/// [`MAX_PRINT_EXPANSION`]).
fn check_canonical(
    tree: &dyn std::fmt::Display,
    depth: usize,
    input_len: usize,
    err: fn(String) -> ScimError,
) -> Result<()> {
    if depth > MAX_FILTER_DEPTH {
        return Err(err(format!(
            "the expression nests deeper than {MAX_FILTER_DEPTH} levels once written canonically (an 'and' inside an 'or' is parenthesised)"
        )));
    }
    if input_len > MAX_FILTER_LEN / MAX_PRINT_EXPANSION {
        use std::fmt::Write as _;
        let mut w = LenUpTo {
            len: 0,
            limit: MAX_FILTER_LEN,
        };
        if write!(w, "{tree}").is_err() {
            return Err(err(format!(
                "the expression is longer than {MAX_FILTER_LEN} bytes once written canonically (unquoted values are quoted, numbers written out in full); at most {MAX_FILTER_LEN} are accepted"
            )));
        }
    }
    Ok(())
}

/// Parses a plain attribute path (no value filter), as used by `sortBy`, `attributes` and
/// `excludedAttributes`.
pub fn parse_plain_path(input: &str) -> Result<AttrPath> {
    let trimmed = input.trim();
    if trimmed.is_empty() {
        return Err(ScimError::InvalidPath("empty attribute name".into()));
    }
    if trimmed.len() > MAX_FILTER_LEN {
        return Err(ScimError::InvalidPath("attribute path too long".into()));
    }
    if trimmed.contains(|c: char| is_special(c) || c.is_whitespace() || is_forbidden_control(c)) {
        return Err(ScimError::InvalidPath(format!(
            "'{trimmed}' is not a plain attribute path (expected attr, attr.sub or urn:...:attr)"
        )));
    }
    let (schema, attr, sub) = split_path_word(trimmed, 0, ScimError::InvalidPath)?;
    Ok(AttrPath {
        schema,
        attr,
        filter: None,
        sub_attr: sub,
    })
}

fn is_special(c: char) -> bool {
    matches!(c, '(' | ')' | '[' | ']' | '"')
}

/// Splits `[urn:]attr[.sub]`. Every ':' belongs to the URN and the attribute part has no ':',
/// so the last ':' is the boundary even for URNs that contain dots (`...:2.0:User:name.givenName`).
fn split_path_word(
    word: &str,
    pos: usize,
    err: fn(String) -> ScimError,
) -> Result<(Option<String>, String, Option<String>)> {
    let (schema, rest) = match word.rfind(':') {
        Some(i) => {
            let urn = &word[..i];
            if !urn.to_ascii_lowercase().starts_with("urn:") || urn.len() <= 4 {
                return Err(err(format!(
                    "at position {pos}: '{word}' is not a valid attribute path (a ':' is only allowed in a schema URN prefix such as urn:ietf:params:scim:schemas:core:2.0:User:)"
                )));
            }
            (Some(urn.to_string()), &word[i + 1..])
        }
        None => (None, word),
    };
    let mut parts = rest.splitn(2, '.');
    let attr = parts.next().unwrap_or_default();
    let sub = parts.next();
    if !valid_attr_name(attr) {
        return Err(err(format!(
            "at position {pos}: expected an attribute name, found '{word}' (names start with a letter and contain letters, digits, '_' or '-')"
        )));
    }
    if let Some(s) = sub
        && !valid_attr_name(s)
    {
        return Err(err(format!(
            "at position {pos}: '{s}' in '{word}' is not a valid sub-attribute name (only one level, attr.subAttr, is allowed)"
        )));
    }
    Ok((schema, attr.to_string(), sub.map(str::to_string)))
}

impl<'a> Parser<'a> {
    fn new(input: &'a str, err: fn(String) -> ScimError) -> Result<Parser<'a>> {
        if input.len() > MAX_FILTER_LEN {
            return Err(err(format!(
                "the expression is {} bytes long; at most {MAX_FILTER_LEN} are accepted",
                input.len()
            )));
        }
        Ok(Parser {
            toks: tokenize(input, err)?,
            i: 0,
            end: input.len(),
            depth: 0,
            err,
        })
    }

    fn peek(&self) -> Option<&Tok<'a>> {
        self.toks.get(self.i).map(|t| &t.kind)
    }

    fn pos(&self) -> usize {
        self.toks.get(self.i).map(|t| t.pos).unwrap_or(self.end)
    }

    fn found(&self) -> String {
        self.peek()
            .map(|t| t.describe())
            .unwrap_or_else(|| "the end of the input".into())
    }

    fn fail<T>(&self, expected: &str) -> Result<T> {
        Err((self.err)(format!(
            "at position {}: expected {expected}, found {}",
            self.pos(),
            self.found()
        )))
    }

    fn expect_end(&self) -> Result<()> {
        if self.i < self.toks.len() {
            return self.fail("'and', 'or' or the end of the expression");
        }
        Ok(())
    }

    fn peek_keyword(&self, kw: &str) -> bool {
        matches!(self.peek(), Some(Tok::Word(w)) if w.eq_ignore_ascii_case(kw))
    }

    fn enter(&mut self) -> Result<()> {
        self.depth += 1;
        if self.depth > MAX_FILTER_DEPTH {
            return Err((self.err)(format!(
                "at position {}: the expression nests deeper than {MAX_FILTER_DEPTH} levels",
                self.pos()
            )));
        }
        Ok(())
    }

    fn parse_or(&mut self, in_brackets: bool) -> Result<Filter> {
        self.parse_joined(in_brackets, "or", Self::parse_and, Filter::Or)
    }

    fn parse_and(&mut self, in_brackets: bool) -> Result<Filter> {
        self.parse_joined(in_brackets, "and", Self::parse_unary, Filter::And)
    }

    /// `operand (keyword operand)*`: one operand as itself, several joined by `join`.
    fn parse_joined(
        &mut self,
        in_brackets: bool,
        keyword: &str,
        operand: fn(&mut Self, bool) -> Result<Filter>,
        join: fn(Vec<Filter>) -> Filter,
    ) -> Result<Filter> {
        let mut items = vec![operand(self, in_brackets)?];
        while self.peek_keyword(keyword) {
            self.i += 1;
            items.push(operand(self, in_brackets)?);
        }
        Ok(if items.len() == 1 {
            items.pop().unwrap_or(Filter::And(Vec::new()))
        } else {
            join(items)
        })
    }

    fn parse_group(&mut self, in_brackets: bool) -> Result<Filter> {
        // caller saw '('
        self.i += 1;
        self.enter()?;
        let f = self.parse_or(in_brackets)?;
        if self.peek() != Some(&Tok::RParen) {
            return self.fail("')' to close the group");
        }
        self.i += 1;
        self.depth -= 1;
        Ok(f)
    }

    fn parse_unary(&mut self, in_brackets: bool) -> Result<Filter> {
        if self.peek_keyword("not")
            && self.toks.get(self.i + 1).map(|t| &t.kind) == Some(&Tok::LParen)
        {
            self.i += 1;
            self.enter()?;
            let inner = self.parse_group(in_brackets)?;
            self.depth -= 1;
            return Ok(Filter::Not(Box::new(inner)));
        }
        match self.peek() {
            Some(Tok::LParen) => self.parse_group(in_brackets),
            Some(Tok::Word(_)) => self.parse_attr_expr(in_brackets),
            _ => self.fail("an attribute name, '(' or 'not ('"),
        }
    }

    fn parse_attr_word(&mut self) -> Result<AttrPath> {
        let pos = self.pos();
        let Some(Tok::Word(w)) = self.peek() else {
            return self.fail("an attribute name");
        };
        let w = *w;
        self.i += 1;
        let (schema, attr, sub) = split_path_word(w, pos, self.err)?;
        Ok(AttrPath {
            schema,
            attr,
            filter: None,
            sub_attr: sub,
        })
    }

    /// `attrPath [ "[" valFilter "]" [ "." subAttr ] ]`. Returns the path and whether it had a
    /// bracket without a following sub-attribute.
    fn parse_full_path(&mut self) -> Result<AttrPath> {
        let mut path = self.parse_attr_word()?;
        if self.peek() == Some(&Tok::LBracket) {
            if path.sub_attr.is_some() {
                return self.fail("no value filter after a sub-attribute (write attr[filter].sub)");
            }
            let open = self.pos();
            self.i += 1;
            self.enter()?;
            let inner = self.parse_or(true)?;
            if self.peek() != Some(&Tok::RBracket) {
                return Err((self.err)(format!(
                    "at position {}: expected ']' to close the value filter opened at position {open}, found {}",
                    self.pos(),
                    self.found()
                )));
            }
            let close = self.pos();
            self.i += 1;
            self.depth -= 1;
            path.filter = Some(Box::new(inner));
            // A sub-attribute must follow the ']' directly: `emails[...].value`.
            if let Some(Token {
                kind: Tok::Word(w),
                pos,
            }) = self.toks.get(self.i)
                && *pos == close + 1
            {
                let (w, pos) = (*w, *pos);
                let Some(sub) = w.strip_prefix('.') else {
                    return self.fail("'.subAttribute', 'and', 'or' or the end after ']'");
                };
                if !valid_attr_name(sub) {
                    return Err((self.err)(format!(
                        "at position {pos}: '{sub}' is not a valid sub-attribute name"
                    )));
                }
                self.i += 1;
                path.sub_attr = Some(sub.to_string());
            }
        }
        Ok(path)
    }

    fn parse_attr_expr(&mut self, in_brackets: bool) -> Result<Filter> {
        let start = self.pos();
        let path = self.parse_full_path()?;
        if in_brackets && path.filter.is_some() {
            return Err((self.err)(format!(
                "at position {start}: value filters cannot be nested inside another value filter"
            )));
        }
        if path.filter.is_some() && path.sub_attr.is_none() {
            return Ok(Filter::ValuePath(path));
        }
        let op_pos = self.pos();
        let Some(Tok::Word(w)) = self.peek() else {
            return self.fail("an operator (eq, ne, co, sw, ew, gt, ge, lt, le, pr)");
        };
        if w.eq_ignore_ascii_case("pr") {
            self.i += 1;
            return Ok(Filter::Present(path));
        }
        let Some(op) = CompareOp::parse(w) else {
            return Err((self.err)(format!(
                "at position {op_pos}: expected an operator (eq, ne, co, sw, ew, gt, ge, lt, le, pr) after '{path}', found '{w}'"
            )));
        };
        self.i += 1;
        let value = match self.peek() {
            Some(Tok::Str(s)) => Literal::String(s.clone()),
            Some(Tok::Word(w)) => word_literal(w),
            _ => return self.fail("a value (a quoted string, number, true, false or null)"),
        };
        self.i += 1;
        Ok(Filter::Compare { path, op, value })
    }
}

/// Unquoted values: JSON keywords and numbers keep their type; anything else is a string,
/// because Entra's own documentation sends `externalId eq jyoung`.
fn word_literal(w: &str) -> Literal {
    if w.eq_ignore_ascii_case("true") {
        return Literal::Bool(true);
    }
    if w.eq_ignore_ascii_case("false") {
        return Literal::Bool(false);
    }
    if w.eq_ignore_ascii_case("null") {
        return Literal::Null;
    }
    if w.starts_with(|c: char| c == '-' || c.is_ascii_digit()) {
        // std's parsers round-trip exactly (serde_json's default float parser does not), so a
        // printed filter parses back to the same number.
        if let Ok(i) = w.parse::<i64>() {
            return Literal::Number(i.into());
        }
        if let Ok(u) = w.parse::<u64>() {
            return Literal::Number(u.into());
        }
        if w.bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'-' | b'+' | b'.' | b'e' | b'E'))
            && let Ok(f) = w.parse::<f64>()
            && let Some(n) = serde_json::Number::from_f64(f)
        {
            return Literal::Number(n);
        }
    }
    Literal::String(w.to_string())
}
