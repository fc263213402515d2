//! The filter clause of ListEntities and the *WithConditions methods. Pure, no I/O.
//!
//! Grammar (keywords case-insensitive, strings in single quotes with `''` for a quote):
//! ```text
//! expr       := and_expr ( OR and_expr )*
//! and_expr   := unary ( AND unary )*
//! unary      := NOT unary | '(' expr ')' | comparison
//! comparison := FIELD op literal
//!             | FIELD [NOT] IN '(' literal ( ',' literal )* ')'
//!             | FIELD [NOT] LIKE 'pattern'
//!             | FIELD IS [NOT] NULL
//! op         := = | != | <> | < | <= | > | >=
//! literal    := 'text' | number | true | false | null
//! ```
//! FIELD is a field name (`Email`, or Stripe's `email`), optionally dotted into nested objects
//! (`Address.City`) or into metadata keys (`Metadata.plan`). In a LIKE pattern `%` stands for any
//! run of characters and `_` for one character; matching is case-sensitive, as in SQL.
//! `IS NULL` also holds for a field the entity does not carry.

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
    /// `IN (…)`: the value is an array of literals.
    In,
    /// `LIKE 'pattern'`: the value is the pattern.
    Like,
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
#[error("syntax error at offset {offset}: {message}")]
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
    Comma,
}

fn tokenize(input: &str) -> Result<Vec<(usize, Token)>, ParseError> {
    let chars: Vec<(usize, char)> = input.char_indices().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let (offset, c) = chars[i];
        let (token, next) = match c {
            c if c.is_whitespace() => {
                i += 1;
                continue;
            }
            '(' => (Token::LParen, i + 1),
            ')' => (Token::RParen, i + 1),
            ',' => (Token::Comma, i + 1),
            '=' => (Token::Op(Op::Eq), i + 1),
            '\'' => string_literal(&chars, i)?,
            '!' | '<' | '>' => comparison(&chars, i)?,
            c if c.is_ascii_digit() || c == '-' => number(&chars, i)?,
            c if c.is_alphabetic() || c == '_' => identifier(&chars, i),
            other => {
                return Err(parse_error(
                    offset,
                    &format!("unexpected character {other:?}"),
                ));
            }
        };
        tokens.push((offset, token));
        i = next;
    }
    Ok(tokens)
}

fn parse_error(offset: usize, message: &str) -> ParseError {
    ParseError {
        offset,
        message: message.to_owned(),
    }
}

/// A quoted string starting at `chars[start]` (`''` is a quote inside it), and the index after it.
fn string_literal(chars: &[(usize, char)], start: usize) -> Result<(Token, usize), ParseError> {
    let mut text = String::new();
    let mut i = start + 1;
    loop {
        match chars.get(i) {
            None => return Err(parse_error(chars[start].0, "unterminated string")),
            Some((_, '\'')) if matches!(chars.get(i + 1), Some((_, '\''))) => {
                text.push('\'');
                i += 2;
            }
            Some((_, '\'')) => return Ok((Token::Str(text), i + 1)),
            Some((_, ch)) => {
                text.push(*ch);
                i += 1;
            }
        }
    }
}

/// `!=`, `<>`, `<=`, `>=`, `<` or `>` at `chars[start]`, and the index after it.
fn comparison(chars: &[(usize, char)], start: usize) -> Result<(Token, usize), ParseError> {
    let next = chars.get(start + 1).map(|(_, ch)| *ch);
    let (op, len) = match (chars[start].1, next) {
        ('!', Some('=')) => (Op::Ne, 2),
        ('<', Some('>')) => (Op::Ne, 2),
        ('<', Some('=')) => (Op::Le, 2),
        ('>', Some('=')) => (Op::Ge, 2),
        ('<', _) => (Op::Lt, 1),
        ('>', _) => (Op::Gt, 1),
        _ => return Err(parse_error(chars[start].0, "expected '!='")),
    };
    Ok((Token::Op(op), start + len))
}

/// An integer or decimal number at `chars[start]` (a leading `-` allowed), and the index after it.
fn number(chars: &[(usize, char)], start: usize) -> Result<(Token, usize), ParseError> {
    let mut i = start + 1;
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
            .ok_or_else(|| parse_error(chars[start].0, "invalid number"))?
    };
    Ok((Token::Num(number), i))
}

