//! What Stripe sets on a new object of a modelled type that its schema cannot tell: a Customer's
//! invoice prefix and numbering, a Price's tax behaviour and decimal amount. Applied once, right
//! after the request's parameters. Synchronous; no I/O.

use serde_json::{Map, Value, json};

use super::store::Store;

/// Fills Stripe's defaults on a new `object_type` the request did not set.
pub(crate) fn complete_new(object_type: &str, object: &mut Map<String, Value>, store: &mut Store) {
    match object_type {
        "customer" => customer(object, store),
        "price" => price(object),
        _ => {}
    }
}

fn set_if_null(object: &mut Map<String, Value>, key: &str, value: Value) {
    if object.get(key).is_none_or(Value::is_null) {
        object.insert(key.to_owned(), value);
    }
}

fn customer(object: &mut Map<String, Value>, store: &mut Store) {
    set_if_null(object, "delinquent", json!(false));
    let prefix = store.random_hex_upper(8);
    set_if_null(object, "invoice_prefix", json!(prefix));
    if object
        .get("next_invoice_sequence")
        .and_then(Value::as_i64)
        .is_none_or(|n| n < 1)
    {
        object.insert("next_invoice_sequence".into(), json!(1));
    }
    set_if_null(object, "preferred_locales", json!([]));
    set_if_null(object, "tax_exempt", json!("none"));
}

fn price(object: &mut Map<String, Value>) {
    set_if_null(object, "tax_behavior", json!("unspecified"));
    if let Some(amount) = object.get("unit_amount").and_then(Value::as_i64) {
        set_if_null(object, "unit_amount_decimal", json!(amount.to_string()));
    }
    if object.get("recurring").is_some_and(Value::is_object) {
        object.insert("type".into(), json!("recurring"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_customer_gets_stripes_defaults_and_keeps_given_values() {
        let mut store = Store::new();
        let mut object =
            json!({"delinquent": null, "invoice_prefix": null, "next_invoice_sequence": 0,
                                "preferred_locales": ["fr"], "tax_exempt": "exempt"})
            .as_object()
            .cloned()
            .unwrap();
        complete_new("customer", &mut object, &mut store);
        assert_eq!(object["delinquent"], false);
        assert_eq!(object["invoice_prefix"].as_str().unwrap().len(), 8);
        assert_eq!(object["next_invoice_sequence"], 1);
        assert_eq!(object["preferred_locales"], json!(["fr"]));
        assert_eq!(object["tax_exempt"], "exempt");
    }

    #[test]
    fn a_price_shows_its_amount_as_a_decimal_string() {
        let mut store = Store::new();
        let mut object = json!({"unit_amount": 1500, "unit_amount_decimal": null, "tax_behavior": null, "type": "one_time", "recurring": {"interval": "month"}})
            .as_object()
            .cloned()
            .unwrap();
        complete_new("price", &mut object, &mut store);
        assert_eq!(object["unit_amount_decimal"], "1500");
        assert_eq!(object["tax_behavior"], "unspecified");
        assert_eq!(object["type"], "recurring");
    }
}
