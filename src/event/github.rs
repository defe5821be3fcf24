//! GitHub webhook deliveries.
use super::{DecodeError, Event, EventSource, InboundRecord};

/// Decodes a GitHub webhook delivery.
pub fn decode(_source: &EventSource, _record: &InboundRecord) -> Result<Event, DecodeError> {
    todo!()
}
