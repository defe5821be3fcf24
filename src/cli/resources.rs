//! `event-source`, `action` and `trigger` commands.
//!
//! Each command parses its flags into the inputs of
//! [`crate::store::resources`], calls it, and prints the result as a table
//! or as JSON. Event source configurations are always printed with the
//! webhook secret redacted.

use std::io::{Read, Write};
use std::str::FromStr;

use anyhow::Context;
use chrono::{DateTime, SecondsFormat, Utc};
use clap::{Args, Subcommand};
use sea_orm::DatabaseConnection;
use serde::Serialize;
use serde_json::{Map, Value};

use super::output::OutputFormat;
use crate::event::Flavor;
use crate::store::entity::{action, event_source, trigger};
use crate::store::executions::{self, ExecutionQuery};
use crate::store::resources::{
    self, ActionUpdate, EventSourceUpdate, NewAction, NewEventSource, NewTrigger, TriggerUpdate,
};
use crate::store::resources::{Backoff, RetryPolicy, RetryPolicyUpdate};

// ---------------------------------------------------------------------------
// Shared arguments
// ---------------------------------------------------------------------------

/// A resource addressed by name or id.
#[derive(Debug, Args)]
pub struct KeyArgs {
    /// Name or id of the resource.
    #[arg(value_name = "NAME_OR_ID")]
    pub key: String,
}

/// Arguments of `list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Output format: aligned columns, or a JSON array.
    #[arg(long, value_enum, default_value_t)]
    pub output: OutputFormat,
}

/// Arguments of `show`.
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// Name or id of the resource.
    #[arg(value_name = "NAME_OR_ID")]
    pub key: String,
    /// Output format: one field per line, or a JSON object.
    #[arg(long, value_enum, default_value_t)]
    pub output: OutputFormat,
}

// ---------------------------------------------------------------------------
// Event sources
// ---------------------------------------------------------------------------

/// Event source commands.
#[derive(Debug, Subcommand)]
pub enum EventSourceCommand {
    /// Create an event source.
    Create(EventSourceCreateArgs),
    /// List all event sources.
    List(ListArgs),
    /// Show one event source, with its webhook secret redacted.
    Show(ShowArgs),
    /// Change fields of an event source. Fields not given stay as they are.
    Update(EventSourceUpdateArgs),
    /// Activate an event source: its records are matched again.
    Activate(KeyArgs),
    /// Deactivate an event source: its records are skipped.
    Deactivate(KeyArgs),
    /// Delete an event source that no trigger uses.
    Delete(KeyArgs),
}

/// The configuration flags of an event source, for create and update.
#[derive(Debug, Args)]
pub struct SourceConfigurationArgs {
    /// Topic whose records belong to this source. Repeat it for several
    /// topics. On update, the topics given replace the current list.
    #[arg(long = "topic", value_name = "TOPIC", conflicts_with = "configuration")]
    pub topics: Vec<String>,
    /// Webhook secret for verifying x-hub-signature-256. Other local users
    /// can read it in the process list, so prefer --secret-env.
    #[arg(long, value_name = "SECRET", conflicts_with_all = ["secret_env", "configuration"])]
    pub secret: Option<String>,
    /// Name of an environment variable that contains the webhook secret.
    #[arg(long, value_name = "VAR", conflicts_with = "configuration")]
    pub secret_env: Option<String>,
    /// The whole configuration as JSON, such as
    /// '{"topics":["github-events"]}', or @FILE to read it from a file
    /// (@- for standard input). It replaces --topic and --secret.
    #[arg(long, value_name = "JSON|@FILE")]
    pub configuration: Option<String>,
}

/// Arguments of `event-source create`.
#[derive(Debug, Args)]
pub struct EventSourceCreateArgs {
    /// Unique name of the new event source.
    #[arg(value_name = "NAME")]
    pub name: String,
    /// Decoder family: github, cloudevents or json.
    #[arg(long, value_name = "FLAVOR")]
    pub flavor: String,
    /// Transport variant: webhook for github, kafka for cloudevents and
    /// json. Default: the flavor's only subtype.
    #[arg(long, value_name = "SUBTYPE")]
    pub subtype: Option<String>,
    /// Topics, secret or the whole configuration.
    #[command(flatten)]
    pub configuration: SourceConfigurationArgs,
    /// Free text for operators.
    #[arg(long, value_name = "TEXT")]
    pub description: Option<String>,
    /// Create the event source inactive, so that its records are skipped
    /// until `event-source activate`.
    #[arg(long)]
    pub inactive: bool,
    /// Output format: a one-line summary, or the created event source as JSON.
    #[arg(long, value_enum, default_value_t)]
    pub output: OutputFormat,
}

/// Arguments of `event-source update`.
#[derive(Debug, Args)]
pub struct EventSourceUpdateArgs {
    /// Name or id of the event source.
    #[arg(value_name = "NAME_OR_ID")]
    pub key: String,
    /// New unique name.
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// New decoder family: github, cloudevents or json. Without --subtype,
    /// the subtype becomes the new flavor's only subtype.
    #[arg(long, value_name = "FLAVOR")]
    pub flavor: Option<String>,
    /// New transport variant.
    #[arg(long, value_name = "SUBTYPE")]
    pub subtype: Option<String>,
    /// New topics, secret or configuration.
    #[command(flatten)]
    pub configuration: SourceConfigurationArgs,
    /// Remove the webhook secret, so that unsigned records are accepted.
    #[arg(long, conflicts_with_all = ["secret", "secret_env", "configuration"])]
    pub clear_secret: bool,
    /// Replace the webhook secret of a github event source with a new random
    /// one (32 bytes, hex) and print it. It is shown only this once, so set
    /// it in GitHub's webhook settings right away.
    #[arg(long, conflicts_with_all = ["secret", "secret_env", "configuration", "clear_secret"])]
    pub rotate_secret: bool,
    /// New description. An empty text removes it.
    #[arg(long, value_name = "TEXT")]
    pub description: Option<String>,
    /// Output format: a one-line summary, or the updated event source as JSON.
    #[arg(long, value_enum, default_value_t)]
    pub output: OutputFormat,
}

