//! The credentials check behind `hlbot doctor --online`: one cheap authenticated call (the
//! provider's model list: `GET /v1/models` for Anthropic, `GET {base}/models` for an
//! OpenAI-compatible server) that says whether the configured key is accepted. Generates
//! nothing and costs nothing; the key never appears in what it returns.

use tokio_util::sync::CancellationToken;

use crate::client::Client;
use crate::error::{Error, Result};
use crate::options::LlmOptions;
use crate::provider::Provider;

/// Asks the provider `model` resolves to for its model list with the configured key: the
/// number of models it lists. `Error::Auth` when the key is refused (401/403),
/// `Error::MissingApiKey` when none is configured, `Error::Config` for `rules` (no call to make).
pub async fn check_credentials(
    opts: &LlmOptions,
    model: &str,
    cancel: &CancellationToken,
) -> Result<usize> {
    let provider = Provider::ready(opts, model)?;
    if provider == Provider::Rules {
        return Err(Error::Config(
            "the rules extractor needs no key and makes no call".into(),
        ));
    }
    Client::new(opts, &provider)?.list_models(cancel).await
}
