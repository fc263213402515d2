//! The committed Stripe spec loads and validates, and broken variants of it fail naming the file
//! and the path inside it.

use std::path::{Path, PathBuf};

use connector_runtime::spec::model::{DataType, OperationKind};
use connector_runtime::spec::{SpecError, load_dir, stripe};
use serde_json::{Value, json};

fn committed_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("connector-spec/stripe")
}

#[test]
fn every_committed_entity_and_action_loads_and_validates() {
    let spec = load_dir(&committed_dir()).unwrap();
    assert_eq!(spec.connector.name, "stripe");
    assert_eq!(spec.connector.api_version, "2023-08-16");
    assert!(
        spec.entities.len() >= 80,
        "{} entities",
        spec.entities.len()
    );
    assert!(spec.actions.len() >= 40, "{} actions", spec.actions.len());
}

#[test]
fn the_embedded_copy_equals_the_committed_files() {
    assert_eq!(stripe().unwrap(), &load_dir(&committed_dir()).unwrap());
}

#[test]
fn core_entities_have_the_expected_shape() {
    let spec = stripe().unwrap();
    for (name, prefix) in [
        ("Customer", "cus"),
        ("PaymentIntent", "pi"),
        ("PaymentMethod", "pm"),
        ("Invoice", "in"),
        ("Quote", "qt"),
        ("Charge", "ch"),
        ("Event", "evt"),
        ("Refund", "re"),
        ("CheckoutSession", "cs"),
    ] {
        let entity = spec
            .entity(name)
            .unwrap_or_else(|| panic!("{name} missing"));
        assert_eq!(entity.id_prefix.as_deref(), Some(prefix), "{name}");
        assert_eq!(entity.fields[0].name, "Id", "{name}");
        assert!(entity.fields[0].key);
    }
    let customer = spec.entity("Customer").unwrap();
    for kind in [
        OperationKind::List,
        OperationKind::Get,
        OperationKind::Create,
        OperationKind::Update,
        OperationKind::Delete,
    ] {
        assert!(customer.supports(kind), "Customer {kind:?}");
    }
    assert_eq!(
        customer.search_path.as_deref(),
        Some("/v1/customers/search")
    );
    assert_eq!(customer.field("email").unwrap().name, "Email");
    assert_eq!(customer.field("Email").unwrap().source, "email");
    assert!(!customer.field("Email").unwrap().read_only);
    assert!(customer.field("Created").unwrap().read_only);
    assert_eq!(
        customer.field("Created").unwrap().data_type,
        DataType::Timestamp
    );
    let list = customer.operations.list.as_ref().unwrap();
    for param in ["Limit", "StartingAfter", "EndingBefore", "Created", "Email"] {
        assert!(list.param(param).is_some(), "Customer list lacks {param}");
    }
    let intent = spec.entity("PaymentIntent").unwrap();
    assert_eq!(
        intent.field("Customer").unwrap().reference.as_deref(),
        Some("Customer")
    );
    assert!(intent.supports(OperationKind::Update) && !intent.supports(OperationKind::Delete));
}

#[test]
fn nested_collections_carry_their_parent_as_a_key() {
    let spec = stripe().unwrap();
    let tax_id = spec.entity("CustomerTaxId").unwrap();
    assert_eq!(tax_id.collection_path, "/v1/customers/{customer}/tax_ids");
    assert_eq!(tax_id.parents[0].field, "Customer");
    assert_eq!(tax_id.parents[0].entity.as_deref(), Some("Customer"));
    assert!(tax_id.field("Customer").unwrap().key);
    let lines = spec.entity("InvoiceLineItem").unwrap();
    assert_eq!(lines.collection_path, "/v1/invoices/{invoice}/lines");
    assert_eq!(lines.parents[0].entity.as_deref(), Some("Invoice"));
    let list = lines.operations.list.as_ref().unwrap();
    assert!(list.param(&lines.parents[0].field).unwrap().required);
}

#[test]
fn exactly_the_searchable_resources_have_search_paths_and_fields() {
    let spec = stripe().unwrap();
    let searchable: Vec<&str> = spec
        .entities
        .iter()
        .filter(|entity| entity.search_path.is_some())
        .map(|entity| entity.name.as_str())
        .collect();
    assert_eq!(
        searchable,
        [
            "Charge",
            "Customer",
            "Invoice",
            "PaymentIntent",
            "Price",
            "Product",
            "Subscription"
        ]
    );
    for name in searchable {
        let entity = spec.entity(name).unwrap();
        assert!(
            entity.search_fields.contains(&"Metadata".to_owned()),
            "{name}"
        );
    }
}

#[test]
fn path_values_bind_parents_and_ids_whatever_stripe_calls_the_placeholders() {
    let spec = stripe().unwrap();
    let reversal = spec.entity("TransferReversal").unwrap();
    let parents = vec!["tr_1".to_owned()];
    let list = reversal.operations.list.as_ref().unwrap();
    assert_eq!(list.path, "/v1/transfers/{id}/reversals");
    assert_eq!(list.path_values(reversal, &parents, None), [("id", "tr_1")]);
    let get = reversal.operations.get.as_ref().unwrap();
    assert_eq!(get.path, "/v1/transfers/{transfer}/reversals/{id}");
    assert_eq!(
        get.path_values(reversal, &parents, Some("trr_1")),
        [("transfer", "tr_1"), ("id", "trr_1")]
    );
    let customer = spec.entity("Customer").unwrap();
    let get = customer.operations.get.as_ref().unwrap();
    assert_eq!(
        get.path_values(customer, &[], Some("cus_1")),
        [("customer", "cus_1")]
    );
}