/// Runs an event source command.
pub async fn run_event_source(
    db: &DatabaseConnection,
    command: EventSourceCommand,
) -> anyhow::Result<()> {
    match command {
        EventSourceCommand::Create(args) => {
            let subtype = args
                .subtype
                .unwrap_or_else(|| only_subtype(&args.flavor).unwrap_or_default());
            let configuration = match &args.configuration.configuration {
                Some(text) => read_json_argument("--configuration", text)?,
                None => {
                    let mut configuration = Map::new();
                    configuration.insert("topics".to_owned(), args.configuration.topics.into());
                    if let Some(secret) = read_secret(
                        args.configuration.secret,
                        args.configuration.secret_env.as_deref(),
                    )? {
                        configuration.insert("secret".to_owned(), secret.into());
                    }
                    Value::Object(configuration)
                }
            };
            let new = NewEventSource {
                name: args.name,
                flavor: args.flavor,
                plugin_subtype: subtype,
                description: args.description,
                configuration,
                is_active: !args.inactive,
            };
            let created = resources::create_event_source(db, new).await?;
            print_change("created", &created, args.output)
        }
        EventSourceCommand::List(args) => {
            let sources = resources::list_event_sources(db).await?;
            match args.output {
                OutputFormat::Json => print_json(&sources.iter().map(redacted).collect::<Vec<_>>()),
                OutputFormat::Table => {
                    let mut table = Table::new(&[
                        "NAME", "ID", "FLAVOR", "SUBTYPE", "ACTIVE", "TOPICS", "UPDATED",
                    ]);
                    for source in &sources {
                        table.push(vec![
                            source.name.clone(),
                            source.id.to_string(),
                            source.flavor.clone(),
                            source.plugin_subtype.clone(),
                            yes_no(source.is_active),
                            topics_of(&source.configuration),
                            format_time(source.updated_at),
                        ]);
                    }
                    write_stdout(&table.render())?;
                    Ok(())
                }
            }
        }
        EventSourceCommand::Show(args) => {
            let source = resources::find_event_source(db, &args.key).await?;
            match args.output {
                OutputFormat::Json => print_json(&redacted(&source)),
                OutputFormat::Table => {
                    write_stdout(&render_fields(&event_source_fields(&source)))?;
                    Ok(())
                }
            }
        }
        EventSourceCommand::Update(args) => {
            let current = resources::find_event_source(db, &args.key).await?;
            let subtype = match (&args.subtype, &args.flavor) {
                (Some(subtype), _) => Some(subtype.clone()),
                (None, Some(flavor)) => only_subtype(flavor),
                (None, None) => None,
            };
            let configuration = updated_source_configuration(
                &current.configuration,
                args.configuration,
                args.clear_secret,
            )?;
            let update = EventSourceUpdate {
                name: args.name,
                flavor: args.flavor,
                plugin_subtype: subtype,
                description: args.description.map(Some),
                configuration,
                is_active: None,
            };
            let key = current.id.to_string();
            let updated = resources::update_event_source(db, &key, update).await?;
            if args.rotate_secret {
                return rotate_secret(db, &key, args.output).await;
            }
            print_change("updated", &updated, args.output)
        }
        EventSourceCommand::Activate(args) => {
            let source = resources::set_event_source_active(db, &args.key, true).await?;
            write_stdout(&format!("activated {}\n", source.describe()))?;
            Ok(())
        }
        EventSourceCommand::Deactivate(args) => {
            let source = resources::set_event_source_active(db, &args.key, false).await?;
            write_stdout(&format!("deactivated {}\n", source.describe()))?;
            Ok(())
        }
        EventSourceCommand::Delete(args) => {
            let source = resources::delete_event_source(db, &args.key).await?;
            write_stdout(&format!("deleted {}\n", source.describe()))?;
            Ok(())
        }
    }
}

/// Stores a new random webhook secret in the event source `key` and prints
/// it with the updated source.
async fn rotate_secret(
    db: &DatabaseConnection,
    key: &str,
    output: OutputFormat,
) -> anyhow::Result<()> {
    use secrecy::ExposeSecret as _;

    let (source, secret) = crate::api::webhooks::rotate_webhook_secret(db, key).await?;
    match output {
        OutputFormat::Table => write_stdout(&format!(
            "updated {}\nnew webhook secret (shown only now): {}\n",
            source.describe(),
            secret.expose_secret()
        )),
        OutputFormat::Json => print_json(&serde_json::json!({
            "event_source": redacted(&source),
            "secret": secret.expose_secret(),
        })),
    }
}

/// Returns the only subtype of `flavor`, or `None` when the flavor is
/// unknown (the store then reports it) or has several subtypes.
fn only_subtype(flavor: &str) -> Option<String> {
    match Flavor::from_str(flavor).ok()?.subtypes() {
        [subtype] => Some((*subtype).to_owned()),
        _ => None,
    }
}

/// Returns the secret given by `--secret` or read from `--secret-env`.
fn read_secret(secret: Option<String>, secret_env: Option<&str>) -> anyhow::Result<Option<String>> {
    if let Some(variable) = secret_env {
        let secret = std::env::var(variable)
            .with_context(|| format!("cannot read --secret-env variable {variable}"))?;
        return Ok(Some(secret));
    }
    Ok(secret)
}

/// Builds the new configuration of `event-source update` from the current
/// one, or returns `None` when no configuration flag was given.
fn updated_source_configuration(
    current: &Value,
    args: SourceConfigurationArgs,
    clear_secret: bool,
) -> anyhow::Result<Option<Value>> {
    if let Some(text) = &args.configuration {
        return read_json_argument("--configuration", text).map(Some);
    }
    let secret = read_secret(args.secret, args.secret_env.as_deref())?;
    if args.topics.is_empty() && secret.is_none() && !clear_secret {
        return Ok(None);
    }

    // A stored configuration that is not an object fails validation in the
    // store anyway, and starting from an empty object gives the clearer error.
    let mut configuration = current.as_object().cloned().unwrap_or_default();
    if !args.topics.is_empty() {
        configuration.insert("topics".to_owned(), args.topics.into());
    }
    if let Some(secret) = secret {
        configuration.insert("secret".to_owned(), secret.into());
    }
    if clear_secret {
        configuration.remove("secret");
    }
    Ok(Some(Value::Object(configuration)))
}

fn redacted(source: &event_source::Model) -> event_source::Model {
    event_source::Model {
        configuration: resources::redact_secret(&source.configuration),
        ..source.clone()
    }
}

