//! Filter tokenizer. Positions are byte offsets into the input, reported in error details.

use crate::error::{Result, ScimError};

/// A token and where it starts.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Token<'a> {
    pub kind: Tok<'a>,
    pub pos: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Tok<'a> {
    LParen,
    RParen,
    LBracket,
    RBracket,
    /// A decoded JSON string literal.
    Str(String),
    /// Any other run of non-space, non-delimiter characters: attribute paths, keywords,
    /// operators, numbers and unquoted values.
    Word(&'a str),
}

impl Tok<'_> {
    pub fn describe(&self) -> String {
        match self {
            Tok::LParen => "'('".into(),
            Tok::RParen => "')'".into(),
            Tok::LBracket => "'['".into(),
            Tok::RBracket => "']'".into(),
            Tok::Str(s) => format!("string {}", serde_json::to_string(s).unwrap_or_default()),
            Tok::Word(w) => format!("'{w}'"),
        }
    }
}

fn is_delim(c: char) -> bool {
    c.is_whitespace() || matches!(c, '(' | ')' | '[' | ']' | '"') || is_forbidden_control(c)
}

/// Raw control characters (U+0000-U+001F, U+007F) are not part of the filter grammar outside a
/// quoted string (RFC 7644 §3.4.2.2: names are ALPHA / DIGIT / "-" / "_", separators are SP).
/// Tab, line feed and carriage return stay accepted as separators (a pretty-printed `.search`
/// body may wrap a long filter); every other one is an error. Inside a quoted string the JSON
/// string grammar decides (it requires escapes for U+0000-U+001F).
pub(crate) fn is_forbidden_control(c: char) -> bool {
    c.is_ascii_control() && !matches!(c, '\t' | '\n' | '\r')
}

/// Splits `input` into tokens. The caller has already capped the input length, so the token
/// vector is bounded too.
pub(crate) fn tokenize(input: &str, err: fn(String) -> ScimError) -> Result<Vec<Token<'_>>> {
    let mut out = Vec::new();
    let bytes = input.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let c = input[i..].chars().next().unwrap_or(' ');
        if is_forbidden_control(c) {
            return Err(err(format!(
                "at position {i}: control character U+{:04X} is not allowed outside a quoted string (inside quotes write it as a JSON escape, \"\\u{:04x}\")",
                c as u32, c as u32
            )));
        }
        if c.is_whitespace() {
            i += c.len_utf8();
            continue;
        }
        let pos = i;
        let kind = match c {
            '(' => Tok::LParen,
            ')' => Tok::RParen,
            '[' => Tok::LBracket,
            ']' => Tok::RBracket,
            '"' => {
                let mut j = i + 1;
                let mut closed = false;
                while j < bytes.len() {
                    match bytes[j] {
                        b'\\' => j += 2,
                        b'"' => {
                            closed = true;
                            break;
                        }
                        _ => j += 1,
                    }
                }
                if !closed {
                    return Err(err(format!(
                        "at position {pos}: unterminated string literal (expected a closing '\"')"
                    )));
                }
                let s: String = serde_json::from_str(&input[i..=j]).map_err(|e| {
                    err(format!(
                        "at position {pos}: invalid string literal ({e}); strings use JSON escapes"
                    ))
                })?;
                i = j + 1;
                out.push(Token {
                    kind: Tok::Str(s),
                    pos,
                });
                continue;
            }
            _ => {
                let rest = &input[i..];
                let len = rest.find(is_delim).unwrap_or(rest.len());
                i += len;
                out.push(Token {
                    kind: Tok::Word(&rest[..len]),
                    pos,
                });
                continue;
            }
        };
        i += 1;
        out.push(Token { kind, pos });
    }
    Ok(out)
}
