//! Plain JSON objects.
use super::{DecodeError, Event, InboundRecord};

/// Decodes a plain JSON object.
pub fn decode(_record: &InboundRecord) -> Result<Event, DecodeError> {
    todo!()
}