fn topics_of(configuration: &Value) -> String {
    let topics: Vec<&str> = configuration
        .get("topics")
        .and_then(Value::as_array)
        .map(|topics| topics.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if topics.is_empty() {
        "-".to_owned()
    } else {
        topics.join(",")
    }
}

fn event_source_fields(source: &event_source::Model) -> Vec<(&'static str, String)> {
    let has_secret = source
        .configuration
        .get("secret")
        .is_some_and(|secret| !secret.is_null());
    vec![
        ("id", source.id.to_string()),
        ("name", source.name.clone()),
        ("flavor", source.flavor.clone()),
        ("subtype", source.plugin_subtype.clone()),
        ("active", yes_no(source.is_active)),
        ("topics", topics_of(&source.configuration)),
        ("secret", if has_secret { "set" } else { "none" }.to_owned()),
        ("description", optional(source.description.as_deref())),
        (
            "configuration",
            resources::redact_secret(&source.configuration).to_string(),
        ),
        ("created", format_time(source.created_at)),
        ("updated", format_time(source.updated_at)),
    ]
}

// ---------------------------------------------------------------------------
// Actions
// ---------------------------------------------------------------------------

/// Action commands.
#[derive(Debug, Subcommand)]
pub enum ActionCommand {
    /// Create an action.
    Create(ActionCreateArgs),
    /// List all actions.
    List(ListArgs),
    /// Show one action.
    Show(ShowArgs),
    /// Change fields of an action. Fields not given stay as they are.
    Update(ActionUpdateArgs),
    /// Delete an action that no trigger uses.
    Delete(KeyArgs),
}

/// Arguments of `action create`.
#[derive(Debug, Args)]
pub struct ActionCreateArgs {
    /// Unique name of the new action.
    #[arg(value_name = "NAME")]
    pub name: String,
    /// Handler family (a-z, 0-9, '_', '-'). With the default prefix, action
    /// requests go to the topic event-hub.actions.<FLAVOR>.<SUBTYPE>.
    #[arg(long, value_name = "FLAVOR")]
    pub flavor: String,
    /// Handler variant (a-z, 0-9, '_', '-'), the last part of the topic name.
    #[arg(long, value_name = "SUBTYPE")]
    pub subtype: String,
    /// JSON object handed to the worker in every action request, or @FILE
    /// to read it from a file (@- for standard input).
    #[arg(long, value_name = "JSON|@FILE", default_value = "{}")]
    pub configuration: String,
    /// Service account named as the subject of the token in each action
    /// request.
    #[arg(long, value_name = "ACCOUNT")]
    pub service_account: String,
    /// Lifetime of that token in minutes, from 1 to 1440.
    #[arg(long, value_name = "MINUTES")]
    pub auth_window_minutes: i32,
    /// Retry policy; flags not given take the defaults.
    #[command(flatten)]
    pub retry: RetryPolicyArgs,
    /// Free text for operators.
    #[arg(long, value_name = "TEXT")]
    pub description: Option<String>,
    /// Output format: a one-line summary, or the created action as JSON.
    #[arg(long, value_enum, default_value_t)]
    pub output: OutputFormat,
}

/// The retry policy flags of an action, for create and update.
#[derive(Debug, Args)]
pub struct RetryPolicyArgs {
    /// Attempts in all, the first included, before a failing request is
    /// dead-lettered: 1 to 100. Default: 3.
    #[arg(long, value_name = "N")]
    pub max_attempts: Option<i32>,
    /// Growth of the delay between attempts. Default: exponential.
    #[arg(long, value_enum, value_name = "KIND")]
    pub backoff: Option<BackoffArg>,
    /// Delay after the first failed attempt, in milliseconds; exponential
    /// backoff doubles it per attempt, linear adds it. Default: 1000.
    #[arg(long, value_name = "MS")]
    pub initial_delay_ms: Option<i64>,
    /// Maximum delay between attempts, in milliseconds. Default: 60000.
    #[arg(long, value_name = "MS")]
    pub max_delay_ms: Option<i64>,
    /// Dead-letter instead of retrying once the execution is this many
    /// seconds old; 0 removes the limit. Default: no limit.
    #[arg(long, value_name = "SECONDS")]
    pub max_event_age_secs: Option<i64>,
}

impl RetryPolicyArgs {
    /// Returns the changes these flags make.
    fn into_update(self) -> RetryPolicyUpdate {
        RetryPolicyUpdate {
            max_attempts: self.max_attempts,
            backoff: self.backoff.map(Backoff::from),
            initial_delay_ms: self.initial_delay_ms,
            max_delay_ms: self.max_delay_ms,
            max_event_age_secs: self
                .max_event_age_secs
                .map(|seconds| (seconds != 0).then_some(seconds)),
        }
    }
}

/// `--backoff` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum BackoffArg {
    /// The delay doubles after every failed attempt.
    Exponential,
    /// The delay grows by the initial delay after every failed attempt.
    Linear,
}

impl From<BackoffArg> for Backoff {
    fn from(argument: BackoffArg) -> Self {
        match argument {
            BackoffArg::Exponential => Backoff::Exponential,
            BackoffArg::Linear => Backoff::Linear,
        }
    }
}

/// An action with its retry policy, as printed in JSON.
#[derive(Serialize)]
struct ActionView<'a> {
    #[serde(flatten)]
    action: &'a action::Model,
    retry_policy: RetryPolicy,
}

/// Arguments of `action update`.
#[derive(Debug, Args)]
pub struct ActionUpdateArgs {
    /// Name or id of the action.
    #[arg(value_name = "NAME_OR_ID")]
    pub key: String,
    /// New unique name.
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// New handler family (a-z, 0-9, '_', '-').
    #[arg(long, value_name = "FLAVOR")]
    pub flavor: Option<String>,
    /// New handler variant (a-z, 0-9, '_', '-').
    #[arg(long, value_name = "SUBTYPE")]
    pub subtype: Option<String>,
    /// New configuration as a JSON object, or @FILE (@- for standard
    /// input). It replaces the whole configuration.
    #[arg(long, value_name = "JSON|@FILE")]
    pub configuration: Option<String>,
    /// New service account.
    #[arg(long, value_name = "ACCOUNT")]
    pub service_account: Option<String>,
    /// New token lifetime in minutes, from 1 to 1440.
    #[arg(long, value_name = "MINUTES")]
    pub auth_window_minutes: Option<i32>,
    /// New retry policy values; flags not given stay as they are.
    #[command(flatten)]
    pub retry: RetryPolicyArgs,
    /// New description. An empty text removes it.
    #[arg(long, value_name = "TEXT")]
    pub description: Option<String>,
    /// Output format: a one-line summary, or the updated action as JSON.
    #[arg(long, value_enum, default_value_t)]
    pub output: OutputFormat,
}

