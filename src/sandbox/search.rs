//! Stripe's search query language: parsing and matching. Pure, no I/O.
//!
//! Grammar (what Stripe documents for `/v1/<collection>/search?query=`):
//! ```text
//! query   := clause ( ("AND" | "OR") clause )*        -- AND and OR are not mixed
//! clause  := ["-"] field op value
//! field   := name | "metadata[" quoted "]"             -- name may be dotted: address.city
//! op      := ":" | "~" | ">" | ">=" | "<" | "<="
//! value   := quoted string | number | "null"
//! ```
//! `:` is an exact, case-insensitive match; `~` a substring match; comparisons are numeric.

use serde_json::{Map, Value};

/// Clauses allowed in one query, as in Stripe.
const MAX_CLAUSES: usize = 10;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SearchError {
    #[error("the search query is empty")]
    Empty,
    #[error("unexpected `{found}` at position {at} of the search query; expected {expected}")]
    Unexpected {
        at: usize,
        found: String,
        expected: &'static str,
    },
    #[error("unterminated quoted string starting at position {0} of the search query")]
    Unterminated(usize),
    #[error("a search query cannot mix AND and OR")]
    MixedConnectives,
    #[error("a search query can have at most {MAX_CLAUSES} clauses")]
    TooManyClauses,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Query {
    pub clauses: Vec<Clause>,
    /// True for OR, false for AND (irrelevant with one clause).
    pub any: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Clause {
    pub negated: bool,
    pub field: FieldRef,
    pub op: Op,
    pub value: Literal,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FieldRef {
    /// A (possibly dotted) field, e.g. `email`, `address.city`.
    Field(String),
    /// `metadata['key']`.
    Metadata(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Eq,
    Contains,
    Gt,
    Gte,
    Lt,
    Lte,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Literal {
    Str(String),
    Num(f64),
    Null,
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Word(String),
    Str(String),
    Num(f64),
    Op(Op),
    Minus,
    OpenBracket,
    CloseBracket,
}

fn describe(token: &Token) -> String {
    match token {
        Token::Word(w) => w.clone(),
        Token::Str(s) => format!("'{s}'"),
        Token::Num(n) => n.to_string(),
        Token::Op(op) => format!("{op:?}"),
        Token::Minus => "-".into(),
        Token::OpenBracket => "[".into(),
        Token::CloseBracket => "]".into(),
    }
}

fn tokenize(input: &str) -> Result<Vec<(usize, Token)>, SearchError> {
    let chars: Vec<(usize, char)> = input.char_indices().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let (at, c) = chars[i];
        let (token, next) = match c {
            c if c.is_whitespace() => {
                i += 1;
                continue;
            }
            '\'' | '"' => quoted(&chars, i)?,
            ':' => (Token::Op(Op::Eq), i + 1),
            '~' => (Token::Op(Op::Contains), i + 1),
            '>' | '<' => {
                let or_equal = chars.get(i + 1).is_some_and(|&(_, n)| n == '=');
                let op = match (c, or_equal) {
                    ('>', false) => Op::Gt,
                    ('>', true) => Op::Gte,
                    ('<', false) => Op::Lt,
                    _ => Op::Lte,
                };
                (Token::Op(op), i + if or_equal { 2 } else { 1 })
            }
            '[' => (Token::OpenBracket, i + 1),
            ']' => (Token::CloseBracket, i + 1),
            '-' if !chars.get(i + 1).is_some_and(|&(_, n)| n.is_ascii_digit()) => {
                (Token::Minus, i + 1)
            }
            _ => word(&chars, i),
        };
        tokens.push((at, token));
        i = next;
    }
    Ok(tokens)
}

/// A string in single or double quotes at `chars[start]` (a backslash escapes the next
/// character), and the index after it.
fn quoted(chars: &[(usize, char)], start: usize) -> Result<(Token, usize), SearchError> {
    let (at, quote) = chars[start];
    let mut text = String::new();
    let mut i = start + 1;
    loop {
        let Some(&(_, next)) = chars.get(i) else {
            return Err(SearchError::Unterminated(at));
        };
        i += 1;
        if next == '\\' {
            if let Some(&(_, escaped)) = chars.get(i) {
                text.push(escaped);
                i += 1;
            }
        } else if next == quote {
            return Ok((Token::Str(text), i));
        } else {
            text.push(next);
        }
    }
}

/// A bare word or number at `chars[start]`, up to whitespace or punctuation, and the index after
/// it.
fn word(chars: &[(usize, char)], start: usize) -> (Token, usize) {
    let mut i = start;
    while i < chars.len() {
        let ch = chars[i].1;
        if ch.is_whitespace() || matches!(ch, ':' | '~' | '>' | '<' | '[' | ']' | '\'' | '"') {
            break;
        }
        i += 1;
    }
    let word: String = chars[start..i].iter().map(|&(_, ch)| ch).collect();
    match word.parse::<f64>() {
        Ok(n) if word.bytes().any(|b| b.is_ascii_digit()) => (Token::Num(n), i),
        _ => (Token::Word(word), i),
    }
}

struct Parser {
    tokens: Vec<(usize, Token)>,
    pos: usize,
    end: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos).map(|(_, t)| t)
    }

    fn next(&mut self, expected: &'static str) -> Result<Token, SearchError> {
        match self.tokens.get(self.pos) {
            Some((_, token)) => {
                self.pos += 1;
                Ok(token.clone())
            }
            None => Err(SearchError::Unexpected {
                at: self.end,
                found: "end of query".into(),
                expected,
            }),
        }
    }

    fn unexpected(&self, expected: &'static str) -> SearchError {
        let at = self
            .tokens
            .get(self.pos.saturating_sub(1))
            .map_or(self.end, |(at, _)| *at);
        let found = self
            .tokens
            .get(self.pos.saturating_sub(1))
            .map_or("end of query".into(), |(_, t)| describe(t));
        SearchError::Unexpected {
            at,
            found,
            expected,
        }
    }

    fn clause(&mut self) -> Result<Clause, SearchError> {
        let negated = if self.peek() == Some(&Token::Minus) {
            self.pos += 1;
            true
        } else {
            false
        };
        let field = match self.next("a field name")? {
            Token::Word(name) if name == "metadata" && self.peek() == Some(&Token::OpenBracket) => {
                self.pos += 1;
                let key = match self.next("a quoted metadata key")? {
                    Token::Str(key) => key,
                    _ => return Err(self.unexpected("a quoted metadata key")),
                };
                match self.next("`]`")? {
                    Token::CloseBracket => FieldRef::Metadata(key),
                    _ => return Err(self.unexpected("`]`")),
                }
            }
            Token::Word(name) => FieldRef::Field(name),
            _ => return Err(self.unexpected("a field name")),
        };
        let op = match self.next("an operator (: ~ > >= < <=)")? {
            Token::Op(op) => op,
            _ => return Err(self.unexpected("an operator (: ~ > >= < <=)")),
        };
        let value = match self.next("a value")? {
            Token::Str(s) => Literal::Str(s),
            Token::Num(n) => Literal::Num(n),
            Token::Word(w) if w == "null" => Literal::Null,
            _ => return Err(self.unexpected("a quoted value or a number")),
        };
        Ok(Clause {
            negated,
            field,
            op,
            value,
        })
    }
}

/// Parses a search query.
pub(crate) fn parse(input: &str) -> Result<Query, SearchError> {
    let tokens = tokenize(input)?;
    if tokens.is_empty() {
        return Err(SearchError::Empty);
    }
    let mut parser = Parser {
        tokens,
        pos: 0,
        end: input.len(),
    };
    let mut clauses = vec![parser.clause()?];
    let mut connective: Option<bool> = None;
    while parser.peek().is_some() {
        let any = match parser.next("AND or OR")? {
            Token::Word(w) if w == "AND" => false,
            Token::Word(w) if w == "OR" => true,
            _ => return Err(parser.unexpected("AND or OR")),
        };
        if connective.is_some_and(|previous| previous != any) {
            return Err(SearchError::MixedConnectives);
        }
        connective = Some(any);
        clauses.push(parser.clause()?);
        if clauses.len() > MAX_CLAUSES {
            return Err(SearchError::TooManyClauses);
        }
    }
    Ok(Query {
        clauses,
        any: connective.unwrap_or(false),
    })
}

impl Query {
    /// Top-level field names the query refers to (`metadata` for metadata clauses).
    pub fn fields(&self) -> impl Iterator<Item = &str> {
        self.clauses.iter().map(|clause| match &clause.field {
            FieldRef::Field(name) => name.split('.').next().unwrap_or(name),
            FieldRef::Metadata(_) => "metadata",
        })
    }

    pub fn matches(&self, object: &Map<String, Value>) -> bool {
        let mut results = self.clauses.iter().map(|clause| clause.matches(object));
        if self.any {
            results.any(|r| r)
        } else {
            results.all(|r| r)
        }
    }
}

impl Clause {
    fn matches(&self, object: &Map<String, Value>) -> bool {
        let value = match &self.field {
            FieldRef::Metadata(key) => object.get("metadata").and_then(|m| m.get(key)),
            FieldRef::Field(path) => {
                let mut parts = path.split('.');
                let first = parts.next().and_then(|part| object.get(part));
                first.and_then(|first| parts.try_fold(first, |v, part| v.get(part)))
            }
        };
        let value = value.unwrap_or(&Value::Null);
        let hit = compare(value, self.op, &self.value);
        hit != self.negated
    }
}

fn as_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        // An expanded reference compares by its id.
        Value::Object(map) => map.get("id").and_then(Value::as_str).map(str::to_owned),
        _ => None,
    }
}

