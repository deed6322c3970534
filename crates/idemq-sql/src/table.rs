use std::fmt;

use idemq_core::StoreError;

/// The table the stores use unless told otherwise.
pub const DEFAULT_TABLE: &str = "idemq_records";

/// The longest table name accepted. Shorter than the 63 bytes PostgreSQL and MySQL allow, so
/// that the index names derived from it (`<table>_expires`) fit as well.
pub const MAX_TABLE_NAME: usize = 48;

/// A table name that is safe to put into SQL text: `^[A-Za-z_][A-Za-z0-9_]{0,47}$`.
///
/// Table names cannot be bound as parameters, so they are validated once here and every
/// statement is built from a `TableName`, never from a raw string.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TableName(String);

impl TableName {
    /// Validates a table name; anything else is a [`StoreError::Config`].
    pub fn new(name: impl Into<String>) -> Result<Self, StoreError> {
        let name = name.into();
        let mut bytes = name.bytes();
        let ok = name.len() <= MAX_TABLE_NAME
            && bytes
                .next()
                .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
            && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if ok {
            Ok(Self(name))
        } else {
            let shown: String = name.chars().take(64).collect();
            Err(StoreError::Config(format!(
                "invalid table name {shown:?}: use 1 to {MAX_TABLE_NAME} characters of \
                 A-Z a-z 0-9 _, not starting with a digit"
            )))
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for TableName {
    fn default() -> Self {
        Self(DEFAULT_TABLE.to_owned())
    }
}

impl fmt::Display for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names_pass_and_everything_else_is_refused() {
        for good in ["idemq_records", "_t", "T1", &"a".repeat(MAX_TABLE_NAME)] {
            assert_eq!(TableName::new(good).unwrap().as_str(), good);
        }
        let too_long = "a".repeat(MAX_TABLE_NAME + 1);
        for bad in [
            "",
            "1t",
            "t-1",
            "t;drop table x",
            "t'",
            "t\"",
            "t\0",
            "schema.t",
            "tëst",
            too_long.as_str(),
        ] {
            assert!(
                matches!(TableName::new(bad), Err(StoreError::Config(_))),
                "{bad:?}"
            );
        }
        assert_eq!(TableName::default().as_str(), DEFAULT_TABLE);
    }
}