/// Runs an action command.
pub async fn run_action(db: &DatabaseConnection, command: ActionCommand) -> anyhow::Result<()> {
    match command {
        ActionCommand::Create(args) => {
            let new = NewAction {
                name: args.name,
                flavor: args.flavor,
                plugin_subtype: args.subtype,
                description: args.description,
                configuration: read_json_argument("--configuration", &args.configuration)?,
                service_account: args.service_account,
                auth_window_minutes: args.auth_window_minutes,
            };
            let retry_policy = args.retry.into_update().apply(&RetryPolicy::default());
            let created =
                resources::create_action_with_retry_policy(db, new, retry_policy.clone()).await?;
            print_action_change("created", &created, retry_policy, args.output)
        }
        ActionCommand::List(args) => {
            let actions = resources::list_actions(db).await?;
            let mut policies = Vec::with_capacity(actions.len());
            for action in &actions {
                policies.push(resources::find_retry_policy(db, action.id).await?);
            }
            match args.output {
                OutputFormat::Json => {
                    let views: Vec<ActionView<'_>> = actions
                        .iter()
                        .zip(policies)
                        .map(|(action, retry_policy)| ActionView {
                            action,
                            retry_policy,
                        })
                        .collect();
                    print_json(&views)
                }
                OutputFormat::Table => {
                    let mut table = Table::new(&[
                        "NAME",
                        "ID",
                        "FLAVOR",
                        "SUBTYPE",
                        "SERVICE ACCOUNT",
                        "AUTH WINDOW (MIN)",
                        "MAX ATTEMPTS",
                        "UPDATED",
                    ]);
                    for (action, policy) in actions.iter().zip(&policies) {
                        table.push(vec![
                            action.name.clone(),
                            action.id.to_string(),
                            action.flavor.clone(),
                            action.plugin_subtype.clone(),
                            action.service_account.clone(),
                            action.auth_window_minutes.to_string(),
                            policy.max_attempts.to_string(),
                            format_time(action.updated_at),
                        ]);
                    }
                    write_stdout(&table.render())?;
                    Ok(())
                }
            }
        }
        ActionCommand::Show(args) => {
            let action = resources::find_action(db, &args.key).await?;
            let retry_policy = resources::find_retry_policy(db, action.id).await?;
            match args.output {
                OutputFormat::Json => print_json(&ActionView {
                    action: &action,
                    retry_policy,
                }),
                OutputFormat::Table => {
                    write_stdout(&render_fields(&action_fields(&action, &retry_policy)))?;
                    Ok(())
                }
            }
        }
        ActionCommand::Update(args) => {
            let configuration = args
                .configuration
                .as_deref()
                .map(|text| read_json_argument("--configuration", text))
                .transpose()?;
            let update = ActionUpdate {
                name: args.name,
                flavor: args.flavor,
                plugin_subtype: args.subtype,
                description: args.description.map(Some),
                configuration,
                service_account: args.service_account,
                auth_window_minutes: args.auth_window_minutes,
            };
            let updated = resources::update_action_with_retry_policy(
                db,
                &args.key,
                update,
                args.retry.into_update(),
            )
            .await?;
            let retry_policy = resources::find_retry_policy(db, updated.id).await?;
            print_action_change("updated", &updated, retry_policy, args.output)
        }
        ActionCommand::Delete(args) => {
            let action = resources::delete_action(db, &args.key).await?;
            write_stdout(&format!("deleted {}\n", action.describe()))?;
            Ok(())
        }
    }
}

/// Prints the outcome of action create or update, with the retry policy
/// in JSON.
fn print_action_change(
    verb: &str,
    action: &action::Model,
    retry_policy: RetryPolicy,
    output: OutputFormat,
) -> anyhow::Result<()> {
    match output {
        OutputFormat::Table => print_change(verb, action, output),
        OutputFormat::Json => print_json(&ActionView {
            action,
            retry_policy,
        }),
    }
}

fn action_fields(
    action: &action::Model,
    retry_policy: &RetryPolicy,
) -> Vec<(&'static str, String)> {
    let backoff = match retry_policy.backoff {
        Backoff::Exponential => "exponential",
        Backoff::Linear => "linear",
    };
    let max_event_age = retry_policy
        .max_event_age_secs
        .map_or_else(|| "none".to_owned(), |seconds| format!("{seconds} s"));
    vec![
        ("id", action.id.to_string()),
        ("name", action.name.clone()),
        ("flavor", action.flavor.clone()),
        ("subtype", action.plugin_subtype.clone()),
        ("service account", action.service_account.clone()),
        (
            "auth window",
            format!("{} minutes", action.auth_window_minutes),
        ),
        ("max attempts", retry_policy.max_attempts.to_string()),
        (
            "backoff",
            format!(
                "{backoff}, {} ms up to {} ms",
                retry_policy.initial_delay_ms, retry_policy.max_delay_ms
            ),
        ),
        ("max event age", max_event_age),
        ("description", optional(action.description.as_deref())),
        ("configuration", action.configuration.to_string()),
        ("created", format_time(action.created_at)),
        ("updated", format_time(action.updated_at)),
    ]
}

// ---------------------------------------------------------------------------
// Triggers
// ---------------------------------------------------------------------------

/// Trigger commands.
#[derive(Debug, Subcommand)]
pub enum TriggerCommand {
    /// Create a trigger.
    Create(TriggerCreateArgs),
    /// List all triggers.
    List(ListArgs),
    /// Show one trigger with its event filter.
    Show(ShowArgs),
    /// Change fields of a trigger. Fields not given stay as they are.
    Update(TriggerUpdateArgs),
    /// Activate a trigger: it matches events again.
    Activate(KeyArgs),
    /// Deactivate a trigger: it matches nothing until activated.
    Deactivate(KeyArgs),
    /// Delete a trigger and its execution history.
    Delete(KeyArgs),
    /// Decode an event from a file as a record of an event source and test
    /// it against each trigger of that source. Nothing is recorded or
    /// published.
    Test(TriggerTestArgs),
}

/// Arguments of `trigger create`.
#[derive(Debug, Args)]
pub struct TriggerCreateArgs {
    /// Unique name of the new trigger.
    #[arg(value_name = "NAME")]
    pub name: String,
    /// Name or id of the event source whose events the trigger receives.
    #[arg(long, value_name = "NAME_OR_ID")]
    pub event_source: String,
    /// Name or id of the action requested for each matching event.
    #[arg(long, value_name = "NAME_OR_ID")]
    pub action: String,
    /// Event pattern as JSON, such as '{"repo":"octo/app","event_type":"push"}',
    /// or @FILE to read it from a file (@- for standard input).
    #[arg(long, value_name = "JSON|@FILE")]
    pub filter: String,
    /// Free text for operators.
    #[arg(long, value_name = "TEXT")]
    pub description: Option<String>,
    /// Create the trigger inactive, so that it matches nothing until
    /// `trigger activate`.
    #[arg(long)]
    pub inactive: bool,
    /// Output format: a one-line summary, or the created trigger as JSON.
    #[arg(long, value_enum, default_value_t)]
    pub output: OutputFormat,
}

