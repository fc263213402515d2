//! The nine actions of Google's Stripe connector exist with exactly its names, parameter names
//! and result shapes.

use connector_runtime::spec::model::{ActionSpec, ParamLocation, ResultShape, SelectedField};
use connector_runtime::spec::stripe;

fn action(name: &str) -> &'static ActionSpec {
    stripe()
        .unwrap()
        .action(name)
        .unwrap_or_else(|| panic!("action {name} missing"))
}

/// `name` has every parameter in `params`, the first being its only, required path parameter.
fn assert_params(name: &str, params: &[&str]) {
    let action = action(name);
    for param in params {
        assert!(
            action.param(param).is_some(),
            "{name} lacks parameter {param}"
        );
    }
    let path: Vec<&str> = action
        .operation
        .params
        .iter()
        .filter(|param| param.location == ParamLocation::Path)
        .map(|param| param.name.as_str())
        .collect();
    assert_eq!(path, [params[0]], "{name} path parameters");
    assert!(action.operation.params[0].required);
}

/// `name` has exactly `params` (in any order).
fn assert_exact_params(name: &str, params: &[&str]) {
    assert_params(name, params);
    let mut have: Vec<&str> = action(name)
        .operation
        .params
        .iter()
        .map(|p| p.name.as_str())
        .collect();
    let mut want = params.to_vec();
    have.sort_unstable();
    want.sort_unstable();
    assert_eq!(have, want, "{name} parameters");
}

#[test]
fn confirm_payment_intent_takes_the_google_parameters_and_flattens() {
    assert_params(
        "ConfirmPaymentIntent",
        &[
            "PaymentIntentId",
            "ReturnUrl",
            "PaymentMethod",
            "ReceiptEmail",
            "SetupFutureUsage",
            "Shipping",
            "CaptureMethod",
            "ErrorOnRequiresAction",
            "Mandate",
            "MandateData",
            "OffSession",
            "PaymentMethodData",
            "PaymentMethodOptions",
            "PaymentMethodTypes",
        ],
    );
    let confirm = action("ConfirmPaymentIntent");
    assert_eq!(
        confirm.operation.path,
        "/v1/payment_intents/{intent}/confirm"
    );
    assert_eq!(confirm.param("PaymentIntentId").unwrap().source, "intent");
    assert_eq!(confirm.param("ReturnUrl").unwrap().source, "return_url");
    assert_eq!(confirm.result, ResultShape::Flatten);
    assert!(
        confirm
            .result_fields
            .iter()
            .any(|field| field.name == "Status")
    );
}

/// Google's list also has FinalCapture, Stripe's gated multicapture flag, which API version
/// 2023-08-16 does not describe: the runtime refuses it with a field violation instead.
#[test]
fn capture_payment_intent_takes_exactly_the_google_parameters() {
    assert_exact_params(
        "CapturePaymentIntent",
        &[
            "PaymentIntentId",
            "AmountToCapture",
            "Metadata",
            "ApplicationFeeAmount",
            "StatementDescriptor",
            "StatementDescriptorSuffix",
            "TransferData",
        ],
    );
    assert_eq!(action("CapturePaymentIntent").result, ResultShape::Flatten);
}

#[test]
fn cancel_payment_intent_takes_a_cancellation_reason() {
    assert_exact_params(
        "CancelPaymentIntent",
        &["PaymentIntentId", "CancellationReason"],
    );
    assert_eq!(action("CancelPaymentIntent").result, ResultShape::Flatten);
}

#[test]
fn attach_payment_method_maps_customer_id_to_the_customer_body_parameter() {
    assert_exact_params(
        "AttachPaymentMethodToCustomer",
        &["PaymentMethodId", "CustomerId"],
    );
    let attach = action("AttachPaymentMethodToCustomer");
    let customer = attach.param("CustomerId").unwrap();
    assert_eq!(
        (
            customer.source.as_str(),
            customer.location,
            customer.required
        ),
        ("customer", ParamLocation::Body, true)
    );
    assert_eq!(
        attach.operation.path,
        "/v1/payment_methods/{payment_method}/attach"
    );
    assert_eq!(attach.result, ResultShape::SuccessOnly);
}

#[test]
fn detach_payment_method_takes_only_the_payment_method() {
    assert_exact_params("DetachPaymentMethodFromCustomer", &["PaymentMethodId"]);
    assert_eq!(
        action("DetachPaymentMethodFromCustomer").result,
        ResultShape::SuccessOnly
    );
}

#[test]
fn finalize_invoice_takes_auto_advance_and_flattens() {
    assert_exact_params("FinalizeInvoice", &["InvoiceId", "AutoAdvance"]);
    assert_eq!(action("FinalizeInvoice").result, ResultShape::Flatten);
}

#[test]
fn quote_actions_take_the_quote_id_and_answer_as_google_does() {
    for name in ["FinalizeQuote", "AcceptQuote", "CancelQuote"] {
        assert_params(name, &["QuoteId"]);
        assert_eq!(action(name).entity.as_deref(), Some("Quote"));
    }
    assert_exact_params("AcceptQuote", &["QuoteId"]);
    assert_exact_params("CancelQuote", &["QuoteId"]);
    assert_eq!(action("FinalizeQuote").result, ResultShape::SuccessOnly);
    assert_eq!(action("CancelQuote").result, ResultShape::SuccessOnly);
    assert_eq!(
        action("AcceptQuote").result,
        ResultShape::Select {
            fields: vec![SelectedField {
                name: "InvoiceId".into(),
                source: "invoice".into()
            }]
        }
    );
}
