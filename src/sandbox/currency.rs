//! The currencies Stripe accepts (three-letter ISO codes, lowercase) and the error for any
//! other. Pure, no I/O.

use super::error::ApiError;

/// Stripe's presentment currencies.
const SUPPORTED: &[&str] = &[
    "usd", "aed", "afn", "all", "amd", "ang", "aoa", "ars", "aud", "awg", "azn", "bam", "bbd",
    "bdt", "bgn", "bhd", "bif", "bmd", "bnd", "bob", "brl", "bsd", "bwp", "byn", "bzd", "cad",
    "cdf", "chf", "clp", "cny", "cop", "crc", "cve", "czk", "djf", "dkk", "dop", "dzd", "egp",
    "etb", "eur", "fjd", "fkp", "gbp", "gel", "gip", "gmd", "gnf", "gtq", "gyd", "hkd", "hnl",
    "htg", "huf", "idr", "ils", "inr", "isk", "jmd", "jod", "jpy", "kes", "kgs", "khr", "kmf",
    "krw", "kwd", "kyd", "kzt", "lak", "lbp", "lkr", "lrd", "lsl", "mad", "mdl", "mga", "mkd",
    "mmk", "mnt", "mop", "mur", "mvr", "mwk", "mxn", "myr", "mzn", "nad", "ngn", "nio", "nok",
    "npr", "nzd", "omr", "pab", "pen", "pgk", "php", "pkr", "pln", "pyg", "qar", "ron", "rsd",
    "rub", "rwf", "sar", "sbd", "scr", "sek", "sgd", "shp", "sle", "sos", "srd", "std", "szl",
    "thb", "tjs", "tnd", "top", "try", "ttd", "twd", "tzs", "uah", "ugx", "uyu", "uzs", "vnd",
    "vuv", "wst", "xaf", "xcd", "xof", "xpf", "yer", "zar", "zmw",
];

/// Stripe's 400 for a currency it does not support, naming `param`.
pub(crate) fn check(currency: &str, param: &str) -> Result<(), ApiError> {
    if SUPPORTED.contains(&currency) {
        return Ok(());
    }
    Err(ApiError::invalid(format!(
        "Invalid currency: {currency}. Stripe currently supports these currencies: {}",
        SUPPORTED.join(", ")
    ))
    .with_param(param))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_codes_pass_and_others_are_refused() {
        assert!(check("usd", "currency").is_ok());
        assert!(check("jpy", "currency").is_ok());
        let error = check("usdx", "currency").unwrap_err();
        assert_eq!(error.param.as_deref(), Some("currency"));
        assert!(error.message.starts_with("Invalid currency: usdx."));
    }
}
