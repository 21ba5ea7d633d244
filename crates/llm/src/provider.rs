//! Picks the provider from the model string: `claude-*` (or `anthropic:M`) → Anthropic,
//! `PREFIX:MODEL` for a configured OpenAI-compatible prefix (`openai`, `ollama`, …), `rules`.

use crate::error::{Error, Result};
use crate::options::{LlmOptions, OpenAiOptions};

/// Where a model string sends the call.
#[derive(Debug, Clone, PartialEq)]
pub enum Provider {
    /// Anthropic Messages API with a full model id (aliases resolved).
    Anthropic { model_id: String },
    /// An OpenAI-compatible endpoint, named by its prefix.
    OpenAi {
        prefix: String,
        model_id: String,
        endpoint: OpenAiEndpoint,
    },
    /// The offline, deterministic extractor.
    Rules,
}

/// The endpoint part of [`Provider::OpenAi`] (kept separate so `Provider` compares cheaply).
#[derive(Debug, Clone, PartialEq)]
pub struct OpenAiEndpoint {
    pub base_url: String,
    pub has_key: bool,
}

impl Provider {
    /// Resolves `model` against the options.
    pub fn resolve(opts: &LlmOptions, model: &str) -> Result<Provider> {
        let p = Self::resolve_any(opts, model)?;
        // An entry allows the provider and model it resolves to (an alias and its full id are
        // the same model; `openai:m` and `ollama:m` are not).
        let listed = opts
            .allowed_models
            .iter()
            .any(|a| Self::resolve_any(opts, a).is_ok_and(|q| q == p));
        if p == Provider::Rules || opts.allowed_models.is_empty() || listed {
            return Ok(p);
        }
        Err(Error::ModelNotAllowed {
            model: model.trim().to_string(),
            allowed: opts.allowed_models.join(", "),
        })
    }

    fn resolve_any(opts: &LlmOptions, model: &str) -> Result<Provider> {
        let model = model.trim();
        if model.eq_ignore_ascii_case("rules") {
            return Ok(Provider::Rules);
        }
        if let Some(rest) = model.strip_prefix("anthropic:") {
            return Ok(Provider::Anthropic {
                model_id: resolve_alias(opts, rest),
            });
        }
        if model.starts_with("claude-") {
            return Ok(Provider::Anthropic {
                model_id: resolve_alias(opts, model),
            });
        }
        if let Some((prefix, name)) = model.split_once(':')
            && let Some(ep) = opts.openai.get(prefix)
        {
            if name.is_empty() {
                return Err(Error::UnknownModel(model.to_string()));
            }
            return Ok(Provider::OpenAi {
                prefix: prefix.to_string(),
                model_id: name.to_string(),
                endpoint: endpoint(ep),
            });
        }
        Err(Error::UnknownModel(model.to_string()))
    }

    /// Like [`Provider::resolve`], and also fails with `MissingApiKey` when the provider needs
    /// a key that is not configured — so the CLI can fall back to `rules` and say so before
    /// any work starts.
    pub fn ready(opts: &LlmOptions, model: &str) -> Result<Provider> {
        let p = Provider::resolve(opts, model)?;
        if matches!(p, Provider::Anthropic { .. }) && opts.anthropic.api_key.is_none() {
            return Err(Error::MissingApiKey {
                provider: "anthropic".into(),
            });
        }
        Ok(p)
    }

    /// The provider's name as reported in results: `anthropic`, the prefix, or `rules`.
    pub fn name(&self) -> &str {
        match self {
            Provider::Anthropic { .. } => "anthropic",
            Provider::OpenAi { prefix, .. } => prefix,
            Provider::Rules => "rules",
        }
    }

    /// The model id sent on the wire (`rules` for the offline extractor).
    pub fn model_id(&self) -> &str {
        match self {
            Provider::Anthropic { model_id } | Provider::OpenAi { model_id, .. } => model_id,
            Provider::Rules => "rules",
        }
    }
}

fn resolve_alias(opts: &LlmOptions, name: &str) -> String {
    opts.anthropic
        .aliases
        .get(name)
        .cloned()
        .unwrap_or_else(|| name.to_string())
}

fn endpoint(ep: &OpenAiOptions) -> OpenAiEndpoint {
    OpenAiEndpoint {
        base_url: ep.base_url.clone(),
        has_key: ep.api_key.is_some(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_strings() {
        let o = LlmOptions::default();
        assert_eq!(
            Provider::resolve(&o, "claude-sonnet-4").unwrap(),
            Provider::Anthropic {
                model_id: "claude-sonnet-4-20250514".into()
            }
        );
        assert_eq!(
            Provider::resolve(&o, "claude-3-7-sonnet-latest")
                .unwrap()
                .model_id(),
            "claude-3-7-sonnet-latest"
        );
        let p = Provider::resolve(&o, "ollama:llama3.1:8b").unwrap();
        assert_eq!((p.name(), p.model_id()), ("ollama", "llama3.1:8b"));
        assert_eq!(
            Provider::resolve(&o, "openai:gpt-4o").unwrap().name(),
            "openai"
        );
        assert_eq!(Provider::resolve(&o, "rules").unwrap(), Provider::Rules);
        assert!(matches!(
            Provider::resolve(&o, "gpt-4o"),
            Err(Error::UnknownModel(_))
        ));
        assert!(matches!(
            Provider::resolve(&o, "vllm:x"),
            Err(Error::UnknownModel(_))
        ));
        assert!(matches!(
            Provider::resolve(&o, "openai:"),
            Err(Error::UnknownModel(_))
        ));
    }
}
