//! Typed LLM clients (Anthropic, OpenAI-compatible, offline rules) and the trading-strategy schema. Knows nothing about queues.
