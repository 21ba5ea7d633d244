//! The LLM provider of the default model: its key is set (else a warning: tasks that name no
//! model fall back to the offline rules extractor), and with `--online` accepted, by one cheap
//! authenticated call (the provider's model list). Keys are never printed.

use hlbot_llm::{Error, Provider};
use hlbot_tasks::TaskSettings;

use super::Finding;
use crate::cmd::config::mask_url;

pub async fn check(ts: &TaskSettings, online: bool, out: &mut Vec<Finding>) {
    let model = &ts.default_model;
    let opts = &ts.llm;
    let provider = match Provider::resolve(opts, model) {
        Ok(p) => p,
        Err(e) => {
            out.push(Finding::fail(
                "llm model",
                e.to_string(),
                "fix llm.model / HLBOT_MODEL (claude-*, openai:MODEL, ollama:MODEL or rules)",
            ));
            return;
        }
    };
    let (var, base) = match &provider {
        Provider::Rules => {
            out.push(Finding::ok(
                "llm key",
                "model rules: the offline extractor needs no key",
            ));
            return;
        }
        Provider::Anthropic { .. } => (Some("ANTHROPIC_API_KEY"), opts.anthropic.base_url.clone()),
        Provider::OpenAi {
            prefix, endpoint, ..
        } => (
            (prefix == "openai").then_some("OPENAI_API_KEY"),
            endpoint.base_url.clone(),
        ),
    };
    let has_key = match &provider {
        Provider::Anthropic { .. } => opts.anthropic.api_key.is_some(),
        Provider::OpenAi { endpoint, .. } => endpoint.has_key,
        Provider::Rules => false,
    };
    let name = provider.name().to_string();
    match (var, has_key) {
        (Some(var), false) => {
            out.push(Finding::warn(
                "llm key",
                format!(
                    "{var} is not set for model {model} ({name}): extraction falls back to the \
                     offline rules extractor"
                ),
                format!("set {var} in the worker's environment (or choose llm.model = \"rules\")"),
            ));
            return;
        }
        (Some(var), true) => out.push(Finding::ok(
            "llm key",
            format!("{var} is set for model {model} ({name})"),
        )),
        (None, _) => out.push(Finding::ok(
            "llm key",
            format!("model {model} on {}: no key needed", mask_url(&base)),
        )),
    }
    if !online {
        return;
    }
    let cancel = tokio_util::sync::CancellationToken::new();
    out.push(
        match hlbot_llm::check_credentials(opts, model, &cancel).await {
            Ok(n) => Finding::ok(
                "llm online",
                format!("{name} accepted the key ({n} models listed)"),
            ),
            Err(Error::Auth { status, .. }) => Finding::fail(
                "llm online",
                format!("{name} at {} rejected the key ({status})", mask_url(&base)),
                format!(
                    "set a valid {} (check it has not been revoked)",
                    var.unwrap_or("key")
                ),
            ),
            Err(e) => Finding::fail(
                "llm online",
                format!("{name} at {}: {e}", mask_url(&base)),
                "check the base URL, the network path to the provider, and its status page",
            ),
        },
    );
}