/// A copy of the committed spec in a temporary directory, with one file edited.
fn broken(file: &str, edit: impl FnOnce(&mut Value)) -> (tempfile::TempDir, SpecError) {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&committed_dir(), dir.path());
    let path = dir.path().join(file);
    let mut value: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(&mut value);
    std::fs::write(&path, serde_json::to_string_pretty(&value).unwrap()).unwrap();
    let error = load_dir(dir.path()).expect_err("the broken spec loaded");
    (dir, error)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

fn field_index(entity: &Value, name: &str) -> usize {
    entity["fields"]
        .as_array()
        .unwrap()
        .iter()
        .position(|f| f["name"] == name)
        .unwrap()
}

fn assert_names(error: &SpecError, dir: &Path, file: &str, path: &str, message: &str) {
    let text = error.to_string();
    let expected = format!("{}/{file}: {path}: {message}", dir.display());
    assert_eq!(text, expected);
}

#[test]
fn unknown_reference_names_the_file_and_field() {
    let mut index = 0;
    let (dir, error) = broken("entities/PaymentIntent.json", |entity| {
        index = field_index(entity, "Customer");
        entity["fields"][index]["reference"] = json!("Custmer");
    });
    assert_names(
        &error,
        dir.path(),
        "entities/PaymentIntent.json",
        &format!("fields[{index}].reference"),
        "no entity type \"Custmer\"",
    );
}

#[test]
fn unknown_parent_entity_is_rejected() {
    let (dir, error) = broken("entities/CustomerTaxId.json", |entity| {
        entity["parents"][0]["entity"] = json!("Nobody");
    });
    assert_names(
        &error,
        dir.path(),
        "entities/CustomerTaxId.json",
        "parents[0].entity",
        "no entity type \"Nobody\"",
    );
}

#[test]
fn a_placeholder_without_a_path_parameter_is_rejected() {
    let (dir, error) = broken("entities/Customer.json", |entity| {
        let params = entity["operations"]["get"]["params"]
            .as_array_mut()
            .unwrap();
        params.retain(|param| param["location"] != "path");
    });
    assert_names(
        &error,
        dir.path(),
        "entities/Customer.json",
        "operations.get.path",
        "placeholder {customer} has no path parameter",
    );
}

#[test]
fn a_path_parameter_without_a_placeholder_is_rejected() {
    let (dir, error) = broken("actions/PayInvoice.json", |action| {
        action["operation"]["params"][0]["source"] = json!("invoice_id");
    });
    assert_names(
        &error,
        dir.path(),
        "actions/PayInvoice.json",
        "operation.params[0].source",
        "no placeholder {invoice_id} in \"/v1/invoices/{invoice}/pay\"",
    );
}

#[test]
fn duplicate_field_names_are_rejected() {
    let (dir, error) = broken("entities/Customer.json", |entity| {
        let index = field_index(entity, "Email");
        entity["fields"][index]["name"] = json!("Name");
    });
    let text = error.to_string();
    assert!(
        text.starts_with(&format!(
            "{}/entities/Customer.json: fields[",
            dir.path().display()
        )),
        "{text}"
    );
    assert!(text.ends_with("].name: duplicate field \"Name\""), "{text}");
}

#[test]
fn an_item_path_that_is_not_below_the_collection_is_rejected() {
    let (dir, error) = broken("entities/Invoice.json", |entity| {
        entity["item_path"] = json!("/v1/quotes/{invoice}");
    });
    assert_names(
        &error,
        dir.path(),
        "entities/Invoice.json",
        "item_path",
        "\"/v1/quotes/{invoice}\" is not the collection path plus one id",
    );
}

#[test]
fn an_action_on_an_unknown_entity_is_rejected() {
    let (dir, error) = broken("actions/VoidInvoice.json", |action| {
        action["entity"] = json!("Invoise");
    });
    assert_names(
        &error,
        dir.path(),
        "actions/VoidInvoice.json",
        "entity",
        "no entity type \"Invoise\"",
    );
}

#[test]
fn a_bad_data_type_names_the_json_path() {
    let (dir, error) = broken("entities/Customer.json", |entity| {
        entity["fields"][1]["data_type"] = json!("TEXT");
    });
    let text = error.to_string();
    assert!(
        text.starts_with(&format!(
            "{}/entities/Customer.json: fields[1].data_type: unknown variant `TEXT`",
            dir.path().display()
        )),
        "{text}"
    );
}

#[test]
fn a_file_named_unlike_its_entity_is_rejected() {
    let (dir, error) = broken("entities/Coupon.json", |entity| {
        entity["name"] = json!("Voucher");
    });
    assert_names(
        &error,
        dir.path(),
        "entities/Coupon.json",
        "name",
        "\"Voucher\" does not match the file name",
    );
}
