//! The seed's flows end to end: gRPC → runtime → engine → real HTTP → the built-in sandbox.
//! Payloads are the ones in Google's Stripe connector documentation; outputs keep its shapes.

mod common;

use common::*;
use connector_runtime::api::convert::{from_proto_struct, to_proto_struct};
use connector_runtime::api::pb;
use serde_json::{Map, Value, json};
use tonic::Code;
use tonic_types::StatusExt;

const C: &str = "stripe-sandbox";

async fn sandbox_service() -> Service {
    let home = Box::leak(Box::new(Home::new()));
    start(home.settings(false)).await
}

fn text(row: &Map<String, Value>, key: &str) -> String {
    row.get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

fn id_of(name: &str) -> String {
    name.rsplit('/').next().unwrap().to_owned()
}

async fn payment_intent(service: &Service, fields: Value) -> String {
    let (name, fields) = service.create(C, "PaymentIntent", fields).await.unwrap();
    assert_eq!(fields["Id"].as_str().unwrap(), id_of(&name));
    id_of(&name)
}

#[tokio::test]
async fn every_entity_type_and_action_of_the_spec_is_served() {
    let service = sandbox_service().await;
    let spec = connector_runtime::spec::stripe().unwrap();
    let mut names = Vec::new();
    let mut token = String::new();
    loop {
        let page = service
            .entities()
            .list_entity_types(pb::ListEntityTypesRequest {
                parent: format!("connections/{C}"),
                page_size: 30,
                page_token: token,
                view: 0,
            })
            .await
            .unwrap()
            .into_inner();
        names.extend(page.types.into_iter().map(|t| id_of(&t.name)));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(names.len(), spec.entities.len());
    for required in [
        "Customer",
        "PaymentIntent",
        "PaymentMethod",
        "Invoice",
        "Quote",
        "Price",
        "Product",
        "Subscription",
        "Charge",
        "Refund",
    ] {
        assert!(names.iter().any(|n| n == required), "{required} missing");
    }
    let actions = service
        .actions()
        .list_actions(pb::ListActionsRequest {
            parent: format!("connections/{C}"),
            page_size: 1000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(actions.actions.len(), spec.actions.len());
    let confirm = service
        .actions()
        .get_action(pb::GetActionRequest {
            name: format!("connections/{C}/actions/ConfirmPaymentIntent"),
        })
        .await
        .unwrap()
        .into_inner();
    let params: Vec<&str> = confirm
        .input_parameters
        .iter()
        .map(|p| p.name.as_str())
        .collect();
    assert!(
        params.contains(&"PaymentIntentId") && params.contains(&"ReturnUrl"),
        "{params:?}"
    );
    assert!(
        confirm
            .input_parameters
            .iter()
            .any(|p| p.name == "PaymentIntentId" && p.required)
    );
    let customer = service
        .entities()
        .get_entity_type(pb::GetEntityTypeRequest {
            name: format!("connections/{C}/entityTypes/Customer"),
        })
        .await
        .unwrap()
        .into_inner();
    let id = customer
        .fields
        .iter()
        .find(|f| f.name == "Id")
        .expect("Id field");
    assert!(id.key);
    assert!(
        customer
            .fields
            .iter()
            .any(|f| f.name == "Email" && f.data_type == pb::DataType::Varchar as i32)
    );
    service.shutdown().await;
}

#[tokio::test]
async fn seed_entity_examples_list_get_create_update_and_delete() {
    let service = sandbox_service().await;
    let (name, created) = service
        .create(
            C,
            "Customer",
            json!({"Email": "jenny@example.com", "Name": "Jenny"}),
        )
        .await
        .unwrap();
    let id = id_of(&name);
    assert!(id.starts_with("cus_"), "{id}");
    assert_eq!(created["Email"], json!("jenny@example.com"));

    // List, filtered with the designer's syntax (single quotes).
    let listed = service
        .entities()
        .list_entities(pb::ListEntitiesRequest {
            parent: format!("connections/{C}/entityTypes/Customer"),
            conditions: "Email = 'jenny@example.com'".to_owned(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.entities.len(), 1);
    assert_eq!(listed.entities[0].name, name);

    let got = service.get(C, "Customer", &id).await.unwrap();
    assert_eq!(got["Name"], json!("Jenny"));

    // Update a customer's Name: {"Name": "John"}; the result carries the Id.
    let updated = service
        .entities()
        .update_entity(pb::UpdateEntityRequest {
            entity: Some(pb::Entity {
                name: name.clone(),
                fields: Some(to_proto_struct(
                    json!({"Name": "John"}).as_object().unwrap(),
                )),
                metadata: None,
            }),
            request_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let fields = from_proto_struct(updated.fields.as_ref().unwrap());
    assert_eq!(fields["Id"], json!(id));
    assert_eq!(fields["Name"], json!("John"));

    // Create a PaymentIntent with the seed's payload: Amount as 1500.0.
    let pi = payment_intent(
        &service,
        json!({"PaymentMethod": "pm_card_visa", "Currency": "usd", "Amount": 1500.0}),
    )
    .await;
    assert!(pi.starts_with("pi_"));
    let pi_fields = service.get(C, "PaymentIntent", &pi).await.unwrap();
    assert_eq!(pi_fields["Amount"], json!(1500));

    service
        .entities()
        .delete_entity(pb::DeleteEntityRequest {
            name: name.clone(),
            request_id: String::new(),
        })
        .await
        .unwrap();
    let gone = service.get(C, "Customer", &id).await.unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);
    assert_eq!(reason(&gone), "STRIPE_RESOURCE_MISSING");
    service.shutdown().await;
}

#[tokio::test]
async fn confirm_capture_and_cancel_payment_intents_give_the_seed_shapes() {
    let service = sandbox_service().await;
    let pi = payment_intent(
        &service,
        json!({"Amount": 33000, "Currency": "usd", "PaymentMethod": "pm_card_visa"}),
    )
    .await;
    let rows = service
        .execute(
            C,
            "ConfirmPaymentIntent",
            json!({"ReturnUrl": "http://google.com/", "PaymentIntentId": pi}),
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    let row = &rows[0];
    assert_eq!(text(row, "Success"), "true");
    assert_eq!(text(row, "id"), pi);
    assert_eq!(text(row, "object"), "payment_intent");
    assert_eq!(text(row, "amount"), "33000");
    assert_eq!(text(row, "amount_received"), "33000");
    assert_eq!(text(row, "status"), "succeeded");
    assert_eq!(text(row, "livemode"), "false");
    assert!(text(row, "latest_charge").starts_with("ch_"));
    assert!(text(row, "client_secret").starts_with(&format!("{pi}_secret_")));
    assert_eq!(row["canceled_at"], Value::Null);
    for key in [
        "cancellation_reason",
        "invoice",
        "last_payment_error",
        "next_action",
        "on_behalf_of",
        "review",
        "transfer_data",
        "transfer_group",
    ] {
        assert!(row.contains_key(key), "{key} missing from {row:?}");
    }
    let charge = service
        .get(C, "Charge", &text(row, "latest_charge"))
        .await
        .unwrap();
    assert_eq!(charge["Amount"], json!(33000));

    // Manual capture: confirm → requires_capture → capture.
    let manual = payment_intent(&service, json!({"Amount": 33000, "Currency": "usd", "PaymentMethod": "pm_card_visa", "CaptureMethod": "manual", "Confirm": true, "PaymentMethodTypes": ["card"]})).await;
    assert_eq!(
        service.get(C, "PaymentIntent", &manual).await.unwrap()["Status"],
        json!("requires_capture")
    );
    // Google's FinalCapture is Stripe's gated multicapture flag: refused, saying why.
    let gated = service
        .execute(
            C,
            "CapturePaymentIntent",
            json!({"PaymentIntentId": manual, "FinalCapture": true}),
        )
        .await
        .unwrap_err();
    assert_eq!(gated.code(), Code::InvalidArgument);
    let violations = gated
        .get_error_details()
        .bad_request()
        .unwrap()
        .field_violations
        .clone();
    assert_eq!(violations[0].field, "FinalCapture");
    assert!(
        violations[0].description.contains("multicapture"),
        "{violations:?}"
    );
    let rows = service
        .execute(
            C,
            "CapturePaymentIntent",
            json!({"PaymentIntentId": manual}),
        )
        .await
        .unwrap();
    assert_eq!(text(&rows[0], "status"), "succeeded");
    assert_eq!(text(&rows[0], "capture_method"), "manual");
    assert_eq!(text(&rows[0], "amount_received"), "33000");

    // Cancel from requires_capture.
    let to_cancel = payment_intent(&service, json!({"Amount": 33000, "Currency": "usd", "PaymentMethod": "pm_card_visa", "CaptureMethod": "manual", "Confirm": true, "PaymentMethodTypes": ["card"]})).await;
    let rows = service
        .execute(
            C,
            "CancelPaymentIntent",
            json!({"PaymentIntentId": to_cancel}),
        )
        .await
        .unwrap();
    assert_eq!(text(&rows[0], "status"), "canceled");
    assert!(!text(&rows[0], "canceled_at").is_empty());
    assert_eq!(text(&rows[0], "amount_received"), "0");
    // A canceled intent cannot be canceled again: Stripe's state error, not a bad parameter.
    let again = service
        .execute(
            C,
            "CancelPaymentIntent",
            json!({"PaymentIntentId": to_cancel}),
        )
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::FailedPrecondition, "{again:?}");
    service.shutdown().await;
}

#[tokio::test]
async fn attach_and_detach_payment_methods_return_success_only() {
    let service = sandbox_service().await;
    let (customer, _) = service
        .create(C, "Customer", json!({"Email": "pm@example.com"}))
        .await
        .unwrap();
    let (pm, _) = service
        .create(C, "PaymentMethod", json!({"Type": "card", "Card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2034, "cvc": "123"}}))
        .await
        .unwrap();
    let rows = service
        .execute(
            C,
            "AttachPaymentMethodToCustomer",
            json!({"PaymentMethodId": id_of(&pm), "CustomerId": id_of(&customer)}),
        )
        .await
        .unwrap();
    assert_eq!(Value::Object(rows[0].clone()), json!({"Success": "true"}));
    assert_eq!(
        service.get(C, "PaymentMethod", &id_of(&pm)).await.unwrap()["Customer"],
        json!(id_of(&customer))
    );
    let rows = service
        .execute(
            C,
            "DetachPaymentMethodFromCustomer",
            json!({"PaymentMethodId": id_of(&pm)}),
        )
        .await
        .unwrap();
    assert_eq!(Value::Object(rows[0].clone()), json!({"Success": "true"}));
    // Once detached it cannot be attached again.
    let error = service
        .execute(
            C,
            "AttachPaymentMethodToCustomer",
            json!({"PaymentMethodId": id_of(&pm), "CustomerId": id_of(&customer)}),
        )
        .await
        .unwrap_err();
    assert_ne!(error.code(), Code::Ok);
    service.shutdown().await;
}

#[tokio::test]
async fn finalize_invoice_and_the_quote_lifecycle() {
    let service = sandbox_service().await;
    let (customer, _) = service
        .create(C, "Customer", json!({"Email": "billing@example.com"}))
        .await
        .unwrap();
    let customer = id_of(&customer);
    // Since 2022-08-01 pending items stay out of new invoices unless attached, so attach the item.
    let (invoice, _) = service
        .create(C, "Invoice", json!({"Customer": customer}))
        .await
        .unwrap();
    let item = json!({"Customer": customer, "Invoice": id_of(&invoice), "Amount": 1000, "Currency": "usd"});
    service.create(C, "InvoiceItem", item).await.unwrap();
    let rows = service
        .execute(C, "FinalizeInvoice", json!({"InvoiceId": id_of(&invoice)}))
        .await
        .unwrap();
    assert_eq!(text(&rows[0], "Success"), "true");
    assert_eq!(text(&rows[0], "id"), id_of(&invoice));
    assert_eq!(text(&rows[0], "object"), "invoice");
    assert_eq!(text(&rows[0], "status"), "open");
    assert_eq!(text(&rows[0], "amount_due"), "1000");
    assert!(
        !text(&rows[0], "number").is_empty(),
        "an open invoice has a number"
    );

    let (product, _) = service
        .create(C, "Product", json!({"Name": "Consulting"}))
        .await
        .unwrap();
    let (price, _) = service
        .create(
            C,
            "Price",
            json!({"Product": id_of(&product), "UnitAmount": 5000, "Currency": "usd"}),
        )
        .await
        .unwrap();
    let line_items = json!([{"price": id_of(&price), "quantity": 2}]);
    let (quote, _) = service
        .create(
            C,
            "Quote",
            json!({"Customer": customer, "LineItems": line_items}),
        )
        .await
        .unwrap();
    let rows = service
        .execute(C, "FinalizeQuote", json!({"QuoteId": id_of(&quote)}))
        .await
        .unwrap();
    assert_eq!(Value::Object(rows[0].clone()), json!({"Success": "true"}));
    let rows = service
        .execute(C, "AcceptQuote", json!({"QuoteId": id_of(&quote)}))
        .await
        .unwrap();
    assert_eq!(text(&rows[0], "Success"), "true");
    assert!(text(&rows[0], "InvoiceId").starts_with("in_"), "{rows:?}");
    assert_eq!(
        rows[0].len(),
        2,
        "AcceptQuote returns InvoiceId and Success only"
    );

    let (other, _) = service
        .create(
            C,
            "Quote",
            json!({"Customer": customer, "LineItems": line_items}),
        )
        .await
        .unwrap();
    let rows = service
        .execute(C, "CancelQuote", json!({"QuoteId": id_of(&other)}))
        .await
        .unwrap();
    assert_eq!(Value::Object(rows[0].clone()), json!({"Success": "true"}));
    assert_eq!(
        service.get(C, "Quote", &id_of(&other)).await.unwrap()["Status"],
        json!("canceled")
    );
    service.shutdown().await;
}

#[tokio::test]
async fn declines_bad_inputs_and_unknown_ids_are_told_apart() {
    let service = sandbox_service().await;
    let (pm, _) = service
        .create(C, "PaymentMethod", json!({"Type": "card", "Card": {"number": "4000000000009995", "exp_month": 12, "exp_year": 2034, "cvc": "123"}}))
        .await
        .unwrap();
    let pi = payment_intent(
        &service,
        // Card only: confirmed on the server without a return URL (Stripe demands one when
        // automatic payment methods are enabled, the default since API version 2023-08-16).
        json!({"Amount": 2000, "Currency": "usd", "PaymentMethod": id_of(&pm), "PaymentMethodTypes": ["card"]}),
    )
    .await;
    let declined = service
        .execute(C, "ConfirmPaymentIntent", json!({"PaymentIntentId": pi}))
        .await
        .unwrap_err();
    assert_eq!(declined.code(), Code::FailedPrecondition);
    assert_eq!(reason(&declined), "STRIPE_CARD_ERROR");
    let details = declined.get_error_details();
    let metadata = &details.error_info().unwrap().metadata;
    assert_eq!(
        metadata.get("stripe_decline_code").map(String::as_str),
        Some("insufficient_funds")
    );
    assert_eq!(metadata.get("http_status").map(String::as_str), Some("402"));
    assert!(
        metadata
            .get("stripe_request_id")
            .is_some_and(|r| r.starts_with("req_"))
    );
    assert_eq!(
        service.get(C, "PaymentIntent", &pi).await.unwrap()["Status"],
        json!("requires_payment_method")
    );

    // Authentication required, with error_on_requires_action, as in Stripe's US/Canada-only guide.
    let auth = payment_intent(&service, json!({"Amount": 1099, "Currency": "usd", "PaymentMethod": "pm_card_authenticationRequired", "PaymentMethodTypes": ["card"]})).await;
    let error = service
        .execute(
            C,
            "ConfirmPaymentIntent",
            json!({"PaymentIntentId": auth, "ErrorOnRequiresAction": true}),
        )
        .await
        .unwrap_err();
    assert_eq!(reason(&error), "STRIPE_CARD_ERROR");
    let details = error.get_error_details();
    let metadata = &details.error_info().unwrap().metadata;
    assert_eq!(
        metadata.get("stripe_code").map(String::as_str),
        Some("authentication_required")
    );
    assert_eq!(
        metadata.get("payment_intent").map(String::as_str),
        Some(auth.as_str())
    );

    // Unknown and mistyped inputs never reach Stripe.
    let bad = service
        .execute(
            C,
            "ConfirmPaymentIntent",
            json!({"PaymentIntentId": pi, "RetrunUrl": "x", "OffSession": "yes"}),
        )
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert_eq!(reason(&bad), "INVALID_ARGUMENT");
    let fields = violation_fields(&bad);
    assert!(fields.contains(&"RetrunUrl".to_owned()), "{fields:?}");
    let missing = service
        .execute(C, "CapturePaymentIntent", json!({}))
        .await
        .unwrap_err();
    assert_eq!(
        violation_fields(&missing),
        vec!["PaymentIntentId".to_owned()]
    );

    let unknown = service
        .get(C, "Customer", "cus_doesnotexist")
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
    let no_type = service.get(C, "Custom", "cus_1").await.unwrap_err();
    assert_eq!(reason(&no_type), "ENTITY_TYPE_NOT_FOUND");
    service.shutdown().await;
}

#[tokio::test]
async fn native_results_and_request_ids() {
    let service = sandbox_service().await;
    let pi = payment_intent(
        &service,
        json!({"Amount": 500, "Currency": "usd", "PaymentMethod": "pm_card_visa", "PaymentMethodTypes": ["card"]}),
    )
    .await;
    let response = service
        .actions()
        .execute_action(pb::ExecuteActionRequest {
            name: format!("connections/{C}/actions/ConfirmPaymentIntent"),
            parameters: Some(to_proto_struct(
                json!({"PaymentIntentId": pi}).as_object().unwrap(),
            )),
            request_id: String::new(),
            result_format: pb::ResultFormat::Native as i32,
        })
        .await
        .unwrap()
        .into_inner();
    let object = from_proto_struct(&response.results[0]);
    assert_eq!(object["amount"], json!(500), "native JSON keeps numbers");
    assert!(object.get("Success").is_none());

    // The same request_id twice creates one customer.
    let request = |rid: &str| pb::CreateEntityRequest {
        parent: format!("connections/{C}/entityTypes/Customer"),
        entity: Some(pb::Entity {
            fields: Some(to_proto_struct(
                json!({"Email": "once@example.com"}).as_object().unwrap(),
            )),
            ..Default::default()
        }),
        request_id: rid.to_owned(),
    };
    let first = service
        .entities()
        .create_entity(request("order-42"))
        .await
        .unwrap()
        .into_inner();
    let second = service
        .entities()
        .create_entity(request("order-42"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.name, second.name);
    let listed = service
        .entities()
        .list_entities(pb::ListEntitiesRequest {
            parent: format!("connections/{C}/entityTypes/Customer"),
            conditions: "Email = 'once@example.com'".to_owned(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.entities.len(), 1);
    service.shutdown().await;
}
