//! A provider-neutral structured call: `Call` in, `Answer` out, through the Anthropic or
//! OpenAI-compatible wire format. Owns headers and URLs; the retry policy lives in `http`.

use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};
use crate::http::Http;
use crate::image::EncodedImage;
use crate::options::LlmOptions;
use crate::provider::Provider;
use crate::usage::Usage;
use crate::{anthropic, openai};

/// One request for structured output.
pub(crate) struct Call<'a> {
    pub system: &'a str,
    pub text: &'a str,
    pub image: Option<&'a EncodedImage>,
    /// Tool name (Anthropic) / schema name (OpenAI).
    pub tool_name: &'a str,
    pub tool_description: &'a str,
    /// The JSON schema without `$schema`/`$id`.
    pub schema: &'a Value,
    pub max_tokens: u32,
    /// `(previous raw answer, what was wrong with it)` for the one repair attempt.
    pub repair: Option<(&'a str, &'a str)>,
}

/// Why the model stopped.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Stop {
    Done,
    MaxTokens,
    Other(String),
}

/// A parsed answer: the JSON (if it parsed), the raw text (for repair), stop reason, usage.
#[derive(Debug, Clone)]
pub(crate) struct Answer {
    pub output: Result<Value, String>,
    pub raw: String,
    pub stop: Stop,
    pub usage: Usage,
}

enum Wire {
    Anthropic,
    OpenAi { completion_field: &'static str },
}

/// A ready-to-use client for one provider and model.
pub(crate) struct Client {
    http: Http,
    wire: Wire,
    url: String,
    /// The provider's model list (`GET`): the cheapest authenticated call.
    models_url: String,
    headers: HeaderMap,
    provider: String,
    model_id: String,
}

impl Client {
    pub(crate) fn new(opts: &LlmOptions, provider: &Provider) -> Result<Client> {
        let mut headers = HeaderMap::new();
        match provider {
            Provider::Anthropic { model_id } => {
                let key = opts
                    .anthropic
                    .api_key
                    .clone()
                    .ok_or_else(|| Error::MissingApiKey {
                        provider: "anthropic".into(),
                    })?;
                let mut kv = HeaderValue::from_str(key.expose()).map_err(|_| {
                    Error::Config("the Anthropic API key has invalid characters".into())
                })?;
                kv.set_sensitive(true);
                headers.insert("x-api-key", kv);
                let version = HeaderValue::from_str(&opts.anthropic.version)
                    .map_err(|_| Error::Config("invalid anthropic-version".into()))?;
                headers.insert("anthropic-version", version);
                Ok(Client {
                    http: Http::new(opts, "anthropic", Some(key))?,
                    wire: Wire::Anthropic,
                    url: join(&opts.anthropic.base_url, "v1/messages"),
                    models_url: join(&opts.anthropic.base_url, "v1/models"),
                    headers,
                    provider: "anthropic".into(),
                    model_id: model_id.clone(),
                })
            }
            Provider::OpenAi {
                prefix, model_id, ..
            } => {
                let ep = opts
                    .openai
                    .get(prefix)
                    .ok_or_else(|| Error::UnknownModel(format!("{prefix}:{model_id}")))?;
                if let Some(key) = &ep.api_key {
                    let mut v = HeaderValue::from_str(&format!("Bearer {}", key.expose()))
                        .map_err(|_| {
                            Error::Config(format!("the {prefix} API key has invalid characters"))
                        })?;
                    v.set_sensitive(true);
                    headers.insert(AUTHORIZATION, v);
                }
                // OpenAI's own API wants max_completion_tokens; compatible servers know max_tokens.
                let completion_field = if prefix == "openai" {
                    "max_completion_tokens"
                } else {
                    "max_tokens"
                };
                Ok(Client {
                    http: Http::new(opts, prefix, ep.api_key.clone())?,
                    wire: Wire::OpenAi { completion_field },
                    url: join(&ep.base_url, "chat/completions"),
                    models_url: join(&ep.base_url, "models"),
                    headers,
                    provider: prefix.clone(),
                    model_id: model_id.clone(),
                })
            }
            Provider::Rules => Err(Error::Config(
                "the rules provider makes no HTTP calls".into(),
            )),
        }
    }

