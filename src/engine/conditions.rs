//! The filter clause of ListEntities and the *WithConditions methods. Pure, no I/O.
//!
//! Grammar (keywords case-insensitive, strings in single quotes with `''` for a quote):
//! ```text
//! expr       := and_expr ( OR and_expr )*
//! and_expr   := unary ( AND unary )*
//! unary      := NOT unary | '(' expr ')' | comparison
//! comparison := FIELD op literal
//! op         := = | != | <> | < | <= | > | >=
//! literal    := 'text' | number | true | false | null
//! ```
//! FIELD is a field name (`Email`, or Stripe's `email`), optionally dotted into nested objects
//! (`Address.City`).

use std::cmp::Ordering;

use serde_json::{Map, Value};

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// `FIELD op literal`.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    pub field: String,
    pub op: Op,
    pub value: Value,
}

/// A parsed filter clause.
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    Compare(Comparison),
    And(Vec<Condition>),
    Or(Vec<Condition>),
    Not(Box<Condition>),
}

/// Why a clause does not parse, with the character offset.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("at offset {offset}: {message}")]
pub struct ParseError {
    pub offset: usize,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Ident(String),
    Str(String),
    Num(Value),
    Op(Op),
    LParen,
    RParen,
}

fn tokenize(input: &str) -> Result<Vec<(usize, Token)>, ParseError> {
    let chars: Vec<(usize, char)> = input.char_indices().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    let err = |offset: usize, message: &str| ParseError {
        offset,
        message: message.to_owned(),
    };
    while i < chars.len() {
        let (offset, c) = chars[i];
        match c {
            c if c.is_whitespace() => i += 1,
            '(' => {
                tokens.push((offset, Token::LParen));
                i += 1;
            }
            ')' => {
                tokens.push((offset, Token::RParen));
                i += 1;
            }
            '\'' => {
                let mut text = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return Err(err(offset, "unterminated string")),
                        Some((_, '\'')) if matches!(chars.get(i + 1), Some((_, '\''))) => {
                            text.push('\'');
                            i += 2;
                        }
                        Some((_, '\'')) => {
                            i += 1;
                            break;
                        }
                        Some((_, ch)) => {
                            text.push(*ch);
                            i += 1;
                        }
                    }
                }
                tokens.push((offset, Token::Str(text)));
            }
            '=' => {
                tokens.push((offset, Token::Op(Op::Eq)));
                i += 1;
            }
            '!' | '<' | '>' => {
                let next = chars.get(i + 1).map(|(_, ch)| *ch);
                let (op, len) = match (c, next) {
                    ('!', Some('=')) => (Op::Ne, 2),
                    ('<', Some('>')) => (Op::Ne, 2),
                    ('<', Some('=')) => (Op::Le, 2),
                    ('>', Some('=')) => (Op::Ge, 2),
                    ('<', _) => (Op::Lt, 1),
                    ('>', _) => (Op::Gt, 1),
                    _ => return Err(err(offset, "expected '!='")),
                };
                tokens.push((offset, Token::Op(op)));
                i += len;
            }
            c if c.is_ascii_digit() || c == '-' => {
                let start = i;
                i += 1;
                while i < chars.len() && (chars[i].1.is_ascii_digit() || chars[i].1 == '.') {
                    i += 1;
                }
                let text: String = chars[start..i].iter().map(|(_, ch)| ch).collect();
                let number = if let Ok(n) = text.parse::<i64>() {
                    Value::from(n)
                } else {
                    text.parse::<f64>()
                        .ok()
                        .and_then(serde_json::Number::from_f64)
                        .map(Value::Number)
                        .ok_or_else(|| err(offset, "invalid number"))?
                };
                tokens.push((offset, Token::Num(number)));
            }
            c if c.is_alphabetic() || c == '_' => {
                let start = i;
                while i < chars.len()
                    && (chars[i].1.is_alphanumeric() || matches!(chars[i].1, '_' | '.'))
                {
                    i += 1;
                }
                tokens.push((
                    offset,
                    Token::Ident(chars[start..i].iter().map(|(_, ch)| ch).collect()),
                ));
            }
            other => return Err(err(offset, &format!("unexpected character {other:?}"))),
        }
    }
    Ok(tokens)
}

/// Longest clause accepted, in bytes.
pub const MAX_CLAUSE_LEN: usize = 16 * 1024;
/// Deepest nesting of parentheses and NOT accepted, so no clause can exhaust the stack.
pub const MAX_DEPTH: usize = 32;

struct Parser {
    tokens: Vec<(usize, Token)>,
    pos: usize,
    end: usize,
    depth: usize,
}

impl Parser {
    fn offset(&self) -> usize {
        self.tokens.get(self.pos).map_or(self.end, |(o, _)| *o)
    }

