//! The generator's rules on a small hand-made description shaped like Stripe's.

use serde_json::{Value, json};

use super::*;
use crate::spec::model::OperationKind;
use crate::spec::overlay::Overlay;

fn list_of(schema: &str) -> Value {
    json!({"responses": {"200": {"content": {"application/json": {"schema": {
        "type": "object",
        "properties": {
            "object": {"type": "string", "enum": ["list"]},
            "data": {"type": "array", "items": {"$ref": format!("#/components/schemas/{schema}")}},
            "has_more": {"type": "boolean"}
        }
    }}}}}})
}

fn op(id: &str, params: Value, body: Value, response: &str) -> Value {
    json!({
        "operationId": id,
        "parameters": params,
        "requestBody": {"content": {"application/x-www-form-urlencoded": {"schema": body}}},
        "responses": {"200": {"content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{response}")}}}}}
    })
}

fn path_param(name: &str) -> Value {
    json!({"in": "path", "name": name, "required": true, "schema": {"type": "string", "maxLength": 5000}})
}

fn paging() -> Value {
    json!([
        {"in": "query", "name": "limit", "required": false, "schema": {"type": "integer"}},
        {"in": "query", "name": "starting_after", "required": false, "schema": {"type": "string"}}
    ])
}

fn with_params(mut value: Value, params: Value) -> Value {
    value["operationId"] = json!("List");
    value["parameters"] = params;
    value
}

fn expandable(schema: &str) -> Value {
    json!({
        "anyOf": [{"type": "string", "maxLength": 5000}, {"$ref": format!("#/components/schemas/{schema}")}],
        "nullable": true,
        "x-expansionResources": {"oneOf": [{"$ref": format!("#/components/schemas/{schema}")}]}
    })
}

fn sample_api() -> OpenApi {
    let no_body = json!({"type": "object", "properties": {}});
    let customer_body = json!({"type": "object", "properties": {
        "email": {"type": "string", "maxLength": 512},
        "expand": {"type": "array", "items": {"type": "string"}}
    }});
    OpenApi::from_value(json!({
        "info": {"version": "2023-08-16"},
        "paths": {
            "/v1/customers": {
                "get": with_params(list_of("customer"), paging()),
                "post": op("PostCustomers", json!([]), customer_body.clone(), "customer")
            },
            "/v1/customers/search": {"get": with_params(list_of("customer"), json!([]))},
            "/v1/customers/{customer}": {
                "get": op("GetCustomer", json!([path_param("customer")]), no_body.clone(), "customer"),
                "post": op("PostCustomer", json!([path_param("customer")]), customer_body, "customer"),
                "delete": op("DeleteCustomer", json!([path_param("customer")]), no_body.clone(), "deleted_customer")
            },
            "/v1/customers/{customer}/tax_ids": {
                "get": with_params(list_of("tax_id"), json!([path_param("customer")])),
                "post": op("PostTaxId", json!([path_param("customer")]),
                    json!({"type": "object", "required": ["value"], "properties": {"value": {"type": "string"}}}), "tax_id")
            },
            "/v1/customers/{customer}/tax_ids/{id}": {
                "get": op("GetTaxId", json!([path_param("customer"), path_param("id")]), no_body.clone(), "tax_id")
            },
            "/v1/invoices": {"get": with_params(list_of("invoice"), paging())},
            "/v1/invoices/{invoice}": {
                "get": op("GetInvoice", json!([path_param("invoice")]), no_body.clone(), "invoice")
            },
            "/v1/invoices/{invoice}/pay": {
                "post": op("PostInvoicePay", json!([path_param("invoice")]), json!({"type": "object", "properties": {
                    "expand": {"type": "array", "items": {"type": "string"}},
                    "paid_out_of_band": {"type": "boolean"}
                }}), "invoice")
            },
            "/v1/invoices/{invoice}/lines": {"get": with_params(list_of("line_item"), json!([path_param("invoice")]))},
            "/v1/invoices/upcoming/lines": {"get": with_params(list_of("line_item"), json!([]))}
        },
        "components": {"schemas": {
            "customer": {"type": "object", "x-resourceId": "customer", "properties": {
                "id": {"type": "string"},
                "object": {"type": "string", "enum": ["customer"]},
                "created": {"type": "integer", "format": "unix-time"},
                "email": {"type": "string", "nullable": true, "maxLength": 5000}
            }},
            "deleted_customer": {"type": "object", "properties": {"id": {"type": "string"}}},
            "tax_id": {"type": "object", "x-resourceId": "tax_id", "properties": {
                "id": {"type": "string"},
                "customer": expandable("customer"),
                "value": {"type": "string"}
            }},
            "invoice": {"type": "object", "x-resourceId": "invoice", "properties": {
                "id": {"type": "string"},
                "customer": expandable("customer"),
                "amount_due": {"type": "integer"}
            }},
            "line_item": {"type": "object", "x-resourceId": "line_item", "properties": {
                "id": {"type": "string"},
                "amount": {"type": "integer"}
            }}
        }}
    }))
}

