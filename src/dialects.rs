//! The upstream dialects built into the runtime, by the name a connector spec gives in
//! `connector.json` (`"dialect": "stripe"`). A new connector whose API speaks like one of these
//! needs only its spec; one that does not adds its `upstream::dialect::Dialect` here.

use std::sync::Arc;

use crate::spec::model::ConnectorSpec;
use crate::upstream::dialect::Dialect;

/// The dialect named `name`, if the runtime has it.
pub fn by_name(name: &str) -> Option<Arc<dyn Dialect>> {
    match name {
        crate::stripe::dialect::NAME => Some(Arc::new(crate::stripe::dialect::StripeDialect)),
        _ => None,
    }
}

/// The dialect a connector spec names.
pub fn for_spec(spec: &ConnectorSpec) -> Result<Arc<dyn Dialect>, UnknownDialect> {
    by_name(&spec.connector.dialect).ok_or_else(|| UnknownDialect {
        connector: spec.connector.name.clone(),
        dialect: spec.connector.dialect.clone(),
    })
}

/// A spec names a dialect the runtime does not have.
#[derive(Debug, thiserror::Error)]
#[error("connector {connector:?} names the dialect {dialect:?}, which this runtime does not have")]
pub struct UnknownDialect {
    pub connector: String,
    pub dialect: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stripe_spec_names_the_stripe_dialect() {
        let spec = crate::spec::stripe().unwrap();
        assert_eq!(for_spec(spec).unwrap().name(), "stripe");
        assert!(by_name("soap").is_none());
    }
}
