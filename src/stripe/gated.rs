//! Parameters Stripe accepts only on accounts with a gated feature that the pinned API version
//! (2023-08-16) does not describe. Callers who know them from Stripe's docs or from Google's
//! connector get a field violation saying why they are not sent, not a bare "unknown parameter".
//! Pure, no I/O.

/// `(operationId, Stripe name, PascalCase name, why it is not sent)`.
const WITHHELD: &[(&str, &str, &str, &str)] = &[(
    "PostPaymentIntentsIntentCapture",
    "final_capture",
    "FinalCapture",
    "is Stripe's multicapture flag, a gated feature that API version 2023-08-16 does not \
     describe; the runtime does not send it (leave it out: a capture is final without it)",
)];

/// Why `key` (Stripe's or the PascalCase name) is withheld from `operation_id`, when it is.
pub fn withheld(operation_id: &str, key: &str) -> Option<&'static str> {
    WITHHELD
        .iter()
        .find(|(op, source, name, _)| *op == operation_id && (key == *source || key == *name))
        .map(|(_, _, _, reason)| *reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn final_capture_is_withheld_from_capture_by_either_name() {
        assert!(withheld("PostPaymentIntentsIntentCapture", "FinalCapture").is_some());
        assert!(withheld("PostPaymentIntentsIntentCapture", "final_capture").is_some());
        assert!(withheld("PostPaymentIntentsIntentConfirm", "FinalCapture").is_none());
    }
}