/// Arguments of `trigger update`.
#[derive(Debug, Args)]
pub struct TriggerUpdateArgs {
    /// Name or id of the trigger.
    #[arg(value_name = "NAME_OR_ID")]
    pub key: String,
    /// New unique name.
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Name or id of the new event source.
    #[arg(long, value_name = "NAME_OR_ID")]
    pub event_source: Option<String>,
    /// Name or id of the new action.
    #[arg(long, value_name = "NAME_OR_ID")]
    pub action: Option<String>,
    /// New event pattern as JSON, or @FILE (@- for standard input).
    #[arg(long, value_name = "JSON|@FILE")]
    pub filter: Option<String>,
    /// New description. An empty text removes it.
    #[arg(long, value_name = "TEXT")]
    pub description: Option<String>,
    /// Output format: a one-line summary, or the updated trigger as JSON.
    #[arg(long, value_enum, default_value_t)]
    pub output: OutputFormat,
}

/// Runs a trigger command.
pub async fn run_trigger(db: &DatabaseConnection, command: TriggerCommand) -> anyhow::Result<()> {
    match command {
        TriggerCommand::Create(args) => {
            let new = NewTrigger {
                name: args.name,
                description: args.description,
                event_source: args.event_source,
                action: args.action,
                event_filter: read_json_argument("--filter", &args.filter)?,
                is_active: !args.inactive,
            };
            let created = resources::create_trigger(db, new).await?;
            print_change("created", &created, args.output)
        }
        TriggerCommand::List(args) => {
            let triggers = resources::list_triggers(db).await?;
            match args.output {
                OutputFormat::Json => print_json(&triggers),
                OutputFormat::Table => {
                    let names = ResourceNames::load(db).await?;
                    let mut table =
                        Table::new(&["NAME", "ID", "EVENT SOURCE", "ACTION", "ACTIVE", "UPDATED"]);
                    for trigger in &triggers {
                        table.push(vec![
                            trigger.name.clone(),
                            trigger.id.to_string(),
                            names.event_source(trigger.event_source_id),
                            names.action(trigger.action_id),
                            yes_no(trigger.is_active),
                            format_time(trigger.updated_at),
                        ]);
                    }
                    write_stdout(&table.render())?;
                    Ok(())
                }
            }
        }
        TriggerCommand::Show(args) => {
            let trigger = resources::find_trigger(db, &args.key).await?;
            match args.output {
                OutputFormat::Json => print_json(&trigger),
                OutputFormat::Table => {
                    let names = ResourceNames::load(db).await?;
                    write_stdout(&render_fields(&trigger_fields(&trigger, &names)))?;
                    Ok(())
                }
            }
        }
        TriggerCommand::Update(args) => {
            let event_filter = args
                .filter
                .as_deref()
                .map(|text| read_json_argument("--filter", text))
                .transpose()?;
            let update = TriggerUpdate {
                name: args.name,
                description: args.description.map(Some),
                event_source: args.event_source,
                action: args.action,
                event_filter,
                is_active: None,
            };
            let updated = resources::update_trigger(db, &args.key, update).await?;
            print_change("updated", &updated, args.output)
        }
        TriggerCommand::Activate(args) => {
            let trigger = resources::set_trigger_active(db, &args.key, true).await?;
            write_stdout(&format!("activated {}\n", trigger.describe()))?;
            Ok(())
        }
        TriggerCommand::Deactivate(args) => {
            let trigger = resources::set_trigger_active(db, &args.key, false).await?;
            write_stdout(&format!("deactivated {}\n", trigger.describe()))?;
            Ok(())
        }
        TriggerCommand::Delete(args) => {
            let trigger = resources::find_trigger(db, &args.key).await?;
            let query = ExecutionQuery {
                trigger_id: Some(trigger.id),
                ..ExecutionQuery::default()
            };
            let execution_count = executions::count(db, &query).await?;
            let deleted = resources::delete_trigger(db, &trigger.id.to_string()).await?;
            write_stdout(&format!(
                "deleted {} and its {execution_count} execution(s)\n",
                deleted.describe()
            ))?;
            Ok(())
        }
        TriggerCommand::Test(args) => test_event(db, args).await,
    }
}

// ---------------------------------------------------------------------------
// trigger test
// ---------------------------------------------------------------------------

/// Arguments of `trigger test`.
#[derive(Debug, Args)]
pub struct TriggerTestArgs {
    /// Name or id of the event source whose decoder and triggers are used.
    #[arg(long, value_name = "NAME_OR_ID")]
    pub event_source: String,
    /// File with the record value, such as a webhook body, or - for
    /// standard input.
    #[arg(long, value_name = "FILE")]
    pub file: String,
    /// Record header as NAME=VALUE, such as x-github-event=push. Repeat it
    /// for several headers. A webhook signature (x-hub-signature-256) is
    /// verified only when given.
    #[arg(long = "header", value_name = "NAME=VALUE", value_parser = parse_header)]
    pub headers: Vec<(String, String)>,
    /// Output format: a table of the triggers, or a JSON object that also
    /// contains the decoded document.
    #[arg(long, value_enum, default_value_t)]
    pub output: OutputFormat,
}

/// Header of a GitHub webhook signature.
const SIGNATURE_HEADER: &str = "x-hub-signature-256";

/// Topic of the simulated record when the event source reads no topic.
const TEST_TOPIC: &str = "trigger-test";

/// The outcome of one trigger in `trigger test`.
#[derive(Debug, Serialize)]
struct TriggerTestResult {
    id: uuid::Uuid,
    name: String,
    active: bool,
    matches: bool,
    /// The first failed condition when the trigger does not match.
    #[serde(skip_serializing_if = "Option::is_none")]
    mismatch: Option<crate::matching::Mismatch>,
    /// The compilation error of a stored filter that does not compile, for
    /// a row edited in the database directly.
    #[serde(skip_serializing_if = "Option::is_none")]
    invalid_filter: Option<String>,
}

/// Runs `trigger test`: decodes the file as a record of the event source
/// and explains each of the source's triggers against the document.
async fn test_event(db: &DatabaseConnection, args: TriggerTestArgs) -> anyhow::Result<()> {
    let model = resources::find_event_source(db, &args.event_source).await?;
    let mut source = crate::event::EventSource::from_model(&model)
        .with_context(|| format!("event source {} has an invalid configuration", model.name))?;
    let payload = read_test_file(&args.file)?;

    // Without a signature header, the event is decoded as if the source
    // had no secret, so that an unsigned payload can be tried.
    let signature_given = args
        .headers
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case(SIGNATURE_HEADER));
    let signature_skipped = source.secret.is_some() && !signature_given;
    if signature_skipped {
        source.secret = None;
    }

    let record = crate::event::InboundRecord {
        topic: source
            .topics
            .first()
            .cloned()
            .unwrap_or_else(|| TEST_TOPIC.to_owned()),
        payload: Some(payload),
        headers: args
            .headers
            .into_iter()
            .map(|(name, value)| (name, Some(value.into_bytes())))
            .collect(),
        ..crate::event::InboundRecord::default()
    };
    let event = crate::event::decode(&source, &record)
        .map_err(|error| anyhow::anyhow!(decode_failure(&args.file, &source, &error)))?;

    let triggers: Vec<trigger::Model> = resources::list_triggers(db)
        .await?
        .into_iter()
        .filter(|trigger| trigger.event_source_id == source.id)
        .collect();
    let results = test_triggers(&triggers, &event.document);

    match args.output {
        OutputFormat::Json => print_json(&serde_json::json!({
            "event_source": {
                "id": source.id,
                "name": source.name,
                "flavor": source.flavor,
                "active": source.is_active,
            },
            "signature_verified": source.secret.is_some(),
            "event": {
                "id": event.id,
                "type": event.event_type,
                "metadata": event.metadata,
                "document": event.document,
            },
            "matching_active_triggers": results
                .iter()
                .filter(|result| result.active && result.matches)
                .count(),
            "triggers": results,
        })),
        OutputFormat::Table => write_stdout(&render_test_report(
            &source,
            signature_skipped,
            &event,
            &results,
        )),
    }
}