fn overlay(extra: &str) -> Overlay {
    let text = format!(
        "{extra}\n[connector]\nname = \"stripe\"\nversion = \"1\"\ndefault_base_url = \"https://api.stripe.com\"\ndialect = \"stripe\"\n"
    );
    Overlay::parse(&text).unwrap()
}

fn sample_spec(extra: &str) -> ConnectorSpec {
    generate_from(&sample_api(), &overlay(extra), None).unwrap()
}

#[test]
fn collections_become_entities_and_previews_do_not() {
    let spec = sample_spec("");
    let names: Vec<&str> = spec.entities.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(
        names,
        ["Customer", "CustomerTaxId", "Invoice", "InvoiceLine"]
    );
    assert_eq!(spec.connector.api_version, "2023-08-16");
}

#[test]
fn a_top_level_entity_gets_its_operations_search_and_field_rules() {
    let spec = sample_spec("");
    let customer = spec.entity("Customer").unwrap();
    let kinds: Vec<OperationKind> = customer.operations.iter().map(|(kind, _)| kind).collect();
    assert_eq!(
        kinds,
        [
            OperationKind::List,
            OperationKind::Get,
            OperationKind::Create,
            OperationKind::Update,
            OperationKind::Delete
        ]
    );
    assert_eq!(
        customer.search_path.as_deref(),
        Some("/v1/customers/search")
    );
    assert_eq!(customer.item_id_param.as_deref(), Some("customer"));
    assert_eq!(customer.fields[0].name, "Id");
    let email = customer.field("email").unwrap();
    assert!(!email.read_only && email.nullable);
    assert_eq!(
        email.json_schema,
        json!({"type": "string", "nullable": true}).into()
    );
    let created = customer.field("Created").unwrap();
    assert!(created.read_only);
    assert_eq!(created.data_type, DataType::Timestamp);
    let get = customer.operations.get.as_ref().unwrap();
    assert_eq!(get.params[0].name, "Id");
    assert_eq!(get.params[0].source, "customer");
    let create = customer.operations.create.as_ref().unwrap();
    assert_eq!(
        create.param("Email").unwrap().json_schema,
        json!({"type": "string", "maxLength": 512}).into()
    );
}

#[test]
fn a_nested_collection_keys_on_its_parent() {
    let spec = sample_spec("");
    let tax_id = spec.entity("CustomerTaxId").unwrap();
    assert_eq!(tax_id.parents.len(), 1);
    assert_eq!(tax_id.parents[0].field, "Customer");
    assert_eq!(tax_id.parents[0].param, "customer");
    let customer = tax_id.field("Customer").unwrap();
    assert!(customer.key);
    assert!(!customer.read_only, "given through the create path");
    assert_eq!(customer.reference.as_deref(), Some("Customer"));
    let create = tax_id.operations.create.as_ref().unwrap();
    assert_eq!(create.params[0].name, "Customer");
    assert!(create.param("Value").unwrap().required);
    let get = tax_id.operations.get.as_ref().unwrap();
    let names: Vec<&str> = get.params.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["Customer", "Id"]);
}

#[test]
fn a_parent_missing_from_the_object_gets_a_field_of_its_own() {
    let spec = sample_spec("");
    let lines = spec.entity("InvoiceLine").unwrap();
    let invoice = lines.field("Invoice").unwrap();
    assert_eq!(invoice.source, "invoice");
    assert!(invoice.key && invoice.read_only);
    assert_eq!(lines.fields[1].name, "Invoice", "parent keys follow Id");
}

#[test]
fn expandable_fields_reference_their_entity() {
    let spec = sample_spec("");
    let customer = spec.entity("Invoice").unwrap().field("Customer").unwrap();
    assert_eq!(customer.reference.as_deref(), Some("Customer"));
    assert_eq!(customer.data_type, DataType::Varchar);
}

