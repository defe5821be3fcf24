//! Create, read, update and delete of event sources, actions and triggers.
