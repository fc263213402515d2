//! What Stripe's verbs do to an account, for agent tool hints and guard rails: which actions move
//! money or cannot be undone (attaching, verifying and refreshing do neither; confirm, capture,
//! refund, pay, void, finalize, cancel, … do). Pure data about Stripe, served through its dialect;
//! the tool catalog stays generic.

pub use crate::upstream::dialect::ActionEffect;

/// Verbs (the leading word of an action name) whose effect is reversible and moves no money.
/// Every other verb counts as destructive, so a verb Stripe adds later is guarded by default.
const REVERSIBLE_VERBS: &[&str] = &[
    "Attach",
    "Validate",
    "Refresh",
    "Verify",
    "SetReaderDisplay",
];

/// The effect of the action named `action` (`ConfirmPaymentIntent`, `AttachPaymentMethodToCustomer`).
pub fn action_effect(action: &str) -> ActionEffect {
    if REVERSIBLE_VERBS.iter().any(|verb| {
        action
            .strip_prefix(verb)
            .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_uppercase()))
    }) {
        ActionEffect::Reversible
    } else {
        ActionEffect::Destructive
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_moving_and_final_verbs_are_destructive() {
        for action in [
            "ConfirmPaymentIntent",
            "CapturePaymentIntent",
            "RefundCharge",
            "PayInvoice",
            "VoidInvoice",
            "FinalizeInvoice",
            "CancelSubscriptionSchedule",
            "ReversePayout",
            "DeleteAppsSecret",
            "SomeFutureVerb",
        ] {
            assert_eq!(action_effect(action), ActionEffect::Destructive, "{action}");
        }
    }

    #[test]
    fn attach_verify_and_refresh_are_reversible() {
        for action in [
            "AttachPaymentMethodToCustomer",
            "VerifyMicrodepositsPaymentIntent",
            "RefreshFinancialConnectionsAccount",
            "ValidatePaymentMethodDomain",
            "SetReaderDisplayTerminalReader",
        ] {
            assert_eq!(action_effect(action), ActionEffect::Reversible, "{action}");
        }
        assert_eq!(action_effect("Attachment"), ActionEffect::Destructive);
    }
}