    fn error(&self, message: &str) -> ParseError {
        ParseError {
            offset: self.offset(),
            message: message.to_owned(),
        }
    }

    fn keyword(&mut self, word: &str) -> bool {
        if let Some((_, Token::Ident(name))) = self.tokens.get(self.pos)
            && name.eq_ignore_ascii_case(word)
        {
            self.pos += 1;
            return true;
        }
        false
    }

    fn expr(&mut self) -> Result<Condition, ParseError> {
        let mut terms = vec![self.and_expr()?];
        while self.keyword("OR") {
            terms.push(self.and_expr()?);
        }
        Ok(if terms.len() == 1 {
            terms.remove(0)
        } else {
            Condition::Or(terms)
        })
    }

    fn and_expr(&mut self) -> Result<Condition, ParseError> {
        let mut terms = vec![self.unary()?];
        while self.keyword("AND") {
            terms.push(self.unary()?);
        }
        Ok(if terms.len() == 1 {
            terms.remove(0)
        } else {
            Condition::And(terms)
        })
    }

    fn unary(&mut self) -> Result<Condition, ParseError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.error(&format!("nested deeper than {MAX_DEPTH} levels")));
        }
        let result = self.unary_inner();
        self.depth -= 1;
        result
    }

    fn unary_inner(&mut self) -> Result<Condition, ParseError> {
        if self.keyword("NOT") {
            return Ok(Condition::Not(Box::new(self.unary()?)));
        }
        if matches!(self.tokens.get(self.pos), Some((_, Token::LParen))) {
            self.pos += 1;
            let inner = self.expr()?;
            if !matches!(self.tokens.get(self.pos), Some((_, Token::RParen))) {
                return Err(self.error("expected ')'"));
            }
            self.pos += 1;
            return Ok(inner);
        }
        self.comparison()
    }

    fn comparison(&mut self) -> Result<Condition, ParseError> {
        let field = match self.tokens.get(self.pos) {
            Some((_, Token::Ident(name))) => name.clone(),
            _ => return Err(self.error("expected a field name")),
        };
        self.pos += 1;
        let op = match self.tokens.get(self.pos) {
            Some((_, Token::Op(op))) => *op,
            _ => return Err(self.error("expected an operator (=, !=, <, <=, >, >=)")),
        };
        self.pos += 1;
        let value = match self.tokens.get(self.pos) {
            Some((_, Token::Str(text))) => Value::String(text.clone()),
            Some((_, Token::Num(n))) => n.clone(),
            Some((_, Token::Ident(word))) if word.eq_ignore_ascii_case("true") => Value::Bool(true),
            Some((_, Token::Ident(word))) if word.eq_ignore_ascii_case("false") => {
                Value::Bool(false)
            }
            Some((_, Token::Ident(word))) if word.eq_ignore_ascii_case("null") => Value::Null,
            _ => return Err(self.error("expected a value ('text', number, true, false or null)")),
        };
        self.pos += 1;
        Ok(Condition::Compare(Comparison { field, op, value }))
    }
}

/// Parses a filter clause; an empty or blank clause is `None`.
pub fn parse(input: &str) -> Result<Option<Condition>, ParseError> {
    if input.trim().is_empty() {
        return Ok(None);
    }
    if input.len() > MAX_CLAUSE_LEN {
        return Err(ParseError {
            offset: MAX_CLAUSE_LEN,
            message: format!("longer than {MAX_CLAUSE_LEN} bytes"),
        });
    }
    let mut parser = Parser {
        tokens: tokenize(input)?,
        pos: 0,
        end: input.len(),
        depth: 0,
    };
    let condition = parser.expr()?;
    if parser.pos != parser.tokens.len() {
        return Err(
            parser.error("unexpected text after the condition (join conditions with AND or OR)")
        );
    }
    Ok(Some(condition))
}