/// A field name or keyword at `chars[start]` (letters, digits, `_`, `.` and `-`), and the index
/// after it.
fn identifier(chars: &[(usize, char)], start: usize) -> (Token, usize) {
    let mut i = start;
    while i < chars.len() && (chars[i].1.is_alphanumeric() || matches!(chars[i].1, '_' | '.' | '-'))
    {
        i += 1;
    }
    let text = chars[start..i].iter().map(|(_, ch)| ch).collect();
    (Token::Ident(text), i)
}

/// Longest clause accepted, in bytes.
pub const MAX_CLAUSE_LEN: usize = 16 * 1024;
/// Deepest nesting of parentheses and NOT accepted, so no clause can exhaust the stack.
pub const MAX_DEPTH: usize = 32;
/// Most values one `IN (…)` list accepts.
pub const MAX_IN_VALUES: usize = 100;

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
        let compare = |op, value| {
            Condition::Compare(Comparison {
                field: field.clone(),
                op,
                value,
            })
        };
        if self.keyword("IS") {
            let negated = self.keyword("NOT");
            if !self.keyword("NULL") {
                return Err(self.error("expected NULL after IS"));
            }
            let op = if negated { Op::Ne } else { Op::Eq };
            return Ok(compare(op, Value::Null));
        }
        let negated = self.keyword("NOT");
        let condition = if self.keyword("IN") {
            compare(Op::In, Value::Array(self.list()?))
        } else if self.keyword("LIKE") {
            match self.tokens.get(self.pos) {
                Some((_, Token::Str(pattern))) => {
                    let pattern = Value::String(pattern.clone());
                    self.pos += 1;
                    compare(Op::Like, pattern)
                }
                _ => return Err(self.error("expected a quoted pattern after LIKE")),
            }
        } else if negated {
            return Err(self.error("expected IN or LIKE after NOT"));
        } else {
            let op = match self.tokens.get(self.pos) {
                Some((_, Token::Op(op))) => *op,
                _ => {
                    return Err(
                        self.error("expected an operator (=, !=, <, <=, >, >=, IN, LIKE, IS NULL)")
                    );
                }
            };
            self.pos += 1;
            compare(op, self.literal()?)
        };
        Ok(if negated {
            Condition::Not(Box::new(condition))
        } else {
            condition
        })
    }

    fn literal(&mut self) -> Result<Value, ParseError> {
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
        Ok(value)
    }

    /// `'(' literal ( ',' literal )* ')'`, at most MAX_IN_VALUES values.
    fn list(&mut self) -> Result<Vec<Value>, ParseError> {
        if !matches!(self.tokens.get(self.pos), Some((_, Token::LParen))) {
            return Err(self.error("expected '(' after IN"));
        }
        self.pos += 1;
        let mut values = vec![self.literal()?];
        while matches!(self.tokens.get(self.pos), Some((_, Token::Comma))) {
            self.pos += 1;
            if values.len() == MAX_IN_VALUES {
                return Err(self.error(&format!("IN takes at most {MAX_IN_VALUES} values")));
            }
            values.push(self.literal()?);
        }
        if !matches!(self.tokens.get(self.pos), Some((_, Token::RParen))) {
            return Err(self.error("expected ',' or ')' in the IN list"));
        }
        self.pos += 1;
        Ok(values)
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

/// The value at a (possibly dotted) field path; names match case-insensitively when no exact
/// match exists.
pub fn field_value<'a>(fields: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
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
    /// Evaluates the comparison on one entity's fields.
    pub fn matches(&self, fields: &Map<String, Value>) -> bool {
        let actual = field_value(fields, &self.field).unwrap_or(&Value::Null);
        match self.op {
            Op::In => self
                .value
                .as_array()
                .is_some_and(|values| values.iter().any(|v| equals(actual, v))),
            Op::Like => match (actual, &self.value) {
                (Value::String(text), Value::String(pattern)) => like(text, pattern),
                _ => false,
            },
            op => compare_with(op, actual, &self.value),
        }
    }
}

fn equals(actual: &Value, expected: &Value) -> bool {
    compare_with(Op::Eq, actual, expected)
}