#[test]
fn a_post_verb_returning_its_object_becomes_an_action() {
    let spec = sample_spec("");
    let pay = spec.action("PayInvoice").unwrap();
    assert_eq!(pay.display_name, "Pay invoice");
    assert_eq!(pay.entity.as_deref(), Some("Invoice"));
    let names: Vec<&str> = pay
        .operation
        .params
        .iter()
        .map(|p| p.name.as_str())
        .collect();
    assert_eq!(names, ["InvoiceId", "PaidOutOfBand"], "expand is left out");
    assert_eq!(pay.result, ResultShape::Flatten);
    assert!(pay.result_fields.iter().any(|f| f.name == "AmountDue"));
}

#[test]
fn the_overlay_names_entities_actions_and_parameters() {
    let spec = sample_spec(
        r#"
[entities."/v1/invoices/{invoice}/lines"]
name = "InvoiceLineItem"
id_prefix = "il"

[actions."/v1/invoices/{invoice}/pay"]
name = "SettleInvoice"
params = { paid_out_of_band = "OutOfBand" }
result = { kind = "success_only" }
"#,
    );
    let lines = spec.entity("InvoiceLineItem").unwrap();
    assert_eq!(lines.id_prefix.as_deref(), Some("il"));
    let settle = spec.action("SettleInvoice").unwrap();
    assert!(settle.param("OutOfBand").is_some());
    assert_eq!(settle.result, ResultShape::SuccessOnly);
}

#[test]
fn an_overlay_key_that_matches_nothing_is_an_error() {
    let error = generate_from(
        &sample_api(),
        &overlay("[entities.\"/v1/custmers\"]\nname = \"Client\"\n"),
        None,
    )
    .unwrap_err();
    assert_eq!(
        error.to_string(),
        "overlay entities.\"/v1/custmers\": no entity collection has this path"
    );
    let error = generate_from(
        &sample_api(),
        &overlay("[actions.\"/v1/invoices/{invoice}/pay\"]\nparams = { nope = \"Nope\" }\n"),
        None,
    )
    .unwrap_err();
    assert!(error.to_string().contains("params.nope"), "{error}");
}

#[test]
fn two_collections_deriving_one_name_are_an_error() {
    let error = generate_from(
        &sample_api(),
        &overlay("[entities.\"/v1/invoices\"]\nname = \"Customer\"\n"),
        None,
    )
    .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("entity name Customer is also derived"),
        "{error}"
    );
}

#[test]
fn skipped_collections_leave_no_entity_or_action() {
    let spec = sample_spec("skip = [\"/v1/invoices\"]\n");
    assert!(spec.entity("Invoice").is_none());
    assert!(spec.entity("InvoiceLine").is_none());
    assert!(spec.action("PayInvoice").is_none());
}

#[test]
fn fixtures_supply_id_prefixes() {
    let fixtures = json!({"resources": {"customer": {"id": "cus_Oaxlz8kB0PJWGa"}}});
    let spec = generate_from(&sample_api(), &overlay(""), Some(&fixtures)).unwrap();
    assert_eq!(
        spec.entity("Customer").unwrap().id_prefix.as_deref(),
        Some("cus")
    );
    assert_eq!(spec.entity("Invoice").unwrap().id_prefix, None);
}

#[test]
fn id_prefix_comes_from_sample_ids() {
    assert_eq!(id_prefix("cus_Oaxlz8kB0PJWGa").as_deref(), Some("cus"));
    assert_eq!(
        id_prefix("cs_test_a1GY7ro6JZfWvbmbDNpILk2").as_deref(),
        Some("cs")
    );
    assert_eq!(
        id_prefix("sub_sched_1NnmX8GPxmnHQRkJ37AGvTnf").as_deref(),
        Some("sub_sched")
    );
    assert_eq!(id_prefix("txcd_99999999").as_deref(), Some("txcd"));
}

#[test]
fn id_prefix_is_none_without_a_random_tail() {
    assert_eq!(id_prefix("card_payments"), None);
    assert_eq!(id_prefix("US"), None);
    assert_eq!(id_prefix("balance.summary.1"), None);
}

#[test]
fn the_generated_sample_passes_validation() {
    crate::spec::validate(&sample_spec(""), "sample").unwrap();
}
