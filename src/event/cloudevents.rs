//! CloudEvents in the Kafka protocol binding.
use super::{DecodeError, Event, InboundRecord};

/// Decodes a CloudEvent in binary or structured mode.
pub fn decode(_record: &InboundRecord) -> Result<Event, DecodeError> {
    todo!()
}