fn compare_with(op: Op, actual: &Value, expected: &Value) -> bool {
    if expected.is_null() || actual.is_null() {
        let both_null = expected.is_null() && actual.is_null();
        return match op {
            Op::Eq => both_null,
            Op::Ne => !both_null,
            _ => false,
        };
    }
    match compare(actual, expected) {
        Some(ordering) => match op {
            Op::Eq => ordering == Ordering::Equal,
            Op::Ne => ordering != Ordering::Equal,
            Op::Lt => ordering == Ordering::Less,
            Op::Le => ordering != Ordering::Greater,
            Op::Gt => ordering == Ordering::Greater,
            Op::Ge => ordering != Ordering::Less,
            Op::In | Op::Like => false,
        },
        None => op == Op::Ne,
    }
}

/// SQL LIKE: `%` any run of characters, `_` exactly one; everything else literal.
pub fn like(text: &str, pattern: &str) -> bool {
    let text: Vec<char> = text.chars().collect();
    let pattern: Vec<char> = pattern.chars().collect();
    // Iterative matching with backtracking to the last `%`: linear memory, no recursion.
    let (mut t, mut p) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some('%') => {
                star = Some((p, t));
                p += 1;
            }
            Some(c) if *c == '_' || *c == text[t] => {
                t += 1;
                p += 1;
            }
            _ => match star {
                Some((star_p, star_t)) => {
                    p = star_p + 1;
                    t = star_t + 1;
                    star = Some((star_p, star_t + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|c| *c == '%')
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
            "expected an operator (=, !=, <, <=, >, >=, IN, LIKE, IS NULL)"
        );
        assert!(parse("Email = 'x' Name = 'y'").is_err());
        assert_eq!(parse("   ").unwrap(), None);
    }

    #[test]
    fn in_like_and_null_tests() {
        let entity = fields(json!({
            "Email": "jen@rosen.io", "Name": null, "Amount": 300,
            "Metadata": {"plan": "pro", "tier-2": "x"}
        }));
        let holds = |clause: &str| parse(clause).unwrap().unwrap().matches(&entity);
        assert!(holds("Amount IN (100, 300)"));
        assert!(!holds("Amount NOT IN (100, 300)"));
        assert!(holds("Email IN ('a@b.c', 'jen@rosen.io')"));
        assert!(holds("Email LIKE 'jen%'"));
        assert!(holds("Email LIKE '%rosen%'"));
        assert!(holds("Email LIKE 'j_n@%.io'"));
        assert!(!holds("Email LIKE 'Jen%'"), "LIKE is case-sensitive");
        assert!(holds("Email NOT LIKE '%stripe%'"));
        assert!(holds("Name IS NULL AND Email IS NOT NULL"));
        assert!(holds("Phone IS NULL"), "an absent field is null");
        assert!(!holds("Amount IS NULL"));
        assert!(holds("Metadata.plan = 'pro' AND Metadata.tier-2 = 'x'"));
        assert!(!holds("Metadata.plan = 'basic'"));
        assert!(!holds("Metadata.Missing IS NOT NULL"));
    }

    #[test]
    fn like_patterns_backtrack_without_blowing_up() {
        assert!(like("", "%"));
        assert!(!like("", "_"));
        assert!(like("abcabd", "%ab_"));
        assert!(!like("abc", "%d%"));
        let long = "a".repeat(5000);
        assert!(!like(&long, &format!("{}b", "%a".repeat(50))));
    }

    #[test]
    fn new_clauses_report_where_they_break() {
        let error = parse("Email IN ('a', 'b'").unwrap_err();
        assert_eq!(error.offset, 18);
        assert!(error.message.contains("IN list"), "{}", error.message);
        assert_eq!(parse("Email IS NOT 'x'").unwrap_err().offset, 13);
        assert_eq!(parse("Email LIKE 5").unwrap_err().offset, 11);
        assert_eq!(parse("Email NOT = 'x'").unwrap_err().offset, 10);
        let many = (0..=MAX_IN_VALUES)
            .map(|n| n.to_string())
            .collect::<Vec<_>>();
        let error = parse(&format!("Amount IN ({})", many.join(", "))).unwrap_err();
        assert!(error.message.contains("at most"), "{}", error.message);
    }
}