    pub(crate) fn provider(&self) -> &str {
        &self.provider
    }

    pub(crate) fn model_id(&self) -> &str {
        &self.model_id
    }

    /// Lists the provider's models with the configured key: how many it names. A wrong key
    /// comes back as [`Error::Auth`]; nothing is generated and nothing is billed.
    pub(crate) async fn list_models(&self, cancel: &CancellationToken) -> Result<usize> {
        let v = self
            .http
            .get_json(&self.models_url, self.headers.clone(), cancel)
            .await?;
        Ok(v["data"].as_array().map_or(0, Vec::len))
    }

    /// Sends the call (with retries) and parses the answer.
    pub(crate) async fn complete(
        &self,
        call: &Call<'_>,
        cancel: &CancellationToken,
    ) -> Result<Answer> {
        let body = match self.wire {
            Wire::Anthropic => anthropic::body(&self.model_id, call),
            Wire::OpenAi { completion_field } => {
                openai::body(&self.model_id, call, completion_field)
            }
        };
        tracing::debug!(provider = %self.provider, model = %self.model_id, "llm request");
        let resp = self
            .http
            .post_json(&self.url, self.headers.clone(), &body, cancel)
            .await?;
        let parsed = match self.wire {
            Wire::Anthropic => anthropic::parse(&resp, call.tool_name),
            Wire::OpenAi { .. } => openai::parse(&resp),
        };
        let answer = parsed.map_err(|message| Error::InvalidOutput {
            provider: self.provider.clone(),
            message,
        })?;
        tracing::debug!(
            provider = %self.provider,
            input_tokens = answer.usage.input_tokens,
            output_tokens = answer.usage.output_tokens,
            stop = ?answer.stop,
            "llm answer"
        );
        Ok(answer)
    }
}

fn join(base: &str, path: &str) -> String {
    format!("{}/{}", base.trim_end_matches('/'), path)
}

/// Finds a JSON object in free text: the whole text, a ```json fence, or first `{` to last `}`.
pub(crate) fn json_in_text(text: &str) -> Result<Value, String> {
    let t = text.trim();
    if let Ok(v) = serde_json::from_str::<Value>(t) {
        return Ok(v);
    }
    let unfenced = t
        .strip_prefix("```json")
        .or_else(|| t.strip_prefix("```"))
        .and_then(|s| s.trim_end().strip_suffix("```"));
    if let Some(inner) = unfenced
        && let Ok(v) = serde_json::from_str::<Value>(inner.trim())
    {
        return Ok(v);
    }
    match (t.find('{'), t.rfind('}')) {
        (Some(a), Some(b)) if a < b => serde_json::from_str::<Value>(&t[a..=b])
            .map_err(|e| format!("the answer is not valid JSON: {e}")),
        (Some(_), _) => Err("the answer is not valid JSON: the object is never closed".into()),
        _ => Err("the answer contains no JSON object".into()),
    }
}

/// The schema text as sent to providers: the committed file without `$schema`/`$id`.
pub(crate) fn wire_schema(schema_json: &str) -> Value {
    let mut v: Value = serde_json::from_str(schema_json).unwrap_or(Value::Null);
    if let Some(o) = v.as_object_mut() {
        o.remove("$schema");
        o.remove("$id");
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_extraction() {
        assert_eq!(json_in_text("{\"a\":1}").unwrap()["a"], 1);
        assert_eq!(json_in_text("```json\n{\"a\":2}\n```").unwrap()["a"], 2);
        assert_eq!(json_in_text("Here: {\"a\":3} done").unwrap()["a"], 3);
        assert!(json_in_text("{\"a\":").is_err());
        assert!(json_in_text("nothing").is_err());
        assert!(
            wire_schema(crate::strategy::STRATEGY_SCHEMA_JSON)
                .get("$schema")
                .is_none()
        );
    }
}