/// Parses a `--header NAME=VALUE` argument.
fn parse_header(argument: &str) -> Result<(String, String), String> {
    match argument.split_once('=') {
        Some((name, value)) if !name.trim().is_empty() => {
            Ok((name.trim().to_owned(), value.to_owned()))
        }
        _ => Err(format!(
            "invalid header {argument:?}; expected NAME=VALUE, such as x-github-event=push"
        )),
    }
}

/// Reads the record value from `path`, or from standard input for `-`.
fn read_test_file(path: &str) -> anyhow::Result<Vec<u8>> {
    if path == "-" {
        let mut payload = Vec::new();
        std::io::stdin()
            .read_to_end(&mut payload)
            .context("cannot read the event from standard input")?;
        return Ok(payload);
    }
    std::fs::read(path).with_context(|| format!("cannot read event file {path}"))
}

/// Describes a decoding failure, with the flag to add for a missing header.
fn decode_failure(
    file: &str,
    source: &crate::event::EventSource,
    error: &crate::event::DecodeError,
) -> String {
    let mut message = format!(
        "cannot decode {file} as an event of {} event source {}: {error}",
        source.flavor, source.name
    );
    if let crate::event::DecodeError::MissingHeader(header) = error {
        message.push_str(&format!("; pass it with --header {header}=VALUE"));
    }
    message
}

/// Tests `document` against each trigger, active or not, in the given order.
fn test_triggers(triggers: &[trigger::Model], document: &Value) -> Vec<TriggerTestResult> {
    triggers
        .iter()
        .map(|trigger| {
            let mut result = TriggerTestResult {
                id: trigger.id,
                name: trigger.name.clone(),
                active: trigger.is_active,
                matches: false,
                mismatch: None,
                invalid_filter: None,
            };
            match crate::matching::Pattern::compile(&trigger.event_filter) {
                Ok(pattern) => match pattern.explain(document) {
                    Ok(()) => result.matches = true,
                    Err(mismatch) => result.mismatch = Some(mismatch),
                },
                Err(error) => result.invalid_filter = Some(error.to_string()),
            }
            result
        })
        .collect()
}

/// Renders the `trigger test` report: the event, one row per trigger and
/// a summary line.
fn render_test_report(
    source: &crate::event::EventSource,
    signature_skipped: bool,
    event: &crate::event::Event,
    results: &[TriggerTestResult],
) -> String {
    let mut report = format!(
        "event source: {} ({}{})\nevent: {} (type {})\n",
        source.name,
        source.flavor,
        if source.is_active { "" } else { ", inactive" },
        event.id,
        event.event_type,
    );
    if signature_skipped {
        report.push_str(&format!(
            "signature: not verified, because no {SIGNATURE_HEADER} header was given\n"
        ));
    }
    report.push('\n');

    if results.is_empty() {
        report.push_str(&format!("event source {} has no triggers\n", source.name));
        return report;
    }
    let mut table = Table::new(&["TRIGGER", "ACTIVE", "RESULT", "FIRST FAILED CONDITION"]);
    for result in results {
        let (outcome, detail) = match (&result.mismatch, &result.invalid_filter) {
            (_, Some(error)) => ("invalid filter", error.clone()),
            (Some(mismatch), None) => ("no match", mismatch.to_string()),
            (None, None) => ("match", "-".to_owned()),
        };
        table.push(vec![
            result.name.clone(),
            yes_no(result.active),
            outcome.to_owned(),
            detail,
        ]);
    }
    report.push_str(&table.render());

    let active = results.iter().filter(|result| result.active).count();
    let matching = results
        .iter()
        .filter(|result| result.active && result.matches)
        .count();
    report.push_str(&format!("\n{matching} of {active} active triggers match"));
    if !source.is_active {
        report.push_str(", but the event source is inactive, so the daemon skips its records");
    }
    report.push('\n');
    report
}

fn trigger_fields(trigger: &trigger::Model, names: &ResourceNames) -> Vec<(&'static str, String)> {
    vec![
        ("id", trigger.id.to_string()),
        ("name", trigger.name.clone()),
        (
            "event source",
            format!(
                "{} ({})",
                names.event_source(trigger.event_source_id),
                trigger.event_source_id
            ),
        ),
        (
            "action",
            format!(
                "{} ({})",
                names.action(trigger.action_id),
                trigger.action_id
            ),
        ),
        ("active", yes_no(trigger.is_active)),
        ("description", optional(trigger.description.as_deref())),
        ("filter", trigger.event_filter.to_string()),
        ("created", format_time(trigger.created_at)),
        ("updated", format_time(trigger.updated_at)),
    ]
}

/// Names of event sources and actions by id, for printing triggers.
pub(super) struct ResourceNames {
    event_sources: std::collections::HashMap<uuid::Uuid, String>,
    actions: std::collections::HashMap<uuid::Uuid, String>,
}

impl ResourceNames {
    /// Reads the names of all event sources and actions.
    pub(super) async fn load(db: &DatabaseConnection) -> anyhow::Result<Self> {
        let event_sources = resources::list_event_sources(db)
            .await?
            .into_iter()
            .map(|source| (source.id, source.name))
            .collect();
        let actions = resources::list_actions(db)
            .await?
            .into_iter()
            .map(|action| (action.id, action.name))
            .collect();
        Ok(Self {
            event_sources,
            actions,
        })
    }

    /// Returns the name of event source `id`, or `?` when it is gone.
    pub(super) fn event_source(&self, id: uuid::Uuid) -> String {
        self.event_sources
            .get(&id)
            .cloned()
            .unwrap_or_else(|| "?".to_owned())
    }

