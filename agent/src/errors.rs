//! Error formatting shared by the rooms that report errors as one line of text (the shipper's
//! status and logs, the daemon's preflight).

/// An error and its sources on one line ("cannot connect to …: transport error: tcp connect
/// error: Connection refused (os error 111)"), as anyhow's `{:#}` writes it, except that a
/// source whose text its error already ends with (`"cannot read X: {source}"`) is not repeated.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    anyhow::Chain::new(error).fold(String::new(), |mut text, e| {
        let part = e.to_string();
        if text.is_empty() {
            text = part;
        } else if !text.ends_with(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        text
    })
}