impl Condition {
    /// The comparisons that must all hold (the top-level AND), for pushing down upstream.
    pub fn conjuncts(&self) -> Vec<&Comparison> {
        match self {
            Condition::Compare(c) => vec![c],
            Condition::And(terms) => terms
                .iter()
                .filter_map(|t| match t {
                    Condition::Compare(c) => Some(c),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Every comparison anywhere in the clause.
    pub fn comparisons(&self) -> Vec<&Comparison> {
        match self {
            Condition::Compare(c) => vec![c],
            Condition::And(terms) | Condition::Or(terms) => {
                terms.iter().flat_map(Condition::comparisons).collect()
            }
            Condition::Not(inner) => inner.comparisons(),
        }
    }

    /// Evaluates the clause on one entity's fields (PascalCase names, native values).
    pub fn matches(&self, fields: &Map<String, Value>) -> bool {
        match self {
            Condition::Compare(c) => c.matches(fields),
            Condition::And(terms) => terms.iter().all(|t| t.matches(fields)),
            Condition::Or(terms) => terms.iter().any(|t| t.matches(fields)),
            Condition::Not(inner) => !inner.matches(fields),
        }
    }
}

fn lookup<'a>(fields: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    let mut parts = path.split('.');
    let first = parts.next()?;
    let mut current = fields.get(first).or_else(|| {
        fields
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(first))
            .map(|(_, v)| v)
    })?;
    for part in parts {
        let map = current.as_object()?;
        current = map.get(part).or_else(|| {
            map.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(part))
                .map(|(_, v)| v)
        })?;
    }
    Some(current)
}

fn compare(left: &Value, right: &Value) -> Option<Ordering> {
    match (left, right) {
        (Value::Number(a), Value::Number(b)) => a.as_f64()?.partial_cmp(&b.as_f64()?),
        (Value::String(a), Value::String(b)) => Some(a.cmp(b)),
        (Value::Bool(a), Value::Bool(b)) => Some(a.cmp(b)),
        // Designers write numbers as strings and the other way round; compare by text then.
        (Value::String(a), Value::Number(b)) => a.parse::<f64>().ok()?.partial_cmp(&b.as_f64()?),
        (Value::Number(a), Value::String(b)) => a.as_f64()?.partial_cmp(&b.parse::<f64>().ok()?),
        (Value::Bool(a), Value::String(b)) => Some(a.to_string().as_str().cmp(b.as_str())),
        _ => None,
    }
}

impl Comparison {
    fn matches(&self, fields: &Map<String, Value>) -> bool {
        let actual = lookup(fields, &self.field).unwrap_or(&Value::Null);
        if self.value.is_null() || actual.is_null() {
            let both_null = self.value.is_null() && actual.is_null();
            return match self.op {
                Op::Eq => both_null,
                Op::Ne => !both_null,
                _ => false,
            };
        }
        match compare(actual, &self.value) {
            Some(ordering) => match self.op {
                Op::Eq => ordering == Ordering::Equal,
                Op::Ne => ordering != Ordering::Equal,
                Op::Lt => ordering == Ordering::Less,
                Op::Le => ordering != Ordering::Greater,
                Op::Gt => ordering == Ordering::Greater,
                Op::Ge => ordering != Ordering::Less,
            },
            None => self.op == Op::Ne,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields(value: Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn parses_and_or_with_precedence() {
        let c = parse("Email = 'a@x.io' AND Created > 5 OR Name = 'O''Brien'")
            .unwrap()
            .unwrap();
        let Condition::Or(terms) = &c else {
            panic!("expected OR, got {c:?}")
        };
        assert_eq!(terms.len(), 2);
        assert!(matches!(&terms[0], Condition::And(inner) if inner.len() == 2));
        assert!(c.matches(&fields(json!({"Name": "O'Brien"}))));
    }

    #[test]
    fn top_level_conjuncts_can_be_pushed_down() {
        let c = parse("Customer = 'cus_1' and Status != 'canceled'")
            .unwrap()
            .unwrap();
        let conjuncts = c.conjuncts();
        assert_eq!(conjuncts.len(), 2);
        assert_eq!(conjuncts[0].field, "Customer");
        assert_eq!(conjuncts[0].value, json!("cus_1"));
    }

    #[test]
    fn evaluates_numbers_nulls_nested_and_not() {
        let entity =
            fields(json!({"Amount": 1500, "Description": null, "Address": {"city": "Paris"}}));
        assert!(
            parse("Amount >= 1500 AND Description = null")
                .unwrap()
                .unwrap()
                .matches(&entity)
        );
        assert!(
            parse("Address.City = 'Paris'")
                .unwrap()
                .unwrap()
                .matches(&entity)
        );
        assert!(
            parse("NOT (Amount < 10)")
                .unwrap()
                .unwrap()
                .matches(&entity)
        );
        assert!(!parse("amount > '2000'").unwrap().unwrap().matches(&entity));
    }

    #[test]
    fn refuses_clauses_that_nest_too_deep_or_run_too_long() {
        let deep = format!("{}Email = 'x'{}", "(".repeat(100_000), ")".repeat(100_000));
        assert!(parse(&deep).is_err());
        let nots = format!("{}Email = 'x'", "NOT ".repeat(1000));
        assert!(parse(&nots).unwrap_err().message.contains("nested deeper"));
        assert!(parse("(((Email = 'x')))").is_ok());
    }

    #[test]
    fn reports_where_a_clause_breaks() {
        assert_eq!(parse("Email = 'x").unwrap_err().offset, 8);
        assert_eq!(
            parse("Email 'x'").unwrap_err().message,
            "expected an operator (=, !=, <, <=, >, >=)"
        );
        assert!(parse("Email = 'x' Name = 'y'").is_err());
        assert_eq!(parse("   ").unwrap(), None);
    }
}