    /// Returns the name of action `id`, or `?` when it is gone.
    pub(super) fn action(&self, id: uuid::Uuid) -> String {
        self.actions
            .get(&id)
            .cloned()
            .unwrap_or_else(|| "?".to_owned())
    }
}

// ---------------------------------------------------------------------------
// Output helpers, shared with the execution commands
// ---------------------------------------------------------------------------

/// A resource that has a kind, a name and an id to report.
trait Describe {
    fn describe(&self) -> String;
}

impl Describe for event_source::Model {
    fn describe(&self) -> String {
        format!("event source {} (id {})", self.name, self.id)
    }
}

impl Describe for action::Model {
    fn describe(&self) -> String {
        format!("action {} (id {})", self.name, self.id)
    }
}

impl Describe for trigger::Model {
    fn describe(&self) -> String {
        format!("trigger {} (id {})", self.name, self.id)
    }
}

/// A resource printed after create or update.
trait Printable: Describe {
    /// Prints the whole resource as JSON, with secrets redacted.
    fn print_json(&self) -> anyhow::Result<()>;
}

impl Printable for event_source::Model {
    fn print_json(&self) -> anyhow::Result<()> {
        print_json(&redacted(self))
    }
}

impl Printable for action::Model {
    fn print_json(&self) -> anyhow::Result<()> {
        print_json(self)
    }
}

impl Printable for trigger::Model {
    fn print_json(&self) -> anyhow::Result<()> {
        print_json(self)
    }
}

/// Prints the outcome of create or update: `created <kind> <name> (id ...)`
/// for tables, the whole resource for JSON.
fn print_change(verb: &str, resource: &impl Printable, output: OutputFormat) -> anyhow::Result<()> {
    match output {
        OutputFormat::Table => {
            write_stdout(&format!("{verb} {}\n", resource.describe()))?;
            Ok(())
        }
        OutputFormat::Json => resource.print_json(),
    }
}

/// Prints `value` as pretty JSON on standard output.
pub(super) fn print_json(value: &impl Serialize) -> anyhow::Result<()> {
    let mut text = serde_json::to_string_pretty(value)?;
    text.push('\n');
    write_stdout(&text)
}

/// Writes `text` to standard output. A closed pipe, as when the output goes
/// through `head`, ends the output quietly instead of failing.
pub(super) fn write_stdout(text: &str) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(error) if error.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(anyhow::Error::new(error).context("cannot write to standard output"))
        }
        _ => Ok(()),
    }
}

/// Parses a JSON argument given inline or as `@FILE` (`@-` for standard input).
pub(super) fn read_json_argument(flag: &str, argument: &str) -> anyhow::Result<Value> {
    let Some(path) = argument.strip_prefix('@') else {
        return serde_json::from_str(argument).with_context(|| {
            format!("{flag} is not valid JSON; pass JSON text or @FILE to read a file")
        });
    };

    let text = if path == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .with_context(|| format!("cannot read {flag} from standard input"))?;
        text
    } else {
        std::fs::read_to_string(path).with_context(|| format!("cannot read {flag} file {path}"))?
    };
    serde_json::from_str(&text).with_context(|| format!("{flag} file {path} is not valid JSON"))
}

/// Formats a timestamp as RFC 3339 in UTC, to the second.
pub(super) fn format_time(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Formats an optional timestamp, `-` when absent.
pub(super) fn format_optional_time(time: Option<DateTime<Utc>>) -> String {
    time.map(format_time).unwrap_or_else(|| "-".to_owned())
}

/// Returns `text`, or `-` when absent.
pub(super) fn optional(text: Option<&str>) -> String {
    text.unwrap_or("-").to_owned()
}

fn yes_no(value: bool) -> String {
    if value { "yes" } else { "no" }.to_owned()
}

/// Replaces control characters, such as newlines in a description, by
/// spaces so that every cell stays on its line and cannot move the cursor.
fn single_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// Rows printed as left-aligned columns separated by two spaces.
pub(super) struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// Starts a table with the given column headers.
    pub(super) fn new(headers: &[&str]) -> Self {
        Self {
            headers: headers.iter().map(|header| (*header).to_owned()).collect(),
            rows: Vec::new(),
        }
    }

    /// Appends a row, which should have one cell per header.
    pub(super) fn push(&mut self, row: Vec<String>) {
        self.rows
            .push(row.iter().map(|cell| single_line(cell)).collect());
    }

    /// Renders the header and the rows, each line ending in a newline.
    pub(super) fn render(&self) -> String {
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (column, cell) in row.iter().enumerate() {
                let width = cell.chars().count();
                match widths.get_mut(column) {
                    Some(current) => *current = (*current).max(width),
                    None => widths.push(width),
                }
            }
        }

        let mut rendered = String::new();
        for row in std::iter::once(&self.headers).chain(&self.rows) {
            let mut line = String::new();
            for (column, cell) in row.iter().enumerate() {
                if column > 0 {
                    line.push_str("  ");
                }
                line.push_str(cell);
                let padding = widths[column].saturating_sub(cell.chars().count());
                line.extend(std::iter::repeat_n(' ', padding));
            }
            rendered.push_str(line.trim_end());
            rendered.push('\n');
        }
        rendered
    }
}