fn as_number(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

fn compare(value: &Value, op: Op, literal: &Literal) -> bool {
    match (op, literal) {
        (Op::Eq, Literal::Null) => value.is_null(),
        (_, Literal::Null) => false,
        (Op::Eq, Literal::Str(wanted)) => {
            as_text(value).is_some_and(|text| text.eq_ignore_ascii_case(wanted))
        }
        (Op::Eq, Literal::Num(wanted)) => as_number(value).is_some_and(|n| n == *wanted),
        (Op::Contains, Literal::Str(part)) => {
            as_text(value).is_some_and(|text| text.to_lowercase().contains(&part.to_lowercase()))
        }
        (Op::Contains, Literal::Num(n)) => {
            as_text(value).is_some_and(|text| text.contains(&n.to_string()))
        }
        (op, literal) => {
            let wanted = match literal {
                Literal::Num(n) => Some(*n),
                Literal::Str(s) => s.parse().ok(),
                Literal::Null => None,
            };
            match (as_number(value), wanted) {
                (Some(have), Some(wanted)) => match op {
                    Op::Gt => have > wanted,
                    Op::Gte => have >= wanted,
                    Op::Lt => have < wanted,
                    _ => have <= wanted,
                },
                _ => false,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn customer() -> Value {
        json!({"id": "cus_1", "email": "Jenny.Rosen@example.com", "name": "Jenny Rosen", "amount": 1500,
               "created": 1700000000, "metadata": {"order_id": "6735"}, "address": {"city": "Berlin"}, "phone": null})
    }

    fn hits(query: &str) -> bool {
        parse(query)
            .unwrap()
            .matches(customer().as_object().unwrap())
    }

    #[test]
    fn exact_match_is_case_insensitive() {
        assert!(hits("email:'jenny.rosen@example.com'"));
        assert!(!hits("email:'jenny@example.com'"));
    }

    #[test]
    fn metadata_clauses_read_the_metadata_hash() {
        assert!(hits("metadata['order_id']:'6735'"));
        assert!(hits(r#"metadata["order_id"]:"6735""#));
        assert!(!hits("metadata['order_id']:'1'"));
    }

    #[test]
    fn numeric_comparisons_and_negation() {
        assert!(hits("amount>1000"));
        assert!(hits("amount>=1500 AND amount<=1500"));
        assert!(!hits("amount<1000"));
        assert!(hits("-amount<1000"));
        assert!(hits("created>=1700000000"));
    }

    #[test]
    fn and_requires_all_or_requires_any() {
        assert!(!hits("email:'jenny.rosen@example.com' AND name:'someone'"));
        assert!(hits("email:'nobody@example.com' OR name:'jenny rosen'"));
    }

    #[test]
    fn substring_dotted_fields_and_null() {
        assert!(hits("name~'rose'"));
        assert!(hits("address.city:'berlin'"));
        assert!(hits("phone:null"));
        assert!(hits("-email:null"));
    }

    #[test]
    fn malformed_queries_are_rejected_with_a_reason() {
        assert_eq!(parse("   "), Err(SearchError::Empty));
        assert!(matches!(
            parse("email"),
            Err(SearchError::Unexpected { .. })
        ));
        assert!(matches!(
            parse("email:'x"),
            Err(SearchError::Unterminated(6))
        ));
        assert!(matches!(
            parse("email:'x' email:'y'"),
            Err(SearchError::Unexpected { .. })
        ));
        assert_eq!(
            parse("a:'1' AND b:'2' OR c:'3'"),
            Err(SearchError::MixedConnectives)
        );
        assert!(matches!(
            parse("metadata[order]:'1'"),
            Err(SearchError::Unexpected { .. })
        ));
        let eleven = ["a:'1'"; 11].join(" AND ");
        assert_eq!(parse(&eleven), Err(SearchError::TooManyClauses));
    }

    #[test]
    fn fields_lists_top_level_names() {
        let query = parse("address.city:'x' AND metadata['k']:'v' AND -email:'e'").unwrap();
        assert_eq!(
            query.fields().collect::<Vec<_>>(),
            vec!["address", "metadata", "email"]
        );
    }

    #[test]
    fn arbitrary_queries_never_panic() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let alphabet: Vec<char> = "ab:~<>=-'\"[] ANDOR12.metadata\\null".chars().collect();
        for _ in 0..5000 {
            let query: String = (0..rng.random_range(0..30))
                .map(|_| alphabet[rng.random_range(0..alphabet.len())])
                .collect();
            if let Ok(parsed) = parse(&query) {
                parsed.matches(customer().as_object().unwrap());
            }
        }
    }
}
