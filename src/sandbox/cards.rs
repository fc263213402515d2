//! Stripe's test cards: the `pm_card_<name>` test PaymentMethods and `tok_<name>` tokens, the
//! documented test card numbers, what each does when charged and the error a declining one gives.
//! Pure, no I/O.

use super::error::ApiError;
use super::store::CardBehaviour;

/// A test card: what it does and what may be shown of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TestCard {
    pub behaviour: CardBehaviour,
    pub brand: &'static str,
    pub last4: &'static str,
}

const fn card(behaviour: CardBehaviour, brand: &'static str, last4: &'static str) -> TestCard {
    TestCard {
        behaviour,
        brand,
        last4,
    }
}

/// Stripe's test cards by name: `pm_card_<name>` is a test PaymentMethod and `tok_<name>` a test
/// token (`card[token]=tok_visa`, `source=tok_visa`); each use clones a new `pm_…`.
fn test_card(name: &str) -> Option<TestCard> {
    use CardBehaviour::*;
    Some(match name {
        "visa" => card(Succeeds, "visa", "4242"),
        "visa_debit" => card(Succeeds, "visa", "5556"),
        "mastercard" => card(Succeeds, "mastercard", "4444"),
        "mastercard_debit" => card(Succeeds, "mastercard", "8210"),
        "mastercard_prepaid" => card(Succeeds, "mastercard", "5100"),
        "amex" => card(Succeeds, "amex", "8431"),
        "discover" => card(Succeeds, "discover", "1117"),
        "diners" => card(Succeeds, "diners", "0004"),
        "jcb" => card(Succeeds, "jcb", "0000"),
        "unionpay" => card(Succeeds, "unionpay", "0005"),
        "chargeDeclined" | "visa_chargeDeclined" => card(GenericDecline, "visa", "0002"),
        "chargeDeclinedInsufficientFunds" | "visa_chargeDeclinedInsufficientFunds" => {
            card(InsufficientFunds, "visa", "9995")
        }
        "chargeDeclinedExpiredCard" | "visa_chargeDeclinedExpiredCard" => {
            card(ExpiredCard, "visa", "0069")
        }
        "chargeDeclinedIncorrectCvc" | "visa_chargeDeclinedIncorrectCvc" => {
            card(IncorrectCvc, "visa", "0127")
        }
        "chargeDeclinedProcessingError" | "visa_chargeDeclinedProcessingError" => {
            card(ProcessingError, "visa", "0119")
        }
        "chargeCustomerFail" => card(AttachesThenDeclines, "visa", "0341"),
        "authenticationRequired" | "authenticationRequiredOnSetup" => {
            card(AuthenticationRequired, "visa", "3155")
        }
        "threeDSecure2Required" | "threeDSecureRequired" => {
            card(AuthenticationRequired, "visa", "3220")
        }
        _ => return None,
    })
}

/// A test PaymentMethod id (`pm_card_visa`, `pm_card_chargeDeclinedInsufficientFunds`, …).
pub(crate) fn magic_payment_method(id: &str) -> Option<TestCard> {
    test_card(id.strip_prefix("pm_card_")?)
}

/// A test card token (`tok_visa`, `tok_chargeDeclinedInsufficientFunds`, …).
pub(crate) fn token_card(token: &str) -> Option<TestCard> {
    test_card(token.strip_prefix("tok_")?)
}

/// The behaviour of a card number from Stripe's testing docs; other valid numbers succeed.
pub(crate) fn card_behaviour(number: &str) -> CardBehaviour {
    use CardBehaviour::*;
    match number {
        "4000000000000002" => GenericDecline,
        "4000000000009995" => InsufficientFunds,
        "4000000000000069" => ExpiredCard,
        "4000000000000127" => IncorrectCvc,
        "4000000000000119" => ProcessingError,
        "4000000000000341" => AttachesThenDeclines,
        "4000002500003155" | "4000002760003184" | "4000000000003220" => AuthenticationRequired,
        _ => Succeeds,
    }
}

pub(crate) fn brand_of(number: &str) -> &'static str {
    if number.starts_with('4') {
        "visa"
    } else if number.starts_with("34") || number.starts_with("37") {
        "amex"
    } else if number.starts_with('5') || number.starts_with('2') {
        "mastercard"
    } else if number.starts_with("6011") || number.starts_with("65") {
        "discover"
    } else {
        "unknown"
    }
}

/// Luhn check of a card number.
pub(crate) fn luhn_valid(number: &str) -> bool {
    if number.len() < 12 || !number.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    let sum: u32 = number
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if i % 2 == 1 {
                if d * 2 > 9 { d * 2 - 9 } else { d * 2 }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// The error a declining card produces.
pub(crate) fn decline(behaviour: CardBehaviour) -> Option<ApiError> {
    use CardBehaviour::*;
    let (code, decline_code, message) = match behaviour {
        GenericDecline | AttachesThenDeclines => (
            "card_declined",
            "generic_decline",
            "Your card was declined.",
        ),
        InsufficientFunds => (
            "card_declined",
            "insufficient_funds",
            "Your card has insufficient funds.",
        ),
        ExpiredCard => ("expired_card", "expired_card", "Your card has expired."),
        IncorrectCvc => (
            "incorrect_cvc",
            "incorrect_cvc",
            "Your card's security code is incorrect.",
        ),
        ProcessingError => (
            "processing_error",
            "processing_error",
            "An error occurred while processing your card. Try again in a little bit.",
        ),
        Succeeds | AuthenticationRequired => return None,
    };
    Some(ApiError::card(code, Some(decline_code), message))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn luhn_accepts_test_cards_and_rejects_typos() {
        assert!(luhn_valid("4242424242424242"));
        assert!(luhn_valid("4000002500003155"));
        assert!(luhn_valid("378282246310005"));
        assert!(!luhn_valid("4242424242424241"));
        assert!(!luhn_valid("4242"));
    }

    #[test]
    fn test_numbers_map_to_their_documented_behaviour() {
        assert_eq!(card_behaviour("4242424242424242"), CardBehaviour::Succeeds);
        assert_eq!(
            card_behaviour("4000000000009995"),
            CardBehaviour::InsufficientFunds
        );
        assert_eq!(
            card_behaviour("4000000000000002"),
            CardBehaviour::GenericDecline
        );
        assert_eq!(
            card_behaviour("4000002500003155"),
            CardBehaviour::AuthenticationRequired
        );
        assert_eq!(
            magic_payment_method("pm_card_visa").map(|c| c.last4),
            Some("4242")
        );
        assert!(magic_payment_method("pm_123").is_none());
    }
}
