//! Resource names (AIP-122): parsing and formatting. Pure.

use tonic::Status;

use super::status::invalid_field;

/// `connections/{connection}` → the connection id.
pub fn connection(name: &str, field: &str) -> Result<String, Status> {
    match name.strip_prefix("connections/") {
        Some(id) if !id.is_empty() && !id.contains('/') => Ok(id.to_owned()),
        _ => Err(invalid_field(
            field,
            format!("must look like connections/{{connection}}, got {name:?}"),
        )),
    }
}

/// `connections/{c}/entityTypes/{type}` → (connection, type).
pub fn entity_type(name: &str, field: &str) -> Result<(String, String), Status> {
    let parts: Vec<&str> = name.split('/').collect();
    match parts.as_slice() {
        ["connections", c, "entityTypes", t] if !c.is_empty() && !t.is_empty() => {
            Ok(((*c).to_owned(), (*t).to_owned()))
        }
        _ => Err(invalid_field(
            field,
            format!("must look like connections/{{connection}}/entityTypes/{{type}}, got {name:?}"),
        )),
    }
}

/// `connections/{c}/entityTypes/{type}/entities/{id}` → (connection, type, id); the id of a
/// nested type carries its parent ids joined with `/`.
pub fn entity(name: &str, field: &str) -> Result<(String, String, String), Status> {
    let bad = || {
        invalid_field(
            field,
            format!(
                "must look like connections/{{connection}}/entityTypes/{{type}}/entities/{{id}}, got {name:?}"
            ),
        )
    };
    let mut parts = name.splitn(6, '/');
    let (Some("connections"), Some(c), Some("entityTypes"), Some(t), Some("entities"), Some(id)) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err(bad());
    };
    if c.is_empty() || t.is_empty() || id.is_empty() {
        return Err(bad());
    }
    Ok((c.to_owned(), t.to_owned(), id.to_owned()))
}

/// `connections/{c}/actions/{action}` → (connection, action).
pub fn action(name: &str, field: &str) -> Result<(String, String), Status> {
    let parts: Vec<&str> = name.split('/').collect();
    match parts.as_slice() {
        ["connections", c, "actions", a] if !c.is_empty() && !a.is_empty() => {
            Ok(((*c).to_owned(), (*a).to_owned()))
        }
        _ => Err(invalid_field(
            field,
            format!("must look like connections/{{connection}}/actions/{{action}}, got {name:?}"),
        )),
    }
}

pub fn entity_type_name(connection: &str, entity_type: &str) -> String {
    format!("connections/{connection}/entityTypes/{entity_type}")
}

pub fn entity_name(connection: &str, entity_type: &str, id: &str) -> String {
    format!("connections/{connection}/entityTypes/{entity_type}/entities/{id}")
}

pub fn action_name(connection: &str, action: &str) -> String {
    format!("connections/{connection}/actions/{action}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_resource_name() {
        assert_eq!(
            connection("connections/stripe-eu", "name").unwrap(),
            "stripe-eu"
        );
        assert_eq!(
            entity(
                "connections/c/entityTypes/CustomerTaxId/entities/cus_1/txi_2",
                "name"
            )
            .unwrap(),
            (
                "c".to_owned(),
                "CustomerTaxId".to_owned(),
                "cus_1/txi_2".to_owned()
            )
        );
        assert_eq!(
            action("connections/c/actions/AcceptQuote", "name")
                .unwrap()
                .1,
            "AcceptQuote"
        );
        assert!(entity_type("connections/c/entityTypes/", "parent").is_err());
        assert!(connection("projects/x", "name").is_err());
    }
}
