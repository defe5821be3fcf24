//! Action requests: building them from an execution and publishing them.
//!
//! An action request is a binary-mode CloudEvent on the topic
//! `<actions_topic_prefix><flavor>.<subtype>`, keyed by trigger id so the
//! requests of one trigger keep their order. Its JSON value carries the
//! action's configuration, the event, and a signed auth context for the
//! action's service account.

use chrono::{DateTime, Utc};
use rdkafka::producer::FutureProducer;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::auth::TokenSigner;
use crate::event::{Event, EventSource};
use crate::kafka::{produce_all, OutboundRecord};
use crate::store::entity::{action, trigger};
use crate::Result;

/// The JSON value of an action request.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ActionRequest {
    /// The execution this request belongs to; workers drop duplicates by it.
    pub execution_id: Uuid,
    /// The trigger that matched.
    pub trigger: TriggerRef,
    /// The action to perform.
    pub action: ActionRef,
    /// The event that matched.
    pub event: EventRef,
    /// Signed credentials of the action's service account.
    pub auth: AuthContext,
    /// When the request was built, UTC.
    pub created_at: DateTime<Utc>,
    /// Delivery attempt, 1 for the first; a retry carries the same
    /// execution id with the next number, also in the `event-hub-attempt`
    /// header. Requests published before this field existed read as 1.
    #[serde(default = "first_attempt")]
    pub attempt: u32,
}

/// Name of the header that carries [`ActionRequest::attempt`].
pub const ATTEMPT_HEADER: &str = "event-hub-attempt";

fn first_attempt() -> u32 {
    1
}

impl ActionRequest {
    /// Sets the delivery attempt, for a retry of the same execution.
    pub fn set_attempt(&mut self, attempt: u32) {
        self.attempt = attempt;
    }
}

/// The trigger of an action request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TriggerRef {
    /// Trigger id.
    pub id: Uuid,
    /// Trigger name.
    pub name: String,
}

/// The action of an action request.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ActionRef {
    /// Action id.
    pub id: Uuid,
    /// Action name.
    pub name: String,
    /// Handler family.
    pub flavor: String,
    /// Handler variant.
    pub subtype: String,
    /// The action's configuration, as stored.
    pub configuration: Value,
}

/// The event of an action request.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EventRef {
    /// Idempotency key of the event.
    pub id: String,
    /// The event source.
    pub source: SourceRef,
    /// Event type.
    #[serde(rename = "type")]
    pub event_type: String,
    /// Derived fields, as stored with the execution.
    pub metadata: Value,
    /// The document the trigger filter matched: the webhook payload, the
    /// CloudEvent in structured form, or the JSON object. It is read back
    /// with the event decoder's visitor, so that a producer's key
    /// `$serde_json::private::RawValue` stays an ordinary key.
    #[serde(deserialize_with = "crate::event::projection::deserialize_document")]
    pub data: Value,
}

/// The event source of an action request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceRef {
    /// Event source id.
    pub id: Uuid,
    /// Event source name.
    pub name: String,
    /// Event source flavor.
    pub flavor: String,
}

/// The auth context handed to the worker.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthContext {
    /// The action's service account, also the token's `sub`.
    pub service_account: String,
    /// EdDSA-signed JWT; see [`crate::auth::Claims`].
    pub token: String,
    /// When the token expires, UTC.
    pub expires_at: DateTime<Utc>,
}

/// What an execution needs to become an action request.
pub struct DispatchInput<'a> {
    /// The execution id.
    pub execution_id: Uuid,
    /// The trigger that matched.
    pub trigger: &'a trigger::Model,
    /// The trigger's action.
    pub action: &'a action::Model,
    /// The event's source.
    pub source: &'a EventSource,
    /// The event.
    pub event: &'a Event,
    /// The execution's stored metadata.
    pub metadata: &'a Value,
}

/// Builds and publishes action requests.
#[derive(Clone)]
pub struct Dispatcher {
    producer: FutureProducer,
    signer: TokenSigner,
    actions_topic_prefix: String,
}

impl Dispatcher {
    /// Creates a dispatcher that publishes with `producer`.
    pub fn new(
        producer: FutureProducer,
        signer: TokenSigner,
        actions_topic_prefix: String,
    ) -> Self {
        Self {
            producer,
            signer,
            actions_topic_prefix,
        }
    }

    /// Returns the topic of the action `(flavor, subtype)`.
    pub fn topic(&self, flavor: &str, subtype: &str) -> String {
        format!("{}{flavor}.{subtype}", self.actions_topic_prefix)
    }

    /// Builds the record of one action request, signing its token.
    pub fn build(&self, input: &DispatchInput<'_>) -> Result<OutboundRecord> {
        let action = input.action;
        let audience = format!("{}.{}", action.flavor, action.plugin_subtype);
        let now = Utc::now();
        let window = chrono::Duration::minutes(i64::from(action.auth_window_minutes));
        let (token, expires_at) = self.signer.sign(
            &action.service_account,
            &audience,
            input.execution_id,
            now,
            window,
        )?;

        let request = ActionRequest {
            execution_id: input.execution_id,
            trigger: TriggerRef {
                id: input.trigger.id,
                name: input.trigger.name.clone(),
            },
            action: ActionRef {
                id: action.id,
                name: action.name.clone(),
                flavor: action.flavor.clone(),
                subtype: action.plugin_subtype.clone(),
                configuration: action.configuration.clone(),
            },
            event: EventRef {
                id: input.event.id.clone(),
                source: SourceRef {
                    id: input.source.id,
                    name: input.source.name.clone(),
                    flavor: input.source.flavor.to_string(),
                },
                event_type: input.event.event_type.clone(),
                metadata: input.metadata.clone(),
                data: input.event.document.clone(),
            },
            auth: AuthContext {
                service_account: action.service_account.clone(),
                token,
                expires_at,
            },
            created_at: now,
            attempt: first_attempt(),
        };

        let headers = [
            ("ce_specversion", "1.0".to_owned()),
            ("ce_id", input.execution_id.to_string()),
            (
                "ce_source",
                format!("event-hub/triggers/{}", input.trigger.id),
            ),
            ("ce_type", audience),
            (
                "ce_time",
                now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            ),
            ("ce_subject", input.event.id.clone()),
            ("content-type", "application/json".to_owned()),
            (ATTEMPT_HEADER, first_attempt().to_string()),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value.into_bytes()))
        .collect();

        Ok(OutboundRecord {
            topic: self.topic(&action.flavor, &action.plugin_subtype),
            key: Some(input.trigger.id.to_string().into_bytes()),
            payload: serde_json::to_vec(&request)?,
            headers,
        })
    }

    /// Publishes built requests and waits for every acknowledgement.
    pub async fn publish(&self, records: &[OutboundRecord]) -> Result<()> {
        Ok(produce_all(&self.producer, records).await?)
    }
}
