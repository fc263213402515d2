//! The pages Stripe hosts for an object, served by the sandbox under `/hosted/`: an invoice's
//! page (`hosted_invoice_url`) and PDF (`invoice_pdf`), a charge's receipt (`receipt_url`) and the
//! 3-D Secure page a `redirect_to_url` next action points at. Read-only and unauthenticated, as
//! Stripe's are (their URLs are unguessable ids); they show what the sandbox holds.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Map, Value};

use super::server::{Sandbox, lock};

pub(crate) fn routes() -> Router<Arc<Sandbox>> {
    Router::new()
        .route("/hosted/invoices/{id}", get(invoice_page))
        .route("/hosted/invoices/{id}/pdf", get(invoice_pdf))
        .route("/hosted/receipts/{id}", get(receipt_page))
        .route("/hosted/authenticate/{id}", get(authentication_page))
}

fn find(sandbox: &Sandbox, object_type: &str, id: &str) -> Option<Map<String, Value>> {
    lock(&sandbox.store).get(object_type, id).cloned()
}

fn text(object: &Map<String, Value>, key: &str) -> String {
    match object.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    }
}

/// Escapes text for HTML.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn html(title: &str, rows: &[(&str, String)]) -> Response {
    let mut body = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{0}</title></head><body><h1>{0}</h1><p>Stripe test-mode sandbox: no real money moves.</p><table>",
        escape(title)
    );
    for (label, value) in rows {
        body.push_str(&format!(
            "<tr><th>{}</th><td>{}</td></tr>",
            escape(label),
            escape(value)
        ));
    }
    body.push_str("</table></body></html>");
    let mut response = body.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    response
}

fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "No such page.").into_response()
}

async fn invoice_page(State(sandbox): State<Arc<Sandbox>>, Path(id): Path<String>) -> Response {
    let Some(invoice) = find(&sandbox, "invoice", &id) else {
        return not_found();
    };
    html(
        &format!("Invoice {}", text(&invoice, "number")),
        &[
            ("Status", text(&invoice, "status")),
            ("Amount due", text(&invoice, "amount_due")),
            ("Amount paid", text(&invoice, "amount_paid")),
            ("Currency", text(&invoice, "currency")),
            ("Customer", text(&invoice, "customer")),
        ],
    )
}

/// A one-page PDF naming the invoice, its number, status and amount due.
async fn invoice_pdf(State(sandbox): State<Arc<Sandbox>>, Path(id): Path<String>) -> Response {
    let Some(invoice) = find(&sandbox, "invoice", &id) else {
        return not_found();
    };
    let line = format!(
        "Invoice {} ({}) - {}: {} {} due",
        text(&invoice, "number"),
        id,
        text(&invoice, "status"),
        text(&invoice, "amount_due"),
        text(&invoice, "currency")
    );
    let mut response = minimal_pdf(&line).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/pdf"),
    );
    response
}

/// A valid single-page PDF showing one line of ASCII text.
fn minimal_pdf(line: &str) -> Vec<u8> {
    let safe: String = line
        .chars()
        .filter(|c| c.is_ascii() && !matches!(c, '(' | ')' | '\\'))
        .collect();
    let content = format!("BT /F1 12 Tf 50 750 Td ({safe}) Tj ET");
    let objects = [
        "<< /Type /Catalog /Pages 2 0 R >>".to_owned(),
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_owned(),
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>".to_owned(),
        format!("<< /Length {} >>\nstream\n{content}\nendstream", content.len()),
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>".to_owned(),
    ];
    let mut pdf = b"%PDF-1.4\n".to_vec();
    let mut offsets = Vec::new();
    for (index, object) in objects.iter().enumerate() {
        offsets.push(pdf.len());
        pdf.extend_from_slice(format!("{} 0 obj\n{object}\nendobj\n", index + 1).as_bytes());
    }
    let xref = pdf.len();
    pdf.extend_from_slice(
        format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).as_bytes(),
    );
    for offset in offsets {
        pdf.extend_from_slice(format!("{offset:010} 00000 n \n").as_bytes());
    }
    pdf.extend_from_slice(
        format!(
            "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
            objects.len() + 1
        )
        .as_bytes(),
    );
    pdf
}

async fn receipt_page(State(sandbox): State<Arc<Sandbox>>, Path(id): Path<String>) -> Response {
    let Some(charge) = find(&sandbox, "charge", &id) else {
        return not_found();
    };
    html(
        &format!("Receipt for {id}"),
        &[
            ("Amount", text(&charge, "amount")),
            ("Currency", text(&charge, "currency")),
            ("Status", text(&charge, "status")),
            ("Refunded", text(&charge, "amount_refunded")),
        ],
    )
}

/// The 3-D Secure page: in the sandbox, authentication completes when the intent is confirmed
/// again, which is what a caller does after the customer returns to `return_url`.
async fn authentication_page(
    State(sandbox): State<Arc<Sandbox>>,
    Path(id): Path<String>,
) -> Response {
    let intent =
        find(&sandbox, "payment_intent", &id).or_else(|| find(&sandbox, "setup_intent", &id));
    let Some(intent) = intent else {
        return not_found();
    };
    html(
        "3-D Secure test authentication",
        &[
            ("Intent", id.clone()),
            ("Status", text(&intent, "status")),
            (
                "To complete",
                "Confirm the intent again: the sandbox treats that as the customer authenticating."
                    .to_owned(),
            ),
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pdf_has_a_header_an_xref_table_and_the_text() {
        let pdf = minimal_pdf("Invoice ABC-0001 (in_1) - open: 700 usd due");
        let text = String::from_utf8(pdf).unwrap();
        assert!(text.starts_with("%PDF-1.4"));
        assert!(text.contains("(Invoice ABC-0001 in_1 - open: 700 usd due) Tj"));
        assert!(text.trim_end().ends_with("%%EOF"));
        let xref: usize = text
            .split("startxref\n")
            .nth(1)
            .and_then(|rest| rest.lines().next())
            .and_then(|n| n.parse().ok())
            .unwrap();
        assert!(text[xref..].starts_with("xref"));
    }
}
