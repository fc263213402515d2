//! What Stripe's verbs do to an account, for agent tool hints and guard rails: which actions move
//! money or cannot be undone. Pure data about Stripe; the tool catalog stays generic.

/// How far an action's effect reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActionEffect {
    /// Changes an object in a way that can be redone or undone and moves no money
    /// (attaching a payment method, verifying a bank account, refreshing an account).
    Reversible,
    /// Moves money, commits a document or ends an object's life (confirm, capture, refund, pay,
    /// void, finalize, cancel, …): a guard rail must enable it explicitly.
    Destructive,
}

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