/// Renders `name value` pairs as two aligned columns, for `show`.
pub(super) fn render_fields(fields: &[(&str, String)]) -> String {
    let width = fields
        .iter()
        .map(|(name, _)| name.chars().count())
        .max()
        .unwrap_or(0);
    let mut rendered = String::new();
    for (name, value) in fields {
        let padding = width - name.chars().count();
        rendered.push_str(name);
        rendered.push(':');
        rendered.extend(std::iter::repeat_n(' ', padding + 1));
        rendered.push_str(&single_line(value));
        rendered.push('\n');
    }
    rendered
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn table_aligns_columns() {
        let mut table = Table::new(&["NAME", "ACTIVE"]);
        table.push(vec!["github-push".to_owned(), "yes".to_owned()]);
        table.push(vec!["gh".to_owned(), "no".to_owned()]);
        assert_eq!(
            table.render(),
            "NAME         ACTIVE\ngithub-push  yes\ngh           no\n"
        );
    }

    #[test]
    fn table_keeps_cells_on_one_line() {
        let mut table = Table::new(&["DESCRIPTION"]);
        table.push(vec!["two\nlines".to_owned()]);
        assert_eq!(table.render(), "DESCRIPTION\ntwo lines\n");
    }

    #[test]
    fn fields_align_values() {
        let fields = [("id", "1".to_owned()), ("name", "gh".to_owned())];
        assert_eq!(render_fields(&fields), "id:   1\nname: gh\n");
    }

    #[test]
    fn json_argument_inline_and_file() {
        assert_eq!(
            read_json_argument("--filter", r#"{"a":1}"#).unwrap(),
            json!({"a": 1})
        );

        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("filter.json");
        std::fs::write(&path, r#"{"b":[2]}"#).unwrap();
        let argument = format!("@{}", path.display());
        assert_eq!(
            read_json_argument("--filter", &argument).unwrap(),
            json!({"b": [2]})
        );
    }

    #[test]
    fn json_argument_errors_name_the_flag() {
        let error = read_json_argument("--filter", "{not json").unwrap_err();
        assert!(format!("{error:#}").starts_with("--filter is not valid JSON"));
        let error = read_json_argument("--filter", "@/nonexistent/filter.json").unwrap_err();
        assert!(format!("{error:#}").starts_with("cannot read --filter file"));
    }

    #[test]
    fn update_configuration_merges_flags() {
        let current = json!({"topics": ["a"], "secret": "old"});
        let args = SourceConfigurationArgs {
            topics: vec!["b".to_owned(), "c".to_owned()],
            secret: None,
            secret_env: None,
            configuration: None,
        };
        let updated = updated_source_configuration(&current, args, true).unwrap();
        assert_eq!(updated, Some(json!({"topics": ["b", "c"]})));

        let args = SourceConfigurationArgs {
            topics: Vec::new(),
            secret: Some("new".to_owned()),
            secret_env: None,
            configuration: None,
        };
        let updated = updated_source_configuration(&current, args, false).unwrap();
        assert_eq!(updated, Some(json!({"topics": ["a"], "secret": "new"})));

        let unchanged = SourceConfigurationArgs {
            topics: Vec::new(),
            secret: None,
            secret_env: None,
            configuration: None,
        };
        assert_eq!(
            updated_source_configuration(&current, unchanged, false).unwrap(),
            None
        );
    }

    #[test]
    fn only_subtype_of_flavors() {
        assert_eq!(only_subtype("github").as_deref(), Some("webhook"));
        assert_eq!(only_subtype("json").as_deref(), Some("kafka"));
        assert_eq!(only_subtype("gitlab"), None);
    }

    #[test]
    fn parse_header_splits_at_first_equals() {
        assert_eq!(
            parse_header("x-github-event=push"),
            Ok(("x-github-event".to_owned(), "push".to_owned()))
        );
        assert_eq!(
            parse_header("ce_source=/a=b"),
            Ok(("ce_source".to_owned(), "/a=b".to_owned()))
        );
        assert_eq!(
            parse_header("empty="),
            Ok(("empty".to_owned(), String::new()))
        );
        let error = parse_header("x-github-event").unwrap_err();
        assert_eq!(
            error,
            "invalid header \"x-github-event\"; expected NAME=VALUE, such as x-github-event=push"
        );
        assert!(parse_header("=push").is_err());
    }

    fn test_trigger(name: &str, filter: Value, is_active: bool) -> trigger::Model {
        trigger::Model {
            id: uuid::Uuid::new_v4(),
            name: name.to_owned(),
            description: None,
            event_source_id: uuid::Uuid::new_v4(),
            action_id: uuid::Uuid::new_v4(),
            event_filter: filter,
            is_active,
            created_at: DateTime::UNIX_EPOCH,
            updated_at: DateTime::UNIX_EPOCH,
        }
    }

    fn test_source(is_active: bool) -> crate::event::EventSource {
        crate::event::EventSource {
            id: uuid::Uuid::new_v4(),
            name: "gh".to_owned(),
            flavor: Flavor::Github,
            subtype: "webhook".to_owned(),
            topics: vec!["github-events".to_owned()],
            secret: None,
            is_active,
        }
    }

    fn test_event_of(document: Value) -> crate::event::Event {
        crate::event::Event {
            id: "delivery-1".to_owned(),
            event_type: "push".to_owned(),
            document,
            metadata: json!({}),
        }
    }

    #[test]
    fn test_triggers_explains_each_trigger() {
        let triggers = [
            test_trigger("on-main", json!({"branch": "main"}), true),
            test_trigger("on-tags", json!({"ref": [{"prefix": "refs/tags/"}]}), true),
            test_trigger("paused", json!({"branch": "main"}), false),
            test_trigger("broken", json!({"branch": []}), true),
        ];
        let document = json!({"ref": "refs/heads/main", "branch": "main"});
        let results = test_triggers(&triggers, &document);

        assert_eq!(results.len(), 4);
        assert!(results[0].matches);
        assert!(results[0].mismatch.is_none());
        assert!(!results[1].matches);
        let mismatch = results[1].mismatch.as_ref().unwrap();
        assert_eq!(mismatch.path, "$.ref");
        assert_eq!(mismatch.actual, Some(json!("refs/heads/main")));
        assert!(results[2].matches);
        assert!(!results[2].active);
        assert!(!results[3].matches);
        assert_eq!(
            results[3].invalid_filter.as_deref(),
            Some(
                "at $.branch: array of alternatives is empty; list at least one value or operator"
            )
        );
    }

    #[test]
    fn render_test_report_lists_triggers_and_summary() {
        let triggers = [
            test_trigger("on-main", json!({"branch": "main"}), true),
            test_trigger("on-tags", json!({"ref": [{"prefix": "refs/tags/"}]}), true),
            test_trigger("paused", json!({"branch": "main"}), false),
        ];
        let event = test_event_of(json!({"ref": "refs/heads/main", "branch": "main"}));
        let results = test_triggers(&triggers, &event.document);
        let report = render_test_report(&test_source(true), true, &event, &results);

        let expected = "\
event source: gh (github)
event: delivery-1 (type push)
signature: not verified, because no x-hub-signature-256 header was given

TRIGGER  ACTIVE  RESULT    FIRST FAILED CONDITION
on-main  yes     match     -
on-tags  yes     no match  at $.ref: expected [{\"prefix\":\"refs/tags/\"}], found \"refs/heads/main\"
paused   no      match     -

1 of 2 active triggers match
";
        assert_eq!(report, expected);
    }

    #[test]
    fn render_test_report_of_inactive_source_without_triggers() {
        let event = test_event_of(json!({}));
        let report = render_test_report(&test_source(false), false, &event, &[]);
        assert_eq!(
            report,
            "event source: gh (github, inactive)\nevent: delivery-1 (type push)\n\n\
             event source gh has no triggers\n"
        );

        let triggers = [test_trigger("on-main", json!({"branch": "main"}), true)];
        let results = test_triggers(&triggers, &json!({"branch": "main"}));
        let report = render_test_report(&test_source(false), false, &event, &results);
        assert!(
            report.ends_with(
                "1 of 1 active triggers match, but the event source is inactive, \
                 so the daemon skips its records\n"
            ),
            "{report}"
        );
    }
}
