//! The URL parameters of a request, as ClickHouse's HTTP interface reads them: the parameters of
//! the interface itself, and ClickHouse settings (every other name).

/// A request's URL parameters, decoded (`%XX`, `+` as a space), in order.
#[derive(Debug, Clone, Default)]
pub struct Params(pub Vec<(String, Vec<u8>)>);

/// Parameters of the HTTP interface (or of chasyncd) that are not ClickHouse settings.
const INTERFACE: [&str; 19] = [
    "query",
    "database",
    "user",
    "password",
    "quota_key",
    "query_id",
    "session_id",
    "session_timeout",
    "session_check",
    "default_format",
    "decompress",
    "compress",
    "client_protocol_version",
    "role",
    "buffer_size",
    "wait_end_of_query",
    "stacktrace",
    "max_result_bytes",
    "ack",
];

/// Settings the engine sets itself on every insert (a batch is inserted once, synchronously,
/// with its own id as deduplication token and query id); a request's values of them are not
/// part of what it asks for.
pub const ENGINE_OWNED: [&str; 7] = [
    "async_insert",
    "wait_for_async_insert",
    "insert_deduplicate",
    "insert_deduplication_token",
    "query_id",
    "max_insert_block_size",
    "async_insert_deduplicate",
];

impl Params {
    /// Parses a URL query string.
    pub fn parse(query: &str) -> Self {
        Self(
            query
                .split('&')
                .filter(|p| !p.is_empty())
                .map(|p| {
                    let (k, v) = p.split_once('=').unwrap_or((p, ""));
                    (
                        String::from_utf8_lossy(&percent_decode(k)).into_owned(),
                        percent_decode(v),
                    )
                })
                .collect(),
        )
    }

    /// The raw bytes of the last parameter `name`.
    pub fn bytes(&self, name: &str) -> Option<&[u8]> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_slice())
    }

    /// The last parameter `name`, as text.
    pub fn get(&self, name: &str) -> Option<String> {
        self.bytes(name)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }

    /// The ClickHouse settings among the parameters (the last value of each), sorted by name:
    /// every parameter but those of the interface, `param_*` query parameters and the engine's
    /// own settings.
    pub fn settings(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::new();
        for (k, v) in &self.0 {
            if INTERFACE.contains(&k.as_str())
                || k.starts_with("param_")
                || ENGINE_OWNED.contains(&k.as_str())
            {
                continue;
            }
            let v = String::from_utf8_lossy(v).into_owned();
            match out.iter_mut().find(|(name, _)| name == k) {
                Some(e) => e.1 = v,
                None => out.push((k.clone(), v)),
            }
        }
        out.sort();
        out
    }
}

/// Decodes `%XX` escapes and `+` (as a space).
pub fn percent_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => match (hex(b[i + 1]), hex(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 3;
                }
                _ => {
                    out.push(b'%');
                    i += 1;
                }
            },
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_the_parameters_that_are_not_the_interface_s() {
        let p = Params::parse(
            "query=INSERT%20INTO+t%20FORMAT%20JSONEachRow&database=d&session_timezone=Asia%2FTokyo\
             &async_insert=1&param_t=x&date_time_input_format=best_effort&session_id=s&bad=%zz%",
        );
        assert_eq!(p.get("query").unwrap(), "INSERT INTO t FORMAT JSONEachRow");
        assert_eq!(p.get("database").unwrap(), "d");
        assert_eq!(
            p.settings(),
            vec![
                ("bad".to_string(), "%zz%".to_string()),
                ("date_time_input_format".into(), "best_effort".into()),
                ("session_timezone".into(), "Asia/Tokyo".into()),
            ]
        );
        assert_eq!(percent_decode("a%2"), b"a%2");
    }
}
