//! Naming rules that turn Stripe's snake_case names into the PascalCase names callers see.
//!
//! Pure string functions, no I/O. The generator applies them wherever the overlay names nothing.

/// `return_url` → `ReturnUrl`, `checkout.session` → `CheckoutSession`, `3d_secure` → `3dSecure`.
pub fn pascal_case(snake: &str) -> String {
    snake
        .split(['_', '.', '-', ' '])
        .filter(|word| !word.is_empty())
        .map(capitalize)
        .collect()
}

fn capitalize(word: &str) -> String {
    let mut chars = word.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// Singular of an English collection segment as Stripe spells them: `tax_ids` → `tax_id`,
/// `capabilities` → `capability`, `line_items` → `line_item`, `people` → `person`.
pub fn singular(plural: &str) -> String {
    if let Some(stem) = plural.strip_suffix("people") {
        return format!("{stem}person");
    }
    if let Some(stem) = plural.strip_suffix("ies") {
        return format!("{stem}y");
    }
    if plural.ends_with("ss") {
        return plural.to_owned();
    }
    match plural.strip_suffix('s') {
        Some(stem) => stem.to_owned(),
        None => plural.to_owned(),
    }
}

/// Human words of a PascalCase name, first capitalised: `ConfirmPaymentIntent` → `Confirm payment intent`.
pub fn display_name(pascal: &str) -> String {
    let mut out = String::with_capacity(pascal.len() + 4);
    for (index, ch) in pascal.chars().enumerate() {
        if ch.is_uppercase() && index > 0 {
            out.push(' ');
            out.extend(ch.to_lowercase());
        } else {
            out.push(ch);
        }
    }
    out
}

/// Whether `name` is a PascalCase identifier: an ASCII capital, then ASCII letters and digits.
pub fn is_pascal_case(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(first) if first.is_ascii_uppercase())
        && chars.all(|ch| ch.is_ascii_alphanumeric())
}

/// The `{placeholder}` names of a path template, in order.
pub fn placeholders(path: &str) -> Vec<&str> {
    path.split('/')
        .filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'))
        .collect()
}

/// A path template with its placeholder names erased, for comparing paths that Stripe spells with
/// different placeholder names (`/v1/transfers/{id}/reversals` vs `/v1/transfers/{transfer}/reversals/{id}`).
pub fn path_shape(path: &str) -> String {
    path.split('/')
        .map(|segment| {
            if segment.starts_with('{') {
                "{}"
            } else {
                segment
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pascal_case_joins_snake_and_dotted_words() {
        assert_eq!(pascal_case("return_url"), "ReturnUrl");
        assert_eq!(pascal_case("checkout.session"), "CheckoutSession");
        assert_eq!(pascal_case("id"), "Id");
        assert_eq!(pascal_case("three_d_secure"), "ThreeDSecure");
    }

    #[test]
    fn singular_handles_stripe_collection_segments() {
        assert_eq!(singular("tax_ids"), "tax_id");
        assert_eq!(singular("capabilities"), "capability");
        assert_eq!(singular("usage_record_summaries"), "usage_record_summary");
        assert_eq!(singular("people"), "person");
        assert_eq!(singular("line_items"), "line_item");
        assert_eq!(singular("address"), "address");
    }

    #[test]
    fn display_name_splits_pascal_words() {
        assert_eq!(
            display_name("ConfirmPaymentIntent"),
            "Confirm payment intent"
        );
        assert_eq!(display_name("Pay"), "Pay");
    }

    #[test]
    fn pascal_case_check_rejects_snake_and_lower_names() {
        assert!(is_pascal_case("PaymentIntentId"));
        assert!(!is_pascal_case("paymentIntent"));
        assert!(!is_pascal_case("Payment_Intent"));
        assert!(!is_pascal_case(""));
    }

    #[test]
    fn path_helpers_read_and_erase_placeholders() {
        assert_eq!(
            placeholders("/v1/transfers/{transfer}/reversals/{id}"),
            ["transfer", "id"]
        );
        assert_eq!(
            path_shape("/v1/transfers/{id}/reversals"),
            "/v1/transfers/{}/reversals"
        );
    }
}
