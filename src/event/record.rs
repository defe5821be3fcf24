//! An owned copy of a Kafka record, detached from the consumer's buffers.

use rdkafka::message::{BorrowedMessage, Headers, Message};

/// A record read from an event topic.
///
/// The pipeline copies each record out of librdkafka's buffers so it can be
/// decoded, matched and dead-lettered after the consumer moved on.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InboundRecord {
    /// Topic the record was read from.
    pub topic: String,
    /// Partition within that topic.
    pub partition: i32,
    /// Offset within that partition.
    pub offset: i64,
    /// Record key, if any.
    pub key: Option<Vec<u8>>,
    /// Record value, if any.
    pub payload: Option<Vec<u8>>,
    /// Headers in record order; a header may have no value.
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    /// Create or log-append time in milliseconds since the epoch, if known.
    pub timestamp_ms: Option<i64>,
    /// The record's headers could not be read (a header name that is not
    /// UTF-8), so `headers` is empty and the record is dead-lettered.
    pub headers_unreadable: bool,
}

impl InboundRecord {
    /// Copies a record borrowed from the consumer.
    pub fn from_message(message: &BorrowedMessage<'_>) -> Self {
        // NOTE: rdkafka 0.39 unwraps the UTF-8 conversion of each header
        // name and panics on any other name. The panic is caught here so
        // that such a record is dead-lettered instead of stopping the daemon.
        // The default panic hook still prints it once to stderr.
        let headers = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            message
                .headers()
                .map(|headers| {
                    headers
                        .iter()
                        .map(|header| (header.key.to_owned(), header.value.map(<[u8]>::to_vec)))
                        .collect()
                })
                .unwrap_or_default()
        }));
        let headers_unreadable = headers.is_err();
        let headers = headers.unwrap_or_default();
        Self {
            topic: message.topic().to_owned(),
            partition: message.partition(),
            offset: message.offset(),
            key: message.key().map(<[u8]>::to_vec),
            payload: message.payload().map(<[u8]>::to_vec),
            headers,
            timestamp_ms: message.timestamp().to_millis(),
            headers_unreadable,
        }
    }

    /// Returns the bytes of the record's payload, key and headers: its share
    /// of a batch's memory, without allocation overhead.
    pub fn size(&self) -> usize {
        let headers: usize = self
            .headers
            .iter()
            .map(|(name, value)| name.len() + value.as_ref().map_or(0, Vec::len))
            .sum();
        self.payload.as_ref().map_or(0, Vec::len) + self.key.as_ref().map_or(0, Vec::len) + headers
    }

    /// Returns the value of the last header named `name`, compared without
    /// regard to ASCII case, as Kafka header names are free-form.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .rev()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .and_then(|(_, value)| value.as_deref())
    }

    /// Returns the header `name` as UTF-8 text, or `None` if absent or not UTF-8.
    pub fn header_str(&self, name: &str) -> Option<&str> {
        self.header(name)
            .and_then(|value| std::str::from_utf8(value).ok())
    }

    /// Returns the position `topic/partition/offset`, the fallback event id.
    pub fn position(&self) -> String {
        format!("{}/{}/{}", self.topic, self.partition, self.offset)
    }
}
