//! Opening connections, with the password kept out of errors and logs.

use lapin::{Connection, ConnectionProperties};

use crate::error::AmqpError;

/// Connects to `uri` under a connection name shown in RabbitMQ's tools.
pub async fn connect(uri: &str, name: &str) -> Result<Connection, AmqpError> {
    let props = ConnectionProperties::default().with_connection_name(name.into());
    Connection::connect(uri, props)
        .await
        .map_err(|source| AmqpError::Connect {
            addr: redact(uri),
            source,
        })
}

/// The URI with its password replaced by `***`.
pub fn redact(uri: &str) -> String {
    let Some((scheme, rest)) = uri.split_once("://") else {
        return uri.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => {
            let userinfo = &rest[..at];
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            format!("{scheme}://{user}:***{}", &rest[at..])
        }
        None => uri.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact("amqp://guest:secret@127.0.0.1:5672/%2f"),
            "amqp://guest:***@127.0.0.1:5672/%2f"
        );
        assert_eq!(redact("amqp://127.0.0.1:5672"), "amqp://127.0.0.1:5672");
        assert_eq!(redact("amqp://u:p@h/v@x"), "amqp://u:***@h/v@x");
    }
}
